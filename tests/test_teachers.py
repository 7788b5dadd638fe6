"""Teacher loaders, on tiny real files of every kind, and the refusals that keep them safe."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import textwrap
import types
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from edgepack.core.errors import ConfigError, InputError, MissingExtraError
from edgepack.teachers import (
    LOADERS,
    LoadedTeacher,
    TeacherSpec,
    check_teacher,
    load_teacher,
)
from edgepack.teachers._ops import FILE_OPS

CLASSES = 5
# The fast legacy exporters these tests use to build their teacher files warn on every call.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]
NCHW = (3, 8, 8)


class Net(nn.Module):
    """A 3-channel NCHW classifier; module-level so torch.save(model) pickles a reference to it."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class NHWCNet(Net):
    """Takes NHWC images, as Keras-born models do, and permutes internally."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # no super(): TorchScript cannot compile it
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _net(cls: type[Net] = Net, classes: int = CLASSES) -> Net:
    torch.manual_seed(0)
    return cls(classes).eval()


def _batch(n: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.randn(n, channels, 8, 8, generator=torch.Generator().manual_seed(1))


def _export(model: nn.Module, path: Path, example: torch.Tensor, dynamic: bool = True) -> Path:
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=shapes), str(path))
    return path


def _script(model: nn.Module, path: Path) -> Path:
    torch.jit.script(model).save(str(path))
    return path


def _onnx(model: nn.Module, path: Path, dynamic: bool = True) -> Path:
    axes = {"x": {0: "batch"}} if dynamic else None
    torch.onnx.export(
        model, (_batch(1),), str(path), dynamo=False, input_names=["x"], dynamic_axes=axes
    )
    return path


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip archive, passing each member through ``edit`` (None drops it)."""
    with zipfile.ZipFile(src) as source, zipfile.ZipFile(dst, "w") as target:
        for item in source.infolist():
            data = edit(item.filename, source.read(item))
            if data is not None:
                target.writestr(item, data)
    return dst


def _same(teacher: LoadedTeacher, reference: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(teacher.run(x), reference(x), atol=1e-5, rtol=0)


# --- torch.export -------------------------------------------------------------------------------


def test_pt2_reads_its_signature_and_matches_the_model(tmp_path: Path) -> None:
    model = _net()
    path = _export(model, tmp_path / "teacher.pt2", _batch())
    teacher = load_teacher(path)
    info = teacher.info
    assert (info.kind, info.layout, info.input_shape, info.num_classes) == (
        "torch.export",
        "NCHW",
        (None, *NCHW),
        CLASSES,
    )
    assert info.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.source == "teacher.pt2"
    _same(teacher, model, _batch(3))
    assert check_teacher(teacher, _batch(), CLASSES) is teacher


def test_pt2_nhwc_is_detected_and_fed_nhwc(tmp_path: Path) -> None:
    """A fixed batch of 2 and NHWC input: run() takes NCHW of any batch size."""
    model = _net(NHWCNet)
    nhwc = _batch().permute(0, 2, 3, 1)
    teacher = load_teacher(_export(model, tmp_path / "nhwc.pt2", nhwc, dynamic=False))
    assert (teacher.info.layout, teacher.info.input_shape) == ("NHWC", (2, 8, 8, 3))
    x = _batch(3)
    with torch.no_grad():
        torch.testing.assert_close(teacher.run(x), model(x.permute(0, 2, 3, 1)), atol=1e-5, rtol=0)
    check_teacher(teacher, _batch(), CLASSES)


def test_pt2_with_wrong_class_count_is_explained(tmp_path: Path) -> None:
    teacher = load_teacher(_export(_net(), tmp_path / "t.pt2", _batch()))
    with pytest.raises(
        InputError, match=r"t\.pt2 returned \(2, 5\) scores, but the project has 10"
    ):
        check_teacher(teacher, _batch(), 10)


def test_static_input_shape_disagreeing_with_the_data_is_explained(tmp_path: Path) -> None:
    teacher = load_teacher(_export(_net(), tmp_path / "t.pt2", _batch()))
    message = (
        r"teacher t\.pt2 expects 3×8×8 \(NCHW\), the data gives 1×28×28: set input\.size / "
        r"input\.channels in edgepack\.yaml or resize the data"
    )
    with pytest.raises(InputError, match=message):
        check_teacher(teacher, torch.zeros(2, 1, 28, 28), CLASSES)


def test_pickled_payloads_are_refused_before_loading(tmp_path: Path) -> None:
    def pickle_everything(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            for meta in config["config"].values():
                meta["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    path = _export(_net(), tmp_path / "t.pt2", _batch())
    tampered = _rewrite(path, tmp_path / "tampered.pt2", pickle_everything)
    with pytest.raises(InputError, match="use_pickle must be false"):
        load_teacher(tampered)


def test_pt2_graph_reading_files_is_refused(tmp_path: Path) -> None:
    """torch's verifier accepts aten.from_file (an operator); a tampered graph read files with it."""

    class Double(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2.0

    def read_a_file(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            model = json.loads(data)
            node = model["graph_module"]["graph"]["nodes"][0]
            node["target"] = "torch.ops.aten.from_file.default"
            node["inputs"] = [
                {"name": "filename", "arg": {"as_string": str(tmp_path / "secret")}, "kind": 1},
                {"name": "shared", "arg": {"as_bool": False}, "kind": 1},
                {"name": "size", "arg": {"as_int": 4}, "kind": 1},
            ]
            return json.dumps(model).encode()
        return data

    path = _export(Double(), tmp_path / "double.pt2", _batch(), dynamic=False)
    tampered = _rewrite(path, tmp_path / "reads.pt2", read_a_file)
    with pytest.raises(
        InputError, match=r"refusing teacher reads\.pt2: its graph calls aten\.from_file"
    ):
        load_teacher(tampered)


# --- TorchScript --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ts", ".pt", ".pth", ".ptl"])
def test_torchscript_loads_by_suffix_or_content(tmp_path: Path, suffix: str) -> None:
    model = _net()
    teacher = load_teacher(_script(model, tmp_path / f"scripted{suffix}"))
    assert (teacher.info.kind, teacher.info.layout, teacher.info.input_shape) == (
        "torchscript",
        None,
        None,
    )
    checked = check_teacher(teacher, _batch(), CLASSES)
    assert checked.info.layout == "NCHW"
    _same(checked, model, _batch(3))


def test_unknown_layout_is_probed_nchw_then_nhwc(tmp_path: Path) -> None:
    model = _net(NHWCNet)
    teacher = load_teacher(_script(model, tmp_path / "nhwc.ts"))
    checked = check_teacher(teacher, _batch(), CLASSES)
    assert checked.info.layout == "NHWC"
    x = _batch(3)
    with torch.no_grad():
        torch.testing.assert_close(checked.run(x), model(x.permute(0, 2, 3, 1)), atol=1e-5, rtol=0)


def _with_setstate(tmp_path: Path, extra: str) -> Path:
    """A scripted module whose __setstate__ (run by torch.jit.load itself) also runs ``extra``."""

    class Stateful(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, bool]:
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
            self.w = state[0]
            self.training = state[1]

    anchor = "    self.training = (state)[1]\n"
    injected = []

    def inject(name: str, data: bytes) -> bytes | None:
        if name.endswith(".debug_pkl"):
            return None  # source ranges would no longer match the edited code
        if "/code/" in name and anchor in data.decode():
            injected.append(name)
            return data.decode().replace(anchor, anchor + textwrap.indent(extra, "    ")).encode()
        return data

    evil = _rewrite(_script(Stateful(), tmp_path / "plain.pt"), tmp_path / "evil.pt", inject)
    assert len(injected) == 1
    return evil


def test_torchscript_that_writes_files_while_loading_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"AAAAAAAA")
    evil = _with_setstate(
        tmp_path,
        f't = torch.from_file("{victim}", True, 8, dtype=0)\n_0 = torch.fill_(t, 66)\nprint(torch.sum(t))\n',
    )
    with pytest.raises(
        InputError, match=r"refusing TorchScript teacher evil\.pt: .*torch\.from_file"
    ):
        load_teacher(evil)
    assert victim.read_bytes() == b"AAAAAAAA"


def test_torchscript_custom_ops_are_refused(tmp_path: Path) -> None:
    evil = _with_setstate(tmp_path, "_1 = ops.mylib.anything(self.w)\n")
    with pytest.raises(InputError, match=r"ops\.mylib"):
        load_teacher(evil)


def test_file_op_list_covers_every_op_that_takes_a_file_name() -> None:
    """Re-derive FILE_OPS from torch's op registry so a torch upgrade cannot add one silently."""
    file_ops = {
        str(schema.name).split("::")[-1]
        for schema in torch._C._jit_get_all_schemas()
        if any(
            str(arg.type) in ("str", "Optional[str]")
            and re.search("file|path", arg.name, re.IGNORECASE)
            for arg in schema.arguments
        )
    }
    assert file_ops <= FILE_OPS


# --- whole pickles and state dicts given as the teacher -----------------------------------------


def test_pickled_module_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_net(), path)
    with pytest.raises(InputError) as caught:
        load_teacher(path)
    message = str(caught.value)
    assert "whole.pt is a pickled checkpoint that needs code execution to load" in message
    assert re.search(r"it references \S*Net, torch\.nn\.modules", message)
    assert "export it with torch.export.save (.pt2)" in message and "\n" not in message


def test_legacy_pickled_module_names_its_class(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pth"
    torch.save(_net(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(
        InputError, match=r"legacy\.pth is a pickled checkpoint .*references \S*Net"
    ):
        load_teacher(path)


def test_state_dict_given_as_teacher_points_at_factory(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_net().state_dict(), path)
    with pytest.raises(
        InputError,
        match=r"weights\.pt is a state dict \(weights only\), not a model: point `teacher\.factory`",
    ):
        load_teacher(path)


# --- factories ----------------------------------------------------------------------------------

FACTORY_SOURCE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def build():
    return Net()


def build_wide():
    return Net(classes=7)


def broken():
    raise ValueError("no GPU found")


def not_a_model():
    return 42


CONSTANT = 3
"""


def _project(tmp_path: Path, module: str, source: str = FACTORY_SOURCE) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    return folder


@pytest.mark.parametrize("weights_kind", ["safetensors", "pt", "wrapped"])
def test_factory_with_weights_matches_the_model(tmp_path: Path, weights_kind: str) -> None:
    from safetensors.torch import save_file

    folder = _project(tmp_path, "fac_models")
    model = _net()
    state = model.state_dict()
    weights = tmp_path / ("w.safetensors" if weights_kind == "safetensors" else "w.pt")
    if weights_kind == "safetensors":
        save_file(state, str(weights))
    else:
        torch.save(
            {"state_dict": state, "epoch": 3} if weights_kind == "wrapped" else state, weights
        )
    path_before = list(sys.path)
    spec = TeacherSpec(factory="fac_models:build", weights=weights, search_path=folder)
    teacher = load_teacher(spec)
    assert sys.path == path_before
    assert (teacher.info.kind, teacher.info.layout, teacher.info.source) == (
        "factory",
        None,
        f"fac_models:build (+ {weights.name})",
    )
    _same(check_teacher(teacher, _batch(), CLASSES), model, _batch(3))
    assert load_teacher(spec).info.fingerprint == teacher.info.fingerprint


def test_factory_fingerprint_follows_weights_and_code(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = _project(tmp_path, "fp_models")
    weights = tmp_path / "w.safetensors"
    save_file(_net().state_dict(), str(weights))
    spec = TeacherSpec(factory="fp_models:build", weights=weights, search_path=folder)
    first = load_teacher(spec).info.fingerprint
    save_file(_net(classes=CLASSES).state_dict() | {"fc.bias": torch.ones(CLASSES)}, str(weights))
    assert load_teacher(spec).info.fingerprint != first


def test_same_module_name_in_two_projects_loads_each_own(tmp_path: Path) -> None:
    for classes in (3, 4):
        folder = tmp_path / f"p{classes}"
        folder.mkdir()
        (folder / "shadowed_model.py").write_text(
            FACTORY_SOURCE.replace(
                "def build():\n    return Net()", f"def build():\n    return Net({classes})"
            )
        )
        teacher = load_teacher(TeacherSpec(factory="shadowed_model:build", search_path=folder))
        assert teacher.run(_batch()).shape == (2, classes)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            "fac_errors_missing:build",
            r"module fac_errors_missing does not import \(ModuleNotFoundError: No module named "
            r"'not_installed_pkg'\)",
        ),
        ("fac_errors:nope", r"module fac_errors has no attribute 'nope' \(it defines: .*build"),
        ("fac_errors:CONSTANT", r"fac_errors:CONSTANT is a int, not callable"),
        ("fac_errors:broken", r"fac_errors:broken\(\) raised ValueError: no GPU found"),
        ("fac_errors:not_a_model", r"not_a_model\(\) returned a int, expected a torch\.nn\.Module"),
    ],
)
def test_factory_errors_are_one_line(tmp_path: Path, factory: str, message: str) -> None:
    folder = _project(tmp_path, "fac_errors")
    _project(tmp_path, "fac_errors_missing", "import not_installed_pkg\n")
    with pytest.raises(InputError, match=message) as caught:
        load_teacher(TeacherSpec(factory=factory, search_path=folder))
    assert "\n" not in str(caught.value)


def test_factory_with_mismatched_weights_lists_the_keys(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = _project(tmp_path, "fac_mismatch")
    state = _net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv.bias"]
    weights = tmp_path / "w.safetensors"
    save_file(state, str(weights))
    spec = TeacherSpec(factory="fac_mismatch:build_wide", weights=weights, search_path=folder)
    message = (
        r"weights w\.safetensors do not fit fac_mismatch:build_wide: 1 missing \(conv\.bias\); "
        r"1 unexpected \(extra\.weight\); 2 shape mismatches, file vs model "
        r"\(fc\.weight \(5, 4\) vs \(7, 4\), fc\.bias \(5,\) vs \(7,\)\)"
    )
    with pytest.raises(InputError, match=message):
        load_teacher(spec)


def test_factory_weights_that_are_a_pickled_module_are_refused(tmp_path: Path) -> None:
    folder = _project(tmp_path, "fac_pickle")
    weights = tmp_path / "whole.pt"
    torch.save(_net(), weights)
    spec = TeacherSpec(factory="fac_pickle:build", weights=weights, search_path=folder)
    with pytest.raises(InputError, match=r"whole\.pt is a pickled checkpoint that needs code"):
        load_teacher(spec)


# --- torchvision --------------------------------------------------------------------------------


def test_torchvision_that_does_not_import_is_explained(tmp_path: Path) -> None:
    try:
        import torchvision  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torchvision imports here")
    spec = TeacherSpec(torchvision="resnet18", weights=tmp_path / "w.pth")
    message = (
        r"^teacher torchvision:resnet18 needs torchvision, which does not import here \(.+\): "
        r"export the model to \.pt2 or ONNX on a machine where it does$"
    )
    with pytest.raises(MissingExtraError, match=message):
        load_teacher(spec)


def test_torchvision_builder_gets_classes_from_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torchvision imports: a stand-in ``torchvision.models`` records how it is called."""
    calls: list[dict[str, object]] = []

    def get_model(name: str, **kwargs: object) -> nn.Module:
        calls.append({"name": name, **kwargs})
        return Net(int(kwargs.get("num_classes", 1000)))  # type: ignore[call-overload]

    models = types.SimpleNamespace(get_model=get_model, list_models=lambda: ["resnet18", "vgg11"])
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    model = _net()
    weights = tmp_path / "r18.pth"
    torch.save(model.state_dict(), weights)
    teacher = load_teacher(TeacherSpec(torchvision="resnet18", weights=weights))
    assert calls == [{"name": "resnet18", "weights": None, "num_classes": CLASSES}]
    assert (teacher.info.kind, teacher.info.source) == (
        "torchvision",
        "torchvision:resnet18 (+ r18.pth)",
    )
    _same(teacher, model, _batch())
    with pytest.raises(
        InputError, match=r"torchvision has no model 'resnet81': did you mean resnet18"
    ):
        load_teacher(TeacherSpec(torchvision="resnet81", weights=weights))


# --- ONNX ---------------------------------------------------------------------------------------


def test_onnx_matches_the_model_and_reads_its_shapes(tmp_path: Path) -> None:
    model = _net()
    teacher = load_teacher(_onnx(model, tmp_path / "t.onnx"))
    info = teacher.info
    assert (info.kind, info.layout, info.input_shape, info.num_classes) == (
        "onnx",
        "NCHW",
        (None, *NCHW),
        CLASSES,
    )
    _same(check_teacher(teacher, _batch(), CLASSES), model, _batch(3))


def test_onnx_with_fixed_batch_of_one_runs_image_by_image(tmp_path: Path) -> None:
    model = _net()
    teacher = load_teacher(_onnx(model, tmp_path / "one.onnx", dynamic=False))
    assert teacher.info.input_shape == (1, *NCHW)
    _same(teacher, model, _batch(3))


def test_malformed_onnx_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07 not a protobuf")
    with pytest.raises(InputError, match=r"^bad\.onnx is not a valid ONNX model: "):
        load_teacher(path)


def test_onnx_without_onnxruntime_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.onnx"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgepack\[onnx\]'"):
        load_teacher(path)


# --- Keras and SavedModel -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "module"), [("t.keras", "keras"), ("sm", "tensorflow")])
def test_tensorflow_teachers_without_tensorflow_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str
) -> None:
    path = tmp_path / name
    if name == "sm":
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"")
    else:
        path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        MissingExtraError, match=r"needs TensorFlow .*pip install 'edgepack\[keras\]'"
    ):
        load_teacher(path)


def _keras_model(classes: int = CLASSES) -> object:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(classes)(hidden))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_teacher_is_nhwc_and_matches(tmp_path: Path, suffix: str) -> None:
    model = _keras_model()
    path = tmp_path / f"t{suffix}"
    model.save(path)  # type: ignore[attr-defined]
    teacher = load_teacher(path)
    info = teacher.info
    assert (info.kind, info.layout, info.input_shape, info.num_classes) == (
        "keras",
        "NHWC",
        (None, 8, 8, 3),
        CLASSES,
    )
    x = _batch(3)
    expected = torch.from_numpy(model(x.permute(0, 2, 3, 1).numpy()).numpy())  # type: ignore[operator]
    torch.testing.assert_close(
        check_teacher(teacher, _batch(), CLASSES).run(x), expected, atol=1e-5, rtol=0
    )


def test_keras_lambda_layer_is_refused(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    model = _keras_model()
    wrapped = keras.Model(model.inputs, keras.layers.Lambda(lambda t: t * 2)(model.outputs[0]))  # type: ignore[attr-defined]
    path = tmp_path / "lambda.keras"
    wrapped.save(path)
    with pytest.raises(
        InputError, match=r"refusing Keras teacher lambda\.keras: it holds Python code"
    ):
        load_teacher(path)


def test_saved_model_teacher_matches(tmp_path: Path) -> None:
    model = _keras_model()
    folder = tmp_path / "exported"
    model.export(str(folder), format="tf_saved_model", verbose=False)  # type: ignore[attr-defined]
    teacher = load_teacher(folder)
    info = teacher.info
    assert (info.kind, info.layout, info.input_shape, info.num_classes, info.source) == (
        "savedmodel",
        "NHWC",
        (None, 8, 8, 3),
        CLASSES,
        "exported/",
    )
    assert load_teacher(folder).info.fingerprint == info.fingerprint
    x = _batch(3)
    expected = torch.from_numpy(model(x.permute(0, 2, 3, 1).numpy()).numpy())  # type: ignore[operator]
    torch.testing.assert_close(teacher.run(x), expected, atol=1e-5, rtol=0)


# --- checks shared by every loader --------------------------------------------------------------


def test_three_channel_teacher_fed_one_channel_data(tmp_path: Path) -> None:
    static = load_teacher(_onnx(_net(), tmp_path / "t.onnx"))
    with pytest.raises(InputError, match=r"expects 3×8×8 \(NCHW\), the data gives 1×8×8"):
        check_teacher(static, _batch(channels=1), CLASSES)
    dynamic = load_teacher(_script(_net(), tmp_path / "t.ts"))
    message = r"^teacher t\.ts rejected a 2×1×8×8 batch \(NCHW\): Given groups=1, .* 3 channels"
    with pytest.raises(InputError, match=message):
        check_teacher(dynamic, _batch(channels=1), CLASSES)


def test_non_finite_logits_are_refused(tmp_path: Path) -> None:
    model = _net()
    with torch.no_grad():
        model.fc.bias[0] = float("nan")
    teacher = load_teacher(_script(model, tmp_path / "nan.ts"))
    with pytest.raises(InputError, match=r"nan\.ts returned non-finite logits"):
        check_teacher(teacher, _batch(), CLASSES, name="nan.ts")


def test_layout_override_wins_and_changes_the_fingerprint(tmp_path: Path) -> None:
    path = _script(_net(NHWCNet), tmp_path / "nhwc.ts")
    teacher = load_teacher(TeacherSpec(path=path, layout="NHWC"))
    assert teacher.info.layout == "NHWC"
    assert teacher.info.fingerprint != load_teacher(path).info.fingerprint
    assert check_teacher(teacher, _batch(), CLASSES) is teacher


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.pt2", r"teacher not found: expected a file at"),
        (lambda p: _touch(p / "t.pkl"), r"unsupported teacher file t\.pkl"),
        (lambda p: p, r"is a folder without saved_model\.pb"),
    ],
)
def test_unusable_paths_are_explained(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_teacher(make(tmp_path))


def test_registry_covers_every_documented_suffix() -> None:
    documented = {".pt2", ".pt", ".pth", ".ts", ".ptl", ".onnx", ".keras", ".h5"}
    assert documented <= set(LOADERS)


# --- the spec -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("torchvision:resnet18", TeacherSpec(torchvision="resnet18")),
        ("models.cnn:build", TeacherSpec(factory="models.cnn:build", search_path=Path("/proj"))),
        ("teacher.pt2", TeacherSpec(path=Path("/proj/teacher.pt2"))),
        ("models/cnn:v2.onnx", TeacherSpec(path=Path("/proj/models/cnn:v2.onnx"))),
        ("/abs/model.onnx", TeacherSpec(path=Path("/abs/model.onnx"))),
    ],
)
def test_spec_parse(ref: str, expected: TeacherSpec) -> None:
    assert TeacherSpec.parse(ref, Path("/proj")) == expected


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (TeacherSpec(path=Path("a/t.onnx")), "t.onnx"),
        (
            TeacherSpec(factory="pkg.mod:fn", weights=Path("w.safetensors")),
            "pkg.mod:fn (+ w.safetensors)",
        ),
        (
            TeacherSpec(torchvision="resnet18", weights=Path("w.pth")),
            "torchvision:resnet18 (+ w.pth)",
        ),
    ],
)
def test_spec_describe(spec: TeacherSpec, text: str) -> None:
    assert spec.describe() == text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of path, factory, torchvision"),
        ({"path": Path("t.pt2"), "factory": "a:b"}, "exactly one"),
        ({"factory": "not a factory"}, "expected 'package.module:function'"),
        ({"path": Path("t.pt2"), "weights": Path("w.pt")}, "already holds its weights"),
        ({"path": Path("t.pt2"), "layout": "CHW"}, "expected one of NCHW, NHWC"),
    ],
)
def test_spec_rejects_inconsistent_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TeacherSpec(**fields)  # type: ignore[arg-type]
