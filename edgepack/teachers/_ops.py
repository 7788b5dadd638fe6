"""Which operators a teacher file may call: no file access, no unvetted native namespaces.

Pickle is not the only way a torch model file runs code. Measured on torch 2.13:

* TorchScript (``torch.jit.load``): constants and module state are read by torch's C++
  unpickler, which resolves only tensor rebuilders and the ``__torch__`` classes compiled from the
  archive's ``code/`` sources, so no Python callable is reachable. But those sources are a real
  program, and ``__setstate__`` methods in them run *during* ``torch.jit.load``. A crafted archive
  whose ``__setstate__`` calls ``torch.from_file(path, True, n)`` and fills the result overwrote
  an arbitrary file at load time; ``aten::save`` writes files too. Custom-op namespaces
  (``ops.<ns>``) and TorchBind classes (``torch.classes.<ns>``) reach whatever native libraries
  are loaded in the process.
* torch.export (``.pt2``): the deserializer resolves any ``torch.*`` attribute path, but the
  ExportedProgram verifier then refuses targets that are not operators (``os.system`` reached via
  ``torch.serialization.os.system`` was refused at load). ``aten.from_file`` is an operator, so a
  tampered graph that calls it loaded, and reading the teacher's "logits" returned a file's bytes.

So both loaders refuse these operators before anything runs: TorchScript by scanning the archive's
sources (read with torch's own zip reader, so nothing differs from what torch compiles), .pt2 by
walking the deserialized graphs (deserializing runs none of them). What remains is the attack
surface every graph runtime has (ONNX Runtime, TensorFlow): memory-safety bugs in the kernels a
model may call with crafted arguments. Treat teacher files like code you would run.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Every op in torch 2.13 whose schema takes a file name (tests/test_teachers.py re-derives this
# list from the op registry, so a torch upgrade that adds one fails loudly).
FILE_OPS = frozenset({"from_file", "save"})
# Operator namespaces that ship with torch (and torchao's quantize ops); anything else is a
# custom op from a native library we have not looked at.
OP_NAMESPACES = frozenset(
    {
        "aten",
        "prim",
        "prims",
        "quantized",
        "_quantized",
        "quantized_decomposed",
        "prepacked",
        "higher_order",
        "torchao",
    }
)
# TorchBind classes that quantized and mobile-optimised TorchScript models hold.
CLASS_NAMESPACES = frozenset({"quantized", "xnnpack"})

_SKIP = frozenset(
    {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT}
)


def torchscript_refusals(source: str) -> set[str]:
    """Forbidden calls in one TorchScript source file (``code/**.py`` of an archive).

    Works on tokens, not text, so spacing or line continuations cannot hide a name; string
    literals equal to a forbidden op are refused too, in case a lookup by name ever works.
    Source that does not tokenize is refused whole.
    """
    try:
        tokens = [
            t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in _SKIP
        ]
    except (tokenize.TokenError, SyntaxError) as exc:
        return {f"unreadable code ({exc})"}
    found: set[str] = set()
    words = [t.string for t in tokens]
    for i, token in enumerate(tokens):
        if token.type == tokenize.STRING and _literal(token.string) in FILE_OPS:
            found.add(f"{_literal(token.string)!r}")
        if token.type != tokenize.NAME:
            continue
        if token.string in FILE_OPS:
            found.add(f"torch.{token.string}")
        namespace = words[i + 2] if i + 2 < len(words) and words[i + 1] == "." else None
        bare = i == 0 or words[i - 1] != "." or words[i - 2 : i] == ["torch", "."]
        if token.string == "ops" and bare and namespace and namespace not in OP_NAMESPACES:
            found.add(f"ops.{namespace}")
        if (
            token.string == "classes"
            and words[i - 2 : i] == ["torch", "."]
            and namespace not in CLASS_NAMESPACES
        ):
            found.add(f"torch.classes.{namespace}")
    return found


def graph_refusals(program: torch.export.ExportedProgram) -> set[str]:
    """Forbidden operators anywhere in an exported program, control-flow subgraphs included."""
    import torch

    found: set[str] = set()
    for module in program.graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            target = node.target
            if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
                continue
            name = target._schema.name.split("::")[-1]
            if name in FILE_OPS or target.namespace not in OP_NAMESPACES:
                found.add(f"{target.namespace}.{name}")
    return found


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
