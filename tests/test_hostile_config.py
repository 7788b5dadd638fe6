"""Hostile and careless configs, profiles and labels, through the CLI as a user would run it.

Every case must end in exit 2 with exactly one stderr line starting ``error:``, no traceback,
no echo of a file's contents, and nothing written: no dist/, no cache folder, no config.
Inputs are generated here; nothing is loaded beyond the YAML (the teacher file is a stub).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from edgepack.cli import main
from edgepack.config.project_file import load_project
from edgepack.core.strict_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH
from edgepack.data.inputs import InputSpec
from edgepack.outputs.starter import Normalisation, Starter
from edgepack.teachers import TeacherSpec

SECRET = "TOPSECRET-0123456789abcdef"
SPARSITY_RANGE = "compress.sparsity must be between 0 and 0.95"

CONFIG = """\
teacher: teacher.pt2
input:
  size: 16
  mean: [0.5]
  std: [0.5]
data:
  train: images/train
out: dist
cache_dir: cache
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder (cwd): a stub teacher and three class folders of one tiny PNG each."""
    (tmp_path / "teacher.pt2").write_bytes(b"never loaded: config errors come first")
    for name in ("dark", "bright", "stripes"):
        _image_folder(tmp_path / "images" / "train" / name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _image_folder(folder: Path | bytes) -> None:
    """A folder with one tiny PNG; bytes name a folder whose name is not UTF-8."""
    raw = os.fsencode(folder)
    os.makedirs(raw, exist_ok=True)
    Image.new("L", (16, 16), 128).save(os.path.join(raw, b"0.png"))


def _listing(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def _assert_refused(args: list[str], root: Path, *fragments: str) -> str:
    """Run the CLI; assert the one-line refusal, and that nothing appeared under ``root``."""
    before = _listing(root)
    result = CliRunner().invoke(main, args)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert SECRET not in result.output
    assert "\x1b" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert _listing(root) == before  # no dist/, no cache/, no edgepack.yaml
    return errors[0]


def _build(config: Path) -> list[str]:
    return ["build", "--quick", "--no-progress", "--config", str(config)]


# --- labels: one rule for every source --------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "fragments"),
    [
        pytest.param(["dark", "bri\nght", "stripes"], ("label 2 of 3", "U+000A"), id="newline"),
        pytest.param(["dark", "bri\rght", "stripes"], ("U+000D",), id="carriage-return"),
        pytest.param(["dark", "tab\there", "x"], ("U+0009",), id="tab"),
        pytest.param(["dark", "line\u2028sep", "x"], ("U+2028",), id="line-separator"),
        pytest.param(["dark", "\u202ekrad", "x"], ("U+202E",), id="bidi-override"),
        pytest.param(["dark", "zero\u200bwidth", "x"], ("U+200B",), id="zero-width-space"),
        pytest.param(["dark", "\x1b[31mred", "x"], ("U+001B",), id="escape"),
        pytest.param(["dark", "", "x"], ("label 2 of 3", "is empty"), id="empty"),
        pytest.param(["dark", " dark", "x"], ("leading or trailing spaces",), id="spaces"),
        pytest.param(["dark", "x" * 500, "y"], ("longer than 200",), id="long"),
        pytest.param(["dark", "dark"], ("duplicate labels: 'dark'",), id="duplicate"),
        pytest.param(["dark"], ("expected at least 2 labels",), id="one"),
    ],
)
def test_bad_label_lists(project: Path, labels: list[str], fragments: tuple[str, ...]) -> None:
    config = project / "edgepack.yaml"
    config.write_text(CONFIG + yaml.safe_dump({"labels": labels}))
    _assert_refused(_build(config), project, "edgepack.yaml: labels:", *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param(b"dark\n\x1cbright\nstripes\n", ("U+001C",), id="file-separator"),
        pytest.param(b"dark\nbri\x0bght\nstripes\n", ("U+000B",), id="vertical-tab"),
        pytest.param("dark\nbri\u0085ght\n".encode(), ("U+0085",), id="next-line"),
        pytest.param(b"dark\ndark\n", ("duplicate labels",), id="duplicate"),
        pytest.param(b"dark\n\xff\xfebright\n", ("not UTF-8 text", "0xff", ":2:"), id="latin1"),
        pytest.param(b"x\n" * (2 << 20) + b"y\n", ("larger than 4096 KiB",), id="huge"),
    ],
)
def test_bad_labels_files(project: Path, content: bytes, fragments: tuple[str, ...]) -> None:
    (project / "labels.txt").write_bytes(content)
    config = project / "edgepack.yaml"
    config.write_text(CONFIG + "labels: labels.txt\n")
    _assert_refused(_build(config), project, "labels.txt", *fragments)


def test_labels_file_tolerates_crlf_and_a_bom(project: Path) -> None:
    (project / "labels.txt").write_bytes(b"\xef\xbb\xbfdark\r\nbright\r\n\r\nstripes\r\n")
    config = project / "edgepack.yaml"
    config.write_text(CONFIG + "labels: labels.txt\n")
    assert load_project(config).labels == ("dark", "bright", "stripes")


@pytest.mark.parametrize(
    ("folder", "fragments"),
    [
        pytest.param("bri\nght", ("U+000A",), id="newline"),
        pytest.param(" dark", ("leading or trailing spaces",), id="space"),
    ],
)
def test_bad_class_folders_refused_alike_by_build_and_init(
    project: Path, folder: str, fragments: tuple[str, ...]
) -> None:
    _image_folder(project / "images" / "train" / folder)
    config = project / "edgepack.yaml"
    config.write_text(CONFIG)
    built = _assert_refused(_build(config), project, "class folders of images/train", *fragments)
    config.unlink()
    args = ["init", "--teacher", "teacher.pt2", "--data", "images/train"]
    initialised = _assert_refused(args, project, *fragments)
    assert initialised == built  # init refuses with the very line build would print


def test_non_utf8_class_folder_refused_alike_by_build_and_init(project: Path) -> None:
    # build refuses it as a label, init in the readers' folder walk: one line each, naming it.
    _image_folder(os.path.join(os.fsencode(project / "images" / "train"), b"bri\xffght"))
    config = project / "edgepack.yaml"
    config.write_text(CONFIG)
    _assert_refused(_build(config), project, "not UTF-8", "bri")
    config.unlink()
    args = ["init", "--teacher", "teacher.pt2", "--data", "images/train"]
    _assert_refused(args, project, "UTF-8", "bri")


def test_init_refuses_a_single_class_folder(project: Path) -> None:
    args = ["init", "--teacher", "teacher.pt2", "--data", "images/train"]
    for name in ("bright", "stripes"):
        for file in (project / "images" / "train" / name).iterdir():
            file.unlink()
        (project / "images" / "train" / name).rmdir()
    _assert_refused(args, project, "expected at least 2 labels, got 1")


# --- value bounds and hostile YAML, in profiles and project configs ---------------------------


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


PROFILE_CASES = [
    pytest.param("distill:\n  lr: .inf\n", ("distill.lr must be a finite number",), id="inf"),
    pytest.param("distill:\n  lr: .nan\n", ("finite number", "got nan"), id="nan"),
    pytest.param("budgets:\n  max_latency_ms: -.inf\n", ("finite number",), id="minus-inf"),
    pytest.param("distill:\n  seed: 99999999999999999999\n", ("distill.seed",), id="seed"),
    pytest.param("budgets:\n  max_size_kb: 1" + "0" * 400 + "\n", ("max_size_kb",), id="10e400"),
    pytest.param("runner:\n  threads: 100000\n", ("between 1 and 256",), id="threads"),
    pytest.param("student:\n  resolution: 10000\n", ("between 8 and 1024",), id="resolution"),
    pytest.param("student:\n  width: 1000\n", ("> 0 and <= 4",), id="width"),
    pytest.param("distill:\n  batch_size: 1000000\n", ("between 1 and 4096",), id="batch"),
    pytest.param(
        "description: " + "[" * 5000 + "]" * 5000 + "\n",
        (f"nested deeper than {MAX_YAML_DEPTH} levels",),
        id="deep",
    ),
    pytest.param(_bomb(9), ("aliases expand it to more than",), id="billion-laughs"),
    pytest.param("description: &a [*a]\n", ("alias refers to a node that contains it",), id="loop"),
    pytest.param("extends: ios\n", ("duplicate key 'extends'",), id="duplicate-key"),
    pytest.param("\x1b[31mred: 1\n", (":2: malformed YAML", "U+001B"), id="escape"),
    pytest.param('"\\e[31mred": 1\n', ("unknown key '\\x1b[31mred'",), id="escaped-key"),
    pytest.param('description: "a\\ud800b"\n', ("lone surrogates",), id="surrogate"),
    pytest.param("description: " + "x" * 5000 + "\n", None, id="long-ok"),
    pytest.param("input:\n  channels: 2\n", ("input.channels must be one of 1, 3",), id="channels"),
    pytest.param(
        "quantization:\n  calibration: bogus\n",
        ("quantization.calibration must be one of auto",),
        id="calibration",
    ),
    pytest.param(
        "quantization:\n  qat_epochs: -1\n", ("qat_epochs must be between 0 and 100",), id="qat"
    ),
    pytest.param(
        "quantization:\n  recovery: maybe\n", ("recovery must be true or false",), id="recovery"
    ),
    pytest.param("student: automatic\n", ("student must be a mapping",), id="auto-typo"),
    pytest.param(
        "student: auto\nsearch:\n  widths: [0.5, -1]\n", ("search.widths must be > 0",), id="width"
    ),
    pytest.param(
        "student: auto\nsearch:\n  families: [nosuch]\n",
        ("unknown student family 'nosuch'",),
        id="search-family",
    ),
    pytest.param(
        "search:\n  resolutions: [100000]\n", ("search.resolutions must be between",), id="res"
    ),
    pytest.param("student:\n  neck: -1\n", ("student.neck must be between 0 and 1024",), id="neck"),
    pytest.param(
        "compress:\n  prune: 0.95\n", ("compress.prune must be between 0 and 0.9",), id="prune"
    ),
    pytest.param("compress:\n  prune: lots\n", ("compress.prune", "lots"), id="prune-text"),
    pytest.param(
        "compress:\n  recover_epochs: -1\n",
        ("compress.recover_epochs must be between 0 and 100",),
        id="recover-epochs",
    ),
    pytest.param("compress:\n  sparsity: lots\n", ("compress.sparsity", "lots"), id="sparse-text"),
    *(
        pytest.param(f"compress:\n  sparsity: {bad}\n", (SPARSITY_RANGE, bad), id=f"sparse{bad}")
        for bad in ("-0.5", "0.96")
    ),
    pytest.param("compress:\n  sparsity: .nan\n", ("compress.sparsity", "nan"), id="sparse-nan"),
    pytest.param(
        "compress:\n  sparsity: 0.5\n",  # android counts raw bytes
        (
            "phone.yaml: compress.sparsity 0.5 needs budgets.size_counts: compressed, got raw",
            "noCompress, to memory-map it) gains nothing",
        ),
        id="sparse-raw-size",
    ),
    pytest.param(
        "budgets:\n  size_counts: compressed\ncompress:\n  sparsity: 0.95\n", None, id="sparse-ok"
    ),
    pytest.param("compress:\n  ratio: 0.3\n", ("unknown key", "ratio"), id="compress-key"),
    pytest.param("compress: 0.3\n", ("compress must be a mapping",), id="compress-scalar"),
    pytest.param(
        "search:\n  tie_standard_errors: 1e9\n",
        ("search.tie_standard_errors must be between 0 and 5",),
        id="tie-huge",
    ),
    pytest.param(
        "search:\n  tie_standard_errors: .nan\n", ("search.tie_standard_errors",), id="tie-nan"
    ),
    pytest.param("search:\n  per_tensor: maybe\n", ("search.per_tensor", "maybe"), id="pt-text"),
    pytest.param("search:\n  prune: [.nan]\n", ("search.prune", "nan"), id="search-prune-nan"),
    pytest.param(
        "search:\n  prune: 0.3\n", ("search.prune must be a list",), id="search-prune-scalar"
    ),
    pytest.param("runner:\n  cpu: cortex-x9\n", ("cortex-x9", "cortex-a55"), id="cpu-unknown"),
    pytest.param(
        "student:\n  neck: 96\n",
        ("student.neck lifts a detector's feature maps", "got neck 96"),
        id="neck-on-a-classifier",
    ),
]


@pytest.mark.parametrize(("body", "fragments"), PROFILE_CASES)
def test_hostile_profiles(project: Path, body: str, fragments: tuple[str, ...] | None) -> None:
    profile = project / "phone.yaml"
    profile.write_text("extends: android\n" + body)
    if fragments is None:  # a long but legal value: accepted, so the bounds are not too tight
        result = CliRunner().invoke(main, ["targets", "show", str(profile)])
        assert result.exit_code == 0, result.output
        return
    args = ["build", "--quick", "--target", str(profile), "--out", "dist", "--cache-dir", "cache"]
    _assert_refused(args, project, "phone.yaml", *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param(f"root:x:0:0:{SECRET}:/root\n" * 40, ("a str of",), id="scalar-file"),
        pytest.param(f"key: [{SECRET}\n" * 3, ("malformed YAML",), id="yaml-error"),
        pytest.param(f"{SECRET}: 1\n", ("unknown key",), id="long-key"),
        pytest.param(b"\xff\xfe" + SECRET.encode(), ("not UTF-8 text",), id="binary"),
        pytest.param("# pad\n" * (MAX_YAML_BYTES // 6 + 1), ("larger than 1024 KiB",), id="big"),
        pytest.param("- a\n- b\n", ("expected a mapping of keys, got a list",), id="list"),
    ],
)
def test_extends_of_a_foreign_file_names_it_without_echoing_it(
    project: Path, content: str | bytes, fragments: tuple[str, ...]
) -> None:
    secret = project / "secret.txt"
    if isinstance(content, str):
        content = content.replace(f"{SECRET}: 1", SECRET * 4 + ": 1").encode()
    secret.write_bytes(content)
    profile = project / "phone.yaml"
    profile.write_text("extends: ./secret.txt\n")
    args = ["build", "--target", str(profile), "--out", "dist", "--cache-dir", "cache"]
    _assert_refused(args, project, "secret.txt", *fragments)


def test_a_long_extends_chain_is_refused(project: Path) -> None:
    for i in range(40):
        (project / f"p{i}.yaml").write_text(f"extends: ./p{i + 1}.yaml\n")
    (project / "p40.yaml").write_text("extends: android\n")
    args = ["build", "--target", str(project / "p0.yaml"), "--out", "dist"]
    _assert_refused(args, project, "p0.yaml: extends chain longer than 16 files")


CONFIG_CASES = [
    pytest.param(
        ("size: 16", "size: 10000"), ("input.size must be between 8 and 1024",), id="size"
    ),
    pytest.param(("mean: [0.5]", "mean: [.nan]"), ("input.mean must be a finite",), id="nan-mean"),
    pytest.param(("  std: [0.5]", "  std: [0.5]\n  scale: .inf"), ("finite",), id="inf-scale"),
    pytest.param(
        ("train: images/train", "train: images/train\n  augment: {shift: 9}"),
        ("data.augment.shift must be at most half of input.size (8 pixels), got 9",),
        id="shift",
    ),
    pytest.param(
        ("train: images/train", "train: " + "d" * 300 + "/x"),
        ("data.train.images must be a file path", "255 per name"),
        id="long-name",
    ),
    pytest.param(
        ("train: images/train", 'train: "images/tr\\x00ain"'),
        ("data.train.images must be a file path",),
        id="nul-in-path",
    ),
    pytest.param(
        ("out: dist", "out: dist\ntargets: ['~nosuchuser9/x.yaml']"),
        ("targets: cannot resolve the path '~nosuchuser9/x.yaml'",),
        id="no-such-user",
    ),
    pytest.param(("teacher: teacher.pt2", "teacher: [" * 100), ("nested deeper",), id="deep"),
    pytest.param(("size: 16", "size: 16\n  size: 17"), ("duplicate key 'size'",), id="dup-key"),
    pytest.param(("teacher: teacher.pt2", "teacher: *undefined"), ("undefined alias",), id="alias"),
]


@pytest.mark.parametrize(("replace", "fragments"), CONFIG_CASES)
def test_hostile_project_configs(
    project: Path, replace: tuple[str, str], fragments: tuple[str, ...]
) -> None:
    config = project / "edgepack.yaml"
    assert replace[0] in CONFIG
    config.write_text(CONFIG.replace(*replace))
    _assert_refused(_build(config), project, "edgepack.yaml", *fragments)


def test_a_config_that_is_not_a_mapping(project: Path) -> None:
    config = project / "edgepack.yaml"
    config.write_text(SECRET * 10)
    _assert_refused(_build(config), project, "edgepack.yaml", "expected a mapping of keys")


# --- init writes what build reads back ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a: b #c", "123", "true", "-x", "tab\there", "bri\nght", "raw\udcffbyte"]
)
def test_init_template_reads_back_any_folder_name(tmp_path: Path, name: str) -> None:
    base = tmp_path / name
    data = base / f"data {name}"
    for label in ("cat", "dog"):
        (data / label).mkdir(parents=True)
    (base / "teacher.pt2").write_bytes(b"stub")
    normalisation = Normalisation("pixel / 255", (0.0,), (1.0,), 0.5)
    starter = Starter(
        TeacherSpec(path=base / "teacher.pt2"),
        f"torch.export\n{name}",
        data,
        f"image folder, 2 images\n{name}",
        ("cat", "dog"),
        16,
        1,
        None,
        normalisation,
        (normalisation,),
    )
    config = base / "edgepack.yaml"
    config.write_text(starter.text(base), encoding="utf-8")
    project = load_project(config)
    assert project.name == name.replace("\udcff", "\ufffd")
    assert project.config == config.resolve()
    assert project.teacher.path == base / "teacher.pt2"
    assert project.labels == ("cat", "dog")
    assert project.input == InputSpec(1, (0.0,), (1.0,), 16)
