"""Teachers built by code: the user's ``package.module:function`` or a torchvision builder.

Both take weights as a state dict only (safetensors, or a weights-only torch file), so the model's
code comes from an import the user named, never from a pickle.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError, MissingExtraError
from edgepack.teachers._spec import TORCHVISION_PREFIX, RawTeacher, TeacherSpec, first_line
from edgepack.teachers._weights import head_classes, load_into, read_state_dict

if TYPE_CHECKING:
    import torch


def load_factory(spec: TeacherSpec) -> RawTeacher:
    """Import the factory with ``search_path`` first on sys.path, call it, load weights."""
    assert spec.factory is not None  # the registry routes only factory specs here
    module_name, attribute = spec.factory.split(":")
    module = _import(module_name, spec.search_path, spec.factory)
    build = getattr(module, attribute, None)
    if build is None:
        defined = [
            name
            for name, value in vars(module).items()
            if callable(value) and not name.startswith("_")
        ]
        raise InputError(
            f"teacher factory {spec.factory}: module {module_name} has no attribute {attribute!r} "
            f"(it defines: {', '.join(defined[:8]) or 'no public callables'})"
        )
    if not callable(build):
        raise InputError(
            f"teacher factory {spec.factory} is a {type(build).__name__}, not callable"
        )
    model = _build(build, f"teacher factory {spec.factory}()")
    if spec.weights is not None:
        load_into(model, read_state_dict(spec.weights), spec.weights, spec.factory)
    source = getattr(module, "__file__", None)
    return RawTeacher(model.eval(), "factory", sources=(Path(source),) if source else ())


def load_torchvision(spec: TeacherSpec) -> RawTeacher:
    """``torchvision.models.get_model(NAME, weights=None, num_classes=<from the weights' head>)``.

    Weights are required: edgepack downloads nothing, and a randomly initialised teacher would
    teach noise. torchvision from PyPI is a CUDA build that does not import next to the CPU torch
    wheel, so the usual outcome here is the MissingExtraError below.
    """
    name = f"{TORCHVISION_PREFIX}{spec.torchvision}"
    try:
        from torchvision import models
    # ImportError, or the CUDA build's RuntimeError "operator torchvision::nms does not exist"
    except Exception as exc:
        raise MissingExtraError(
            f"teacher {name} needs torchvision, which does not import here ({first_line(exc)}): "
            "export the model to .pt2 or ONNX on a machine where it does"
        ) from None
    if spec.weights is None:
        raise InputError(
            f"teacher {name} needs teacher.weights (a state dict): edgepack downloads no weights"
        )
    known = list(models.list_models())
    if spec.torchvision not in known:
        close = difflib.get_close_matches(str(spec.torchvision), known, n=3)
        raise InputError(
            f"torchvision has no model {spec.torchvision!r}"
            + (f": did you mean {', '.join(close)}?" if close else "")
        )
    state = read_state_dict(spec.weights)
    classes = head_classes(state)
    options = {"num_classes": classes} if classes is not None else {}
    model = _build(
        lambda: models.get_model(spec.torchvision, weights=None, **options), f"teacher {name}"
    )
    load_into(model, state, spec.weights, name)
    return RawTeacher(model.eval(), "torchvision")


@contextlib.contextmanager
def _first_on_path(folder: Path | None) -> Iterator[None]:
    """Put ``folder`` first on sys.path for the import only; other entries are left alone."""
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # the folder may be newer than the finders' directory caches
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import(module_name: str, folder: Path | None, factory: str) -> ModuleType:
    _forget_shadowed(module_name, folder)
    try:
        with _first_on_path(folder):
            return importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module's top level raises
        where = (
            f"; looked in {folder} first"
            if folder is not None and isinstance(exc, ImportError)
            else ""
        )
        raise InputError(
            f"teacher factory {factory}: module {module_name} does not import "
            f"({type(exc).__name__}: {first_line(exc)}){where}"
        ) from None


def _forget_shadowed(module_name: str, folder: Path | None) -> None:
    """Drop an already-imported module of the same name that the project folder shadows.

    Putting the folder first on sys.path means its ``model.py`` wins; without this, a ``model``
    imported earlier in the process (another project in the same session) would be reused.
    """
    top = module_name.split(".")[0]
    if folder is None or not ((folder / top).is_dir() or (folder / f"{top}.py").is_file()):
        return
    loaded = sys.modules.get(top)
    origin = getattr(loaded, "__file__", None)
    if loaded is None or (origin and Path(origin).resolve().is_relative_to(folder.resolve())):
        return
    for name in [name for name in sys.modules if name == top or name.startswith(f"{top}.")]:
        del sys.modules[name]


def _build(build: Callable[[], object], label: str) -> torch.nn.Module:
    import torch

    try:
        model = build()
    except Exception as exc:
        raise InputError(f"{label} raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{label} returned a {type(model).__name__}, expected a torch.nn.Module")
    return model
