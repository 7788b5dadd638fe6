"""The package's shape, enforced: layers that import only downward, no import cycle, every
module importable first in a fresh interpreter, no module over the size limit, and no name
used in two layers. CONTRIBUTING.md draws the same layers; ``LAYERS`` below is the contract.

The import graph is read from the source with :mod:`ast`, so it counts every import: at module
level, inside functions (the heavy ones live there) and under ``TYPE_CHECKING`` alike. A lazy
import still couples two modules, and a type-only one still tells a reader which way the
layers point.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgepack"

# Top to bottom: a package may import only from the rows below its own. Packages that share a
# row are independent of each other (neither imports the other).
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("build", "check"),
    ("outputs",),
    ("stages",),
    ("selection",),
    ("recovery",),  # the search's deciding round runs a per-tensor twin's short QAT
    ("compression",),  # the search sizes and ranks pruned candidates
    ("training",),
    ("release",),
    ("config",),
    ("runners",),
    ("exporters",),
    ("data", "teachers", "students", "tasks"),
    ("core",),
]
# What may sit at the top of edgepack/ besides the layer packages.
TOP_LEVEL_FILES = {"__init__.py", "__main__.py"}
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Every edgepack module ``module`` imports, resolved to the module (not the name)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: None if is_package else -1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [name if name in MODULES else base for name in names]
        else:
            continue
        for name in names:
            while name not in MODULES and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in MODULES and name != module and name.startswith("edgepack"):
                found.add(name)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}
ROW = {package: row for row, packages in enumerate(LAYERS) for package in packages}


def _package(module: str) -> str | None:
    """The layer package of ``module``; None for the root and ``__main__`` (the CLI entry)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def test_every_top_level_package_has_a_layer() -> None:
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert packages == set(ROW), (
        f"in LAYERS but absent, or present but unlayered: {packages ^ set(ROW)}"
    )
    files = {path.name for path in PACKAGE.glob("*.py")}
    assert files == TOP_LEVEL_FILES, (
        f"modules flat at the top of edgepack/: {files - TOP_LEVEL_FILES}"
    )


def test_imports_point_only_down_the_layers() -> None:
    upward = []
    for module, imported in GRAPH.items():
        source = _package(module)
        if source is None:  # edgepack/__init__ (the version) and __main__ (the CLI entry)
            continue
        for target in imported:
            dest = _package(target)
            if dest is None:  # ``from edgepack import __version__``: the root holds no code
                continue
            if dest != source and ROW[dest] <= ROW[source]:
                upward.append(f"{module} -> {target} ({source} may not import {dest})")
    assert not upward, "imports that do not point down a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over every import: any component with more than
    one module is a cycle (whether or not it happens to import cleanly today)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))
    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_is_over_the_size_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in MODULES.values()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_name_is_used_in_two_layers() -> None:
    """A newcomer's first guess must be right: ``stages/distill.py`` is the stage, and no
    ``distill`` module waits elsewhere. Leading underscores do not make a name different."""
    layers_of: dict[str, set[str]] = defaultdict(set)
    for module in MODULES:
        parts = module.split(".")
        for part in parts[1:]:
            if part not in ("__init__", "__main__"):
                layers_of[part.lstrip("_")].add(parts[1])
    shared = {name: sorted(where) for name, where in layers_of.items() if len(where) > 1}
    assert not shared, f"names used in more than one layer: {shared}"


# Imports each module named on stdin in a child forked from this process, which has imported
# nothing of edgepack: each child is the fresh interpreter the test needs, without paying
# Python's start-up and torch's import (1-3 s) 280 times. The third-party packages named on
# the command line are imported once, before any fork: an import-order bug is between
# edgepack's own modules, which no child inherits.
_FORK_SERVER = r"""
import os, sys
for name in sys.argv[1:]:
    __import__(name)
for line in sys.stdin:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            __import__(line.strip())
        except BaseException as exc:
            os.write(write, f"{type(exc).__name__}: {exc}".encode()[:4000])
            code = 1
        os._exit(code)
    os.close(write)
    message = b""
    while chunk := os.read(read, 65536):
        message += chunk
    os.close(read)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    text = message.decode(errors="replace").replace(chr(10), " ")
    print(f"{status} {text}", flush=True)
"""


@pytest.fixture(scope="module")
def fresh_import() -> Iterator[Callable[[str], tuple[int, str]]]:
    """``fresh_import(module)``: (exit code, the error line) of importing ``module`` first in a
    fresh interpreter (a fork of one, see ``_FORK_SERVER``; a new interpreter per module
    where there is no fork)."""
    if not hasattr(os, "fork"):

        def spawn(module: str) -> tuple[int, str]:
            done = subprocess.run(
                [sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            return done.returncode, (done.stderr.strip().splitlines() or [""])[-1]

        yield spawn
        return
    server = subprocess.Popen(
        [sys.executable, "-c", _FORK_SERVER, "numpy", "torch"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None

    def ask(module: str) -> tuple[int, str]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(module + "\n")
        server.stdin.flush()
        code, _, message = server.stdout.readline().rstrip("\n").partition(" ")
        return int(code), message

    try:
        yield ask
    finally:
        server.stdin.close()
        server.wait(timeout=60)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_first_in_a_fresh_interpreter(
    module: str, fresh_import: Callable[[str], tuple[int, str]]
) -> None:
    """An import-order bug (a module that imports only because a caller imported another one
    first) shows only in a fresh interpreter, with the module imported first."""
    if module == "edgepack.__main__":
        pytest.skip("runs the CLI when imported")
    code, error = fresh_import(module)
    assert code == 0, error


def test_a_fresh_import_reports_a_module_that_fails(
    fresh_import: Callable[[str], tuple[int, str]],
) -> None:
    """The check can fail: a module that cannot be imported comes back as its error line, and
    the server goes on answering for the next module."""
    assert fresh_import("edgepack.no_such_module") == (
        1, "ModuleNotFoundError: No module named 'edgepack.no_such_module'"
    )  # fmt: skip
    assert fresh_import("edgepack.stages.records") == (0, "")
