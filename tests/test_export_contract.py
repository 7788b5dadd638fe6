"""The contract every format package keeps, and the checks and option errors they share.

Parametrized over the format table, so a new format is held to the contract for free. Needs no
converter: format packages import torch and their libraries inside functions.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from edgepack import exporters
from edgepack.core.errors import ConfigError, VerificationError
from edgepack.exporters._checks import Checks, check_choice, options_for, shorten
from edgepack.exporters._contract import Exporter

FORMATS = sorted(exporters.FORMATS)
ROLES = ("convert", "inspect", "runtime")


def members() -> list[str]:
    """Every name the Exporter protocol declares: its attributes and its functions."""
    functions = [name for name, value in vars(Exporter).items() if callable(value)]
    return [*Exporter.__annotations__, *(f for f in functions if not f.startswith("_"))]


@pytest.mark.parametrize("name", FORMATS)
def test_format_package_offers_every_protocol_member(name: str) -> None:
    module = importlib.import_module(exporters.FORMATS[name].module)
    assert {"OPTIONS", "MIN_REFERENCE_AGREEMENT", "export_int8", "inspect"} <= set(members())
    for member in members():
        assert hasattr(module, member), f"{name} lacks {member}"
    for role in ROLES:
        importlib.import_module(f"{module.__name__}.{role}")
    # `inspect` is both a submodule and the function the package exposes: the function wins.
    assert callable(module.inspect) and not isinstance(module.inspect, type(module))
    assert dataclasses.is_dataclass(module.OPTIONS) and isinstance(module.ARTIFACT, str)
    agreement = module.MIN_REFERENCE_AGREEMENT
    assert agreement is None or 0.5 < agreement <= 1.0


@pytest.mark.parametrize("name", FORMATS)
def test_options_of_another_format_are_a_config_error(name: str) -> None:
    cls = exporters.options_class(name)
    assert isinstance(options_for(None, cls), cls)
    other = next(exporters.options_class(n) for n in FORMATS if n != name)
    with pytest.raises(ConfigError, match=f"export options must be {cls.__name__}, got"):
        options_for(other(), cls)


@pytest.mark.parametrize("name", FORMATS)
def test_reference_agreement_follows_the_reference(name: str) -> None:
    """PT2E formats (those quantizing with torchao, whose version the manifest records) carry a
    torch int8 reference and a bar for it; a quantizer with no torch twin (onnxruntime's, for
    ONNX) has no bar. Read from the registry, so a new format is held to it as registered."""
    fmt = exporters.FORMATS[name]
    bar = importlib.import_module(fmt.module).MIN_REFERENCE_AGREEMENT
    if "torchao" in fmt.versioned:
        assert bar is not None and 0.9 <= bar <= 1.0, f"{name}: PT2E format without a bar"
    else:
        assert bar is None, f"{name}: no torch int8 twin, so no bar to hold it to"


def test_checks_collect_every_failure_then_raise_once() -> None:
    checks = Checks(Path("dist/model.bin"))
    assert checks.check("io", True, "never shown")
    assert not checks.check("weights", False, "2 float weights")
    assert checks.problems("opset", [])
    assert not checks.problems("ops", [f"op{i} is float" for i in range(5)])
    with pytest.raises(VerificationError) as caught:
        checks.verify()
    message = str(caught.value)
    assert message.startswith("model.bin failed 2 of 4 checks: weights: 2 float weights; ops: ")
    assert "op0 is float, op1 is float, op2 is float (+2 more)" in message
    assert "never shown" not in message and "opset" not in message
    assert checks.passed == {"io": True, "weights": False, "opset": True, "ops": False}


def test_checks_pass_returns_the_record() -> None:
    checks = Checks(Path("model.onnx"))
    checks.check("io", True, "")
    assert checks.verify() == {"io": True}
    with pytest.raises(ValueError, match="recorded twice"):
        checks.check("io", True, "")


def test_option_errors_name_key_expected_and_got() -> None:
    with pytest.raises(ConfigError) as caught:
        check_choice("colour", "mauve", ("red", "green"), "why not")
    assert str(caught.value) == "export.colour must be one of: red, green, got 'mauve': why not"
    check_choice("colour", "red", ("red", "green"))


def test_shorten() -> None:
    assert shorten([]) == "none"
    assert shorten(["a", "b"]) == "a, b"
    assert shorten(list("abcdef"), limit=2) == "a, b (+4 more)"


@pytest.mark.parametrize("name", FORMATS)
def test_missing_library_names_how_to_install(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extra by default; a format's own command where the extra is not enough (executorch
    installs without its declared dependencies)."""
    import importlib.util

    from edgepack.core.errors import MissingExtraError

    fmt = exporters.FORMATS[name]
    monkeypatch.setattr(importlib.util, "find_spec", lambda package: None)
    with pytest.raises(MissingExtraError) as caught:
        exporters.get_exporter(name)
    install = fmt.install or f"pip install 'edgepack[{fmt.extra}]'"
    assert str(caught.value).endswith(f": {install}")
    if name == "executorch":
        assert "pip install --no-deps executorch==" in str(caught.value)
