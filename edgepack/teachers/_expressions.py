"""Which sympy expressions a .pt2 graph may carry: torch hands them to ``sympy.sympify``, an ``eval``.

torch 2.13's deserializer parses every ``expr_str`` in ``models/model.json`` (symbolic sizes,
strides, range bounds) with ``sympy.sympify(text, locals=...)``; sympy's parser only wraps names
and numbers and then evals the text, so ``"__import__('os').system(...)"`` runs. Checked here on
Python's own AST against an allowlist of node types, names and functions.
"""

from __future__ import annotations

import ast
import re

SYMBOL = re.compile(r"[a-z]{1,4}\d{1,6}")  # s0, u3, zuf12: torch's symbol names
# torch writes e.g. "Symbol('s77', positive=True, integer=True)" or "FloorDiv(s0, 2) + 1". A tree
# of these nodes stays arithmetic on symbols; powers other than symbol**small are left out (a
# tower of powers takes hours to evaluate).
_FUNCTIONS = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Max", "Min", "Abs", "Eq", "Ne", "Lt", "Le",
        "Gt", "Ge", "And", "Or", "Not", "Piecewise", "floor", "ceiling", "FloorDiv",
        "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
        "CeilDiv", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
    }
)  # fmt: skip
_NAMES = frozenset({"True", "False", "oo", "nan", "zoo"})
_ASSUMPTIONS = frozenset({"positive", "integer", "real", "nonnegative", "finite", "negative"})
_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Call, ast.keyword,
    ast.Name, ast.Constant, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.Pow, ast.Tuple,
)  # fmt: skip
_MAX_CONSTANT = 1 << 62


def safe_expression(text: object) -> bool:
    """True for sympy expressions made only of symbols, numbers, arithmetic and known functions."""
    if not isinstance(text, str) or len(text) > 2000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            return False
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
        ):
            return False
        if isinstance(node, ast.Name) and not (
            node.id in _FUNCTIONS or node.id in _NAMES or SYMBOL.fullmatch(node.id)
        ):
            return False
        if isinstance(node, ast.keyword) and (
            node.arg not in _ASSUMPTIONS
            or not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool))
        ):
            return False
        if isinstance(node, ast.Constant) and not _safe_constant(node.value):
            return False
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _small_power(node):
            return False
    return True


def _small_power(node: ast.BinOp) -> bool:
    """``s0**2``: a symbol to a small constant power. Anything else could build a tower of
    powers whose value takes hours to compute (``(2**64)**64**...``)."""
    base, exponent = node.left, node.right
    return (
        isinstance(base, ast.Name)
        and bool(SYMBOL.fullmatch(base.id))
        and isinstance(exponent, ast.Constant)
        and type(exponent.value) is int
        and 0 <= exponent.value <= 64
    )


def _safe_constant(value: object) -> bool:
    if isinstance(value, str):
        return bool(SYMBOL.fullmatch(value))
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < _MAX_CONSTANT
    return isinstance(value, float)
