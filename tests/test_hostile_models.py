"""Hostile model files: each is made here from a tiny exported teacher, then given to the CLI.

Every case must end in exit 2 with one ``error:`` line, no traceback, no config written, and no
marker file: the payloads that would run code all write one.
"""

from __future__ import annotations

import builtins
import json
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import TwoClassNet
from hostile import assert_only_error, run_init

from edgepack.cli import main

Entries = list[tuple[str, bytes]]
Edit = Callable[[Entries, str, Path], Entries]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-class teacher on 8×8 gray images, batch dynamic (so the graph holds sympy text)."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt2"
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(
        TwoClassNet().eval(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 255, (8, 8, 8), np.uint8), labels=np.arange(8) % 2)
    return path


class _Payload:
    """Unpickling this runs ``code`` (through builtins.exec, like a real exploit)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return builtins.exec, (self.code,)


def _writes(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _entries(path: Path) -> tuple[str, Entries]:
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    return entries[0][0].split("/")[0], entries


def _write(path: Path, entries: Entries, deflate: bool = False) -> Path:
    kind = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", kind) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=kind)
    return path


def _replace(entries: Entries, suffix: str, change: Callable[[bytes], bytes]) -> Entries:
    return [(n, change(d) if n.endswith(suffix) else d) for n, d in entries]


def _json_edit(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        value = json.loads(data)
        change(value)
        return json.dumps(value).encode()

    return edit


_META = {
    "dtype": 7,
    "sizes": [],
    "requires_grad": False,
    "device": {"type": "cpu", "index": None},
    "strides": [],
    "storage_offset": {"as_int": 0},
    "layout": 7,
}


def _constant(kind: str, use_pickle: bool) -> Edit:
    """The red-team repro: a constant whose entry torch unpickles (opaque_obj_ → pickle.loads)."""

    def edit(entries: Entries, root: str, marker: Path) -> Entries:
        config = {"evil": {"path_name": f"{kind}0", "is_param": False}}
        config["evil"] |= {"use_pickle": use_pickle, "tensor_meta": _META}
        entries = _replace(
            entries,
            "model_constants_config.json",
            lambda _: json.dumps({"config": config}).encode(),
        )
        return [
            *entries,
            (f"{root}/data/constants/{kind}0", pickle.dumps(_Payload(_writes(marker)))),
        ]

    return edit


def _pickled_weight(entries: Entries, root: str, marker: Path) -> Entries:
    def mark(config: dict) -> None:
        config["config"]["conv.weight"]["use_pickle"] = True

    entries = _replace(entries, "model_weights_config.json", _json_edit(mark))
    return _replace(entries, "weights/weight_0", lambda _: pickle.dumps(_Payload(_writes(marker))))


def _duplicate_config(entries: Entries, root: str, marker: Path) -> Entries:
    """Python's zipfile reads the last of two same-named entries, torch's reader the first."""
    evil = _constant("opaque_obj_", False)(entries, root, marker)
    config = next(d for n, d in evil if n.endswith("model_constants_config.json"))
    return [(f"{root}/data/constants/model_constants_config.json", config), *entries]


def _extra_entry(name: str, data: bytes = b"\x7fELF") -> Edit:
    return lambda entries, root, marker: [*entries, (f"{root}/{name}", data)]


def _sympy_eval(entries: Entries, root: str, marker: Path) -> Entries:
    """sympy.sympify evals the graph's expr_str."""
    code = f"__import__('builtins').exec({_writes(marker)!r})"

    def inject(model: dict) -> None:
        stack: list[object] = [model]
        while stack:
            node = stack.pop()
            if isinstance(node, dict) and "expr_str" in node:  # the dynamic batch dimension
                node["expr_str"] = f"({code}) + {node['expr_str']}"
                return
            stack.extend(
                node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
            )
        raise AssertionError("the teacher's graph has no symbolic expression")

    return _replace(entries, "models/model.json", _json_edit(inject))


def _guard_code(entries: Entries, root: str, marker: Path) -> Entries:
    """ExportedProgram.module() exec's guards_code."""

    def add(model: dict) -> None:
        code = _writes(marker).encode().hex()  # no quotes: torch pastes it into a string literal
        model["guards_code"] = [
            f"(__import__('builtins').exec(bytes.fromhex('{code}').decode()) or True)"
        ]

    return _replace(entries, "models/model.json", _json_edit(add))


def _counting_symbol(entries: Entries, root: str, marker: Path) -> Entries:
    """A range constraint on u<N> makes the deserializer count to N."""

    def add(model: dict) -> None:
        model["range_constraints"]["u99999999999"] = {"min_val": 0, "max_val": 1}

    return _replace(entries, "models/model.json", _json_edit(add))


def _unsafe_sample_inputs(entries: Entries, root: str, marker: Path) -> Entries:
    import io

    buffer = io.BytesIO()
    torch.save(_Payload(_writes(marker)), buffer)
    return _replace(entries, "sample_inputs/model.pt", lambda _: buffer.getvalue())


def _empty_weight_huge_shape(entries: Entries, root: str, marker: Path) -> Entries:
    """A 0-byte entry becomes torch.zeros(sizes): 10^12 floats."""

    def grow(config: dict) -> None:
        meta = config["config"]["conv.bias"]["tensor_meta"]
        meta["sizes"] = [{"as_int": 10**12}]

    entries = _replace(entries, "model_weights_config.json", _json_edit(grow))
    return _replace(entries, "weights/weight_1", lambda _: b"")


def _short_weight(entries: Entries, root: str, marker: Path) -> Entries:
    return _replace(entries, "weights/weight_0", lambda data: data[:8])


def _traversal(entries: Entries, root: str, marker: Path) -> Entries:
    return [*entries, (f"{root}/../../escape", b"x")]


def _legacy_root(entries: Entries, root: str, marker: Path) -> Entries:
    """torch.export.load's fallback reads pickles at the zip root when load_pt2 fails."""
    return [*entries, ("serialized_state_dict.pt", pickle.dumps(_Payload(_writes(marker))))]


def _no_graph(entries: Entries, root: str, marker: Path) -> Entries:
    return [(n, d) for n, d in entries if not n.endswith("models/model.json")]


CASES: dict[str, tuple[Edit, str]] = {
    "opaque_obj constant (pickle.loads)": (_constant("opaque_obj_", False), "opaque_obj_0"),
    "custom_obj constant": (_constant("custom_obj_", False), "custom_obj_0"),
    "pickled tensor constant": (_constant("tensor_", True), "use_pickle must be false"),
    "pickled weight": (_pickled_weight, "use_pickle must be false"),
    "duplicate config entry": (_duplicate_config, "appears twice"),
    "compiled AOTInductor library": (
        _extra_entry("data/aotinductor/model/model.so"),
        "data/aotinductor/model/model.so",
    ),
    "legacy pickled weights": (_extra_entry("data/weights/model.pt"), "data/weights/model.pt"),
    "legacy root pickle": (_legacy_root, "one root folder"),
    "sympy expression eval": (_sympy_eval, "not plain arithmetic"),
    "guard code exec": (_guard_code, "guard code"),
    "huge unbacked symbol": (_counting_symbol, "u99999999999"),
    "sample inputs needing code": (_unsafe_sample_inputs, "builtins.exec"),
    "0-byte weight with huge shape": (_empty_weight_huge_shape, "needing 4000000000000"),
    "truncated weight": (_short_weight, "needing 72"),
    "path traversal": (_traversal, "not a plain relative name"),
    "no graph": (_no_graph, "models/model.json"),
}


def _init(teacher: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    return run_init(teacher, data, tmp_path / "e.yaml")


def _assert_refused(code: int, output: str, tmp_path: Path, *fragments: str) -> None:
    assert_only_error(code, output, *fragments)
    assert not (tmp_path / "e.yaml").exists()
    assert not (tmp_path / "marker").exists(), "code from the model file ran"


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_pt2_is_refused_before_torch_reads_it(
    case: str, teacher: Path, data: Path, tmp_path: Path
) -> None:
    edit, fragment = CASES[case]
    root, entries = _entries(teacher)
    evil = _write(tmp_path / "evil.pt2", edit(entries, root, tmp_path / "marker"))
    _assert_refused(*_init(evil, data, tmp_path), tmp_path, "evil.pt2", fragment)


def test_untampered_teacher_still_loads(teacher: Path, data: Path, tmp_path: Path) -> None:
    """The allowlist accepts what torch.export.save writes (dynamic dims included)."""
    root, entries = _entries(teacher)
    # torch names the root folder after the file: spaces and non-ASCII are legitimate.
    renamed = [("my teacher ü" + name[len(root) :], data) for name, data in entries]
    same = _write(tmp_path / "my teacher ü.pt2", renamed, deflate=True)
    code, output = _init(same, data, tmp_path)
    assert code == 0, output


def test_decompression_bomb_is_refused_before_inflating(
    teacher: Path, data: Path, tmp_path: Path
) -> None:
    root, entries = _entries(teacher)
    bomb = [*entries, (f"{root}/extra/notes.txt", bytes(64 << 20))]  # 64 MB of zeros → ~64 KB
    path = _write(tmp_path / "bomb.pt2", bomb, deflate=True)
    assert path.stat().st_size < 1 << 20
    _assert_refused(*_init(path, data, tmp_path), tmp_path, "decompression bomb", "100x")


def test_weight_with_bad_crc_is_refused(teacher: Path, data: Path, tmp_path: Path) -> None:
    """torch's reader never checks CRCs: a flipped bit silently changed the teacher."""
    root, entries = _entries(teacher)
    path = _write(tmp_path / "flipped.pt2", entries)
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{root}/data/weights/weight_0")
    name_len, extra_len = struct.unpack(
        "<HH", blob[info.header_offset + 26 : info.header_offset + 30]
    )
    blob[info.header_offset + 30 + name_len + extra_len] ^= 0x40
    path.write_bytes(bytes(blob))
    _assert_refused(*_init(path, data, tmp_path), tmp_path, "weight_0", "corrupt")


def test_not_a_zip_is_refused(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "junk.pt2"
    path.write_bytes(zlib.compress(b"not a model" * 100))
    _assert_refused(*_init(path, data, tmp_path), tmp_path, "junk.pt2", "not a readable")


def test_tampered_torchscript_is_refused(data: Path, tmp_path: Path) -> None:
    """TorchScript archives pass the same zip checks (here: a duplicated record)."""
    path = tmp_path / "script.ts"
    torch.jit.save(torch.jit.script(TwoClassNet().eval()), str(path))
    _, entries = _entries(path)
    evil = _write(tmp_path / "evil.ts", [*entries, entries[-1]])
    _assert_refused(*_init(evil, data, tmp_path), tmp_path, "evil.ts", "appears twice")


def test_build_refuses_the_code_execution_repro(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`edgepack build --teacher` goes through the same loader as init."""
    root, entries = _entries(teacher)
    evil = _write(
        tmp_path / "evil.pt2", _constant("opaque_obj_", False)(entries, root, tmp_path / "marker")
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["build", "--quick", "--teacher", str(evil), "--out", "dist", "--cache-dir", "cache"]
    )
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error: ") and "opaque_obj_0" in lines[-1]
    assert "Traceback" not in result.output
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


def test_onnx_external_data_outside_its_folder_is_refused(data: Path, tmp_path: Path) -> None:
    """An ONNX initializer may live in another file; one outside the model's folder is refused
    (by onnxruntime's own path check: this pins that it stays so)."""
    from onnx import TensorProto, helper

    (tmp_path / "secret.bin").write_bytes(b"top secret bytes")
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1, 4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    io_ = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "W"], ["y"])], "g", [io_[0]], [io_[1]], [weight]
    )
    (tmp_path / "model").mkdir()
    path = tmp_path / "model" / "evil.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    code, output = _init(path, data, tmp_path)
    _assert_refused(code, output, tmp_path, "evil.onnx", "escapes model directory")
    assert "top secret" not in output


def test_keras_zip_bomb_is_refused_before_keras_reads_it(data: Path, tmp_path: Path) -> None:
    """.keras files are zips too; the zip checks run before TensorFlow is even imported."""
    entries = [("config.json", b"{}"), ("model.weights.h5", bytes(64 << 20))]
    path = _write(tmp_path / "bomb.keras", entries, deflate=True)
    _assert_refused(*_init(path, data, tmp_path), tmp_path, "bomb.keras", "decompression bomb")


@pytest.mark.parametrize(
    ("expression", "safe"),
    [
        ("Symbol('s77', positive=True, integer=True)", True),  # what torch writes
        ("FloorDiv(s0, 2) + 1", True),
        ("Max(1, s0) <= 64", True),
        ("s0**2", True),
        ("__import__('os').system('true')", False),
        ("s0.__class__", False),
        ("(2**64)**64**64", False),  # a power tower: hours of integer arithmetic
        ("Symbol('s0', evaluate=exec)", False),
        ("[s0 for s0 in ()]", False),
        ("lambda: 1", False),
    ],
)
def test_graph_expressions_are_plain_arithmetic(expression: str, safe: bool) -> None:
    """sympy.sympify evals its text: only symbols, numbers, operators and known functions pass."""
    from edgepack.teachers._expressions import safe_expression

    assert safe_expression(expression) is safe
