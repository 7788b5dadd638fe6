"""Kernel families: what a counted function does, read from its name and its object.

XNNPACK names every microkernel after its datatype and operation
(``xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_4x16c4__asm_aarch64_neondot_ld128``: int8 with
per-channel int8 weights, indirect GEMM = a KxK convolution), so one ordered table of name
patterns sorts them; the first row that matches wins. What is not an XNNPACK kernel is sorted
by its object: TFLite's own kernels (ops the delegate did not take run there), the rest of the
LiteRT runtime, the Python interpreter and its extensions, and libc/libm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An XNNPACK microkernel's name: xnn_<datatypes>_<operation>_..._ukernel_<tile>__<isa>.
_DATATYPE = re.compile(r"(?:q[a-z]*\d+[a-z]*|[fsux]\d+[a-z]*|bf16)")  # qs8 qc8w qd8 f32 x32 ...
_INT8 = re.compile(r"(?:q[a-z]*8[a-z]*|[su]8)")


@dataclass(frozen=True)
class Family:
    """A row of the table: XNNPACK microkernels by datatype and operation (a regex the
    operation token must match in full), or other code by its object's file name."""

    name: str
    operation: str | None = None
    int8: bool | None = None  # None: either datatype
    module: str | None = None  # a regex the object's file name must match (re.search)
    symbol: str | None = None  # a regex the function name must match (re.match)

    def matches(self, module: str, symbol: str | None, kernel: tuple[bool, str] | None) -> bool:
        if self.operation is not None:
            return (
                kernel is not None
                and re.fullmatch(self.operation, kernel[1]) is not None
                and self.int8 in (None, kernel[0])
            )
        if self.symbol is not None and (symbol is None or not re.match(self.symbol, symbol)):
            return False
        return self.module is None or re.search(self.module, module) is not None


FAMILIES: tuple[Family, ...] = (
    Family("int8 conv (igemm)", "igemm|conv", int8=True),
    Family("int8 gemm (1x1 conv, fully connected)", "gemm|spmm", int8=True),
    Family("int8 depthwise conv", "dwconv2?d?", int8=True),
    Family("float conv (igemm)", "igemm|conv", int8=False),
    Family("float gemm (1x1 conv, fully connected)", "gemm|spmm", int8=False),
    Family("float depthwise conv", "dwconv2?d?", int8=False),
    Family("pooling and reductions", r"\w*pool|r\w*(?:sum|max|min)\d?|raddstore\w*"),
    Family("elementwise (add, mul, convert, activations)", r"v\w+|lut"),
    Family("packing, transpose, copy, resize", r"pack\w*|transposec?|copy|fill|zip|pad|ibilinear"),
    Family("XNNPACK operator drivers and set-up", symbol=r"(?:xnn_|pthreadpool)"),
    Family(
        "TFLite built-in kernels (not delegated)",
        symbol=r"_ZN\w*?(?:3ops7builtin|9optimized_|13reference_ops|3ruy|8gemmlowp)",
    ),
    Family("LiteRT interpreter and runtime", module=r"litert|tflite|LiteRt"),
    Family("Python, numpy and bindings", module=r"python|numpy|_pywrap|\.cpython-"),
    Family("libc, libm, loader", module=r"^(?:libc|libm|ld-linux|libstdc\+\+|libgcc)"),
)
OTHER = "other"


def family_of(module: str, symbol: str | None) -> str:
    """The first family whose patterns match, or :data:`OTHER`."""
    kernel = microkernel(symbol)
    for family in FAMILIES:
        if family.matches(module, symbol, kernel):
            return family.name
    return OTHER


def microkernel(symbol: str | None) -> tuple[bool, str] | None:
    """(int8 activations?, operation) of an XNNPACK microkernel's name (``xnn_f32_qc8w_gemm``
    has int8 weights but float activations: float); None for any other function."""
    if symbol is None or not symbol.startswith("xnn_") or "_ukernel" not in symbol:
        return None
    tokens = symbol[4:].split("_")
    types = 0
    while types < len(tokens) and _DATATYPE.fullmatch(tokens[types]):
        types += 1
    if types == 0 or types == len(tokens):
        return None
    return _INT8.fullmatch(tokens[0]) is not None, tokens[types]  # activations: the first
