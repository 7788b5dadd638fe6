"""Device profiles: every shipped one loads, and every kind of bad input is a one-line error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from edgepack.config.profile_files import list_targets, load_target, targets_dir
from edgepack.config.profiles import KNOWN_FORMATS, Target
from edgepack.core.errors import ConfigError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(name_or_path: str | Path) -> str:
    """The message load_target raises; every one of them must fit on one line."""
    with pytest.raises(ConfigError) as info:
        load_target(str(name_or_path))
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# Shipped profiles


@pytest.mark.parametrize("target", list_targets(), ids=lambda target: target.name)
def test_shipped_target_is_complete(target: Target) -> None:
    assert target == load_target(target.name)
    assert target.format in KNOWN_FORMATS
    assert target.source == targets_dir() / f"{target.name}.yaml"
    assert target.description


@pytest.mark.parametrize("target", list_targets(), ids=lambda target: target.name)
def test_shipped_target_round_trips(target: Target, tmp_path: Path) -> None:
    data = target.to_dict()
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    # Written back as a standalone profile (minus the keys that come from the file), it loads
    # into the same target: to_dict is a complete, valid profile.
    profile = {key: value for key, value in data.items() if key not in ("name", "source")}
    path = write(tmp_path, f"{target.name}.yaml", yaml.safe_dump(profile))
    assert dataclasses.replace(load_target(str(path)), source=target.source) == target


def test_base_is_abstract_and_not_listed() -> None:
    assert "base" not in [target.name for target in list_targets()]
    assert "abstract" in config_error("base")


def test_android_values() -> None:
    target = load_target("android")
    assert target.format == "tflite"
    assert target.budgets.max_size_kb == 150.0
    assert isinstance(target.budgets.max_size_kb, float)  # written as int, stored as float
    assert target.distill.epochs == 24  # inherited from base
    assert target.runner.warmup == 20


def test_with_quick_takes_epochs_and_calibration_from_quick() -> None:
    target = load_target("android")
    quick = target.with_quick()
    assert quick.distill.epochs == target.quick.epochs
    assert quick.quantization.calibration_samples == target.quick.calibration_samples
    assert quick.distill.lr == target.distill.lr
    assert target.distill.epochs == 24  # the original is untouched (frozen)


# --------------------------------------------------------------------------------------------
# extends


def test_user_profile_extends_shipped_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "phone.yaml",
        "extends: android\nbudgets:\n  max_size_kb: 100\n  max_latency_ms: null\n"
        "distill:\n  lr: 1e-3\n",
    )
    target = load_target(str(path))
    android = load_target("android")
    assert target.name == "phone"
    assert target.source == path
    assert target.budgets.max_size_kb == 100.0  # overridden
    assert target.budgets.max_latency_ms is None  # switched off
    assert target.budgets.min_accuracy == android.budgets.min_accuracy  # merged key by key
    assert target.distill.lr == 0.001  # YAML 1.2 float, not the string "1e-3"
    assert target.description == android.description


def test_extends_prefers_a_sibling_file(tmp_path: Path) -> None:
    write(tmp_path, "android.yaml", "extends: base\ndescription: local\nformat: tflite\n")
    path = write(tmp_path, "child.yaml", "extends: android\n")
    assert load_target(str(path)).description == "local"


def test_extends_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path, "parent.yaml", "extends: android\ndescription: parent\n")
    path = write(tmp_path / "sub", "child.yml", "extends: ../parent.yaml\n")
    assert load_target(str(path)).description == "parent"


def test_targets_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "base.yaml", (targets_dir() / "base.yaml").read_text())
    write(tmp_path, "watch.yaml", "extends: base\ndescription: watch\nformat: tflite\n")
    monkeypatch.setenv("EDGEPACK_TARGETS_DIR", str(tmp_path))
    assert [target.name for target in list_targets()] == ["watch"]
    assert "valid targets: watch" in config_error("android")


# --------------------------------------------------------------------------------------------
# Bad input: each message names the file, the key and what was expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "extends: android\ncolour: red\n",
            ["unknown key colour", "valid keys:", "budgets", "extends"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "extends: android\nbudgets:\n  max_size: 10\n",
            ["unknown key budgets.max_size", "valid keys in budgets:", "max_size_kb"],
            id="unknown-nested-key",
        ),
        pytest.param(
            "extends: android\nbudgets:\n  max_size_kb: big\n",
            ["budgets.max_size_kb must be a number or null", "got 'big' (str)"],
            id="string-for-float",
        ),
        pytest.param(
            "extends: android\ndistill:\n  epochs: true\n",
            ["distill.epochs must be an integer", "got True (bool)"],
            id="bool-for-int",
        ),
        pytest.param(
            "extends: android\ndistill:\n  epochs: 2.5\n",
            ["distill.epochs must be an integer", "got 2.5 (float)"],
            id="float-for-int",
        ),
        pytest.param(
            "extends: android\nquantization:\n  per_channel: 1\n",
            ["quantization.per_channel must be true or false", "got 1 (int)"],
            id="int-for-bool",
        ),
        pytest.param(
            "extends: android\nstudent: mobilenet\n",
            ["student must be a mapping", "'mobilenet' (str)"],
            id="scalar-for-section",
        ),
        pytest.param(
            "extends: android\nabstract: yes please\n",
            ["abstract must be true or false"],
            id="abstract-not-bool",
        ),
        pytest.param("- a\n- b\n", ["expected a mapping of keys, got a list"], id="top-level-list"),
        pytest.param(
            "extends: android\nbudgets: {max_size_kb: 1\n",
            ["user.yaml:3:", "malformed YAML"],
            id="malformed-yaml",
        ),
        pytest.param(
            "extends: android\nformat: tflite\nformat: onnx\n",
            ["user.yaml:3:", "duplicate key 'format'"],
            id="duplicate-key",
        ),
        pytest.param(
            "extends: android\n[1]: 2\n", ["user.yaml:2:", "unhashable key"], id="list-as-key"
        ),
        pytest.param(
            "extends: nope\n",
            ["extends unknown target 'nope'", "android", "base"],
            id="extends-unknown-name",
        ),
        pytest.param(
            "extends: ./missing.yaml\n",
            ["extends './missing.yaml'", "does not exist"],
            id="extends-missing-path",
        ),
        pytest.param(
            "extends: base\nformat: tflite\n",
            ["required key description is not set", "user.yaml", "base.yaml"],
            id="missing-required-key",
        ),
        pytest.param(
            "description: alone\nformat: tflite\n",
            ["required key student.family is not set"],
            id="missing-section",
        ),
    ],
)
def test_bad_profile(tmp_path: Path, text: str, expected: list[str]) -> None:
    message = config_error(write(tmp_path, "user.yaml", text))
    assert "user.yaml" in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("section", "key", "value", "rule"),
    [
        ("student", "width", 0, "> 0 and <= 4"),
        ("student", "width", 5, "> 0 and <= 4"),
        ("student", "resolution", 4, "between 8 and 1024"),
        ("student", "resolution", 10000, "between 8 and 1024"),
        ("distill", "epochs", 0, ">= 1"),
        ("distill", "alpha", 1.5, "between 0 and 1"),
        ("distill", "temperature", 0.0, "> 0"),
        ("runner", "threads", 0, "between 1 and 256"),
        ("runner", "threads", 100000, "between 1 and 256"),
        ("distill", "batch_size", 10**6, "between 1 and 4096"),
        ("budgets", "max_size_kb", -1, "> 0"),
        ("quantization", "scheme", "int4", "one of int8"),
    ],
)
def test_value_out_of_range(
    tmp_path: Path, section: str, key: str, value: object, rule: str
) -> None:
    path = write(
        tmp_path, "user.yaml", yaml.safe_dump({"extends": "android", section: {key: value}})
    )
    message = config_error(path)
    assert f"{section}.{key} must be {rule}, got {value!r}" in message


def test_unknown_format_lists_known_ones(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "user.yaml", "extends: android\nformat: tflitee\n"))
    from edgepack.exporters import format_names

    assert f"format must be one of {', '.join(format_names())}, got 'tflitee'" in message


def test_unknown_target_name_lists_choices() -> None:
    message = config_error("nope")
    assert "unknown target 'nope'" in message
    assert "android" in message
    assert "base" not in message  # abstract profiles are not choices


def test_missing_file(tmp_path: Path) -> None:
    message = config_error(tmp_path / "absent.yaml")
    assert "not found" in message and "absent.yaml" in message


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    message = config_error(tmp_path / "a.yaml")
    assert "extends cycle:" in message
    assert message.count("a.yaml") == 2 and "b.yaml" in message


def test_self_extends_is_a_cycle(tmp_path: Path) -> None:
    assert "extends cycle:" in config_error(write(tmp_path, "me.yaml", "extends: me\n"))


def test_export_section_is_checked_against_the_format_options(tmp_path: Path) -> None:
    message = config_error(
        write(tmp_path, "user.yaml", "extends: android\nexport:\n  activations: uint8\n")
    )
    assert "unknown key export.activations" in message
    assert load_target("android").to_dict()["export"] == {}


def test_format_option_values_are_checked_with_the_file_named(tmp_path: Path) -> None:
    message = config_error(
        write(tmp_path, "user.yaml", "extends: onnx\nexport:\n  activations: fp8\n")
    )
    assert "user.yaml" in message and "fp8" in message and "uint8" in message
