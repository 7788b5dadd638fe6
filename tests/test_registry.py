"""The one registry shape: eager, lazy-by-path and plugin-module entries, one error wording."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

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
    widgets.add("b", 2)
    widgets.add("a", 1)

    @widgets.register("c")
    def three() -> int:
        return 3

    assert widgets.names() == ("b", "a", "c")
    assert widgets.get("a") == 1
    assert widgets.get("c") is three  # the decorator returns the definition unchanged
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
    with pytest.raises(ValueError, match="registered twice"):
        widgets.register("a")(lambda: 3)
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


def test_plugin_modules_register_themselves_before_the_first_lookup(modules: Path) -> None:
    home = write_module(
        modules,
        "widget_home",
        "from edgepack.core.registry import Registry\n"
        "WIDGETS = Registry('widget', modules=('widget_plugin',))\n",
    )
    write_module(
        modules,
        "widget_plugin",
        "from widget_home import WIDGETS\n"
        "@WIDGETS.register('spanner')\n"
        "def spanner():\n"
        "    return 'spanner'\n",
    )
    widgets = importlib.import_module(home).WIDGETS
    assert "widget_plugin" not in sys.modules  # creating the registry imports nothing
    assert widgets.names() == ("spanner",)
    assert widgets.get("spanner")() == "spanner"
    assert widgets.names() == ("spanner",)  # the plugin is imported once, not re-registered


def test_items_resolve_every_entry_in_order(modules: Path) -> None:
    name = write_module(modules, "items_widget_module", "VALUE = 'late'\n")
    widgets: Registry[str] = Registry("widget")
    widgets.add_lazy("lazy", f"{name}:VALUE")
    widgets.add("eager", "early")
    assert widgets.items() == [("lazy", "late"), ("eager", "early")]
