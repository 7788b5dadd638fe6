"""The one registry shape: eager and lazy-by-path entries, one error wording; and every
package's registry resolves each of its lines."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.registry import Registry


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for real throwaway modules; they leave sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(folder: Path, name: str, source: str) -> str:
    (folder / f"{name}.py").write_text(source)
    importlib.invalidate_caches()
    return name


def test_eager_entries_keep_registration_order() -> None:
    widgets: Registry[int] = Registry("widget")
    assert widgets.add("b", 2) == 2  # add returns the entry
    widgets.add("a", 1)
    widgets.add("c", 3)

    assert widgets.names() == ("b", "a", "c") == tuple(widgets)
    assert len(widgets) == 3
    assert widgets.get("a") == 1 and widgets["c"] == 3
    assert "b" in widgets and "z" not in widgets


def test_unknown_name_names_the_kind_and_every_choice() -> None:
    widgets: Registry[int] = Registry("widget")
    widgets.add("b", 2)
    widgets.add("a", 1)
    with pytest.raises(ConfigError) as error:
        widgets.get("z")
    assert str(error.value) == "unknown widget 'z'; choose one of: b, a"


def test_unknown_name_raises_the_registry_error() -> None:
    suffixes: Registry[str] = Registry("teacher file suffix", error=InputError)
    suffixes.add(".onnx", "onnx")
    with pytest.raises(InputError, match=r"unknown teacher file suffix '\.pkl'; choose one of"):
        suffixes.get(".pkl")


def test_a_name_registered_twice_is_an_error() -> None:
    widgets: Registry[int] = Registry("widget")
    widgets.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        widgets.add("a", 2)
    with pytest.raises(ValueError, match="registered twice"):
        widgets.add_lazy("a", "json:dumps")
    assert widgets.get("a") == 1  # the first registration stands


def test_lazy_entry_is_imported_on_first_get_only(modules: Path) -> None:
    name = write_module(modules, "lazy_widget_module", "VALUE = 42\n")
    widgets: Registry[int] = Registry("widget")
    widgets.add("eager", 1)
    widgets.add_lazy("lazy", f"{name}:VALUE")

    assert widgets.names() == ("eager", "lazy")
    assert "lazy" in widgets
    assert widgets.get("eager") == 1
    assert name not in sys.modules  # listing, membership and other lookups import nothing
    assert widgets.get("lazy") == 42
    assert name in sys.modules
    assert widgets.names() == ("eager", "lazy")  # resolving keeps the order


@pytest.mark.parametrize("target", [":VALUE", "module:", ""])
def test_lazy_target_must_be_module_colon_attribute(target: str) -> None:
    widgets: Registry[int] = Registry("widget")
    with pytest.raises(ValueError, match=r"expected 'package\.module\[:attribute\]'"):
        widgets.add_lazy("w", target)
    assert widgets.names() == ()


def test_a_lazy_module_entry_is_the_module_itself(modules: Path) -> None:
    name = write_module(modules, "edgepack_test_plugin_module", "VALUE = 7\n")
    plugins: Registry[object] = Registry("plugin")
    plugins.add_lazy("p", name)
    assert name not in sys.modules
    assert plugins.get("p") is sys.modules[name] and plugins["p"].VALUE == 7  # type: ignore[attr-defined]


def test_a_lazy_target_without_its_attribute_names_the_line(modules: Path) -> None:
    name = write_module(modules, "typo_widget_module", "VALUE = 1\n")
    widgets: Registry[int] = Registry("widget")
    widgets.add_lazy("w", f"{name}:VALEU")
    with pytest.raises(AttributeError, match=rf"widget 'w' is registered as {name}:VALEU"):
        widgets.get("w")


def test_replaced_swaps_one_entry_in_a_copy() -> None:
    widgets: Registry[int] = Registry("widget", error=InputError)
    widgets.add("a", 1)
    widgets.add_lazy("b", "json:dumps")
    swapped = widgets.replaced("a", 2)
    assert swapped.get("a") == 2 and widgets.get("a") == 1
    assert swapped.names() == ("a", "b")
    with pytest.raises(InputError):  # the copy keeps the kind and the error
        swapped.get("z")


def test_items_resolve_every_entry_in_order(modules: Path) -> None:
    name = write_module(modules, "items_widget_module", "VALUE = 'late'\n")
    widgets: Registry[str] = Registry("widget")
    widgets.add_lazy("lazy", f"{name}:VALUE")
    widgets.add("eager", "early")
    assert widgets.items() == [("lazy", "late"), ("eager", "early")]


def _package_registries() -> list[tuple[str, Registry[Any]]]:
    from edgepack.data.readers import READERS
    from edgepack.exporters import FORMATS
    from edgepack.runners import RUNNERS
    from edgepack.students import FAMILIES
    from edgepack.tasks import TASKS
    from edgepack.teachers import LOADERS

    registries: list[Registry[Any]] = [FORMATS, READERS, RUNNERS, FAMILIES, LOADERS, TASKS]
    return [(registry.kind, registry) for registry in registries]


@pytest.mark.parametrize(("kind", "registry"), _package_registries())
def test_every_package_entry_resolves(kind: str, registry: Registry[Any]) -> None:
    """A mistyped ``add_lazy`` line would otherwise surface only when a user picks that entry."""
    for name, entry in registry.items():
        assert entry is not None, f"{kind} {name!r}"
