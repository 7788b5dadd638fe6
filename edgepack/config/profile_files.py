"""Finding, reading and resolving profile files into :class:`~edgepack.config.profiles.Target`.

A profile is one YAML file in the repo's ``targets/`` folder (or a path the user passes). It may
``extends:`` another profile; sections merge key by key, so a child states only what differs.
Every file is checked on its own (so an error names the file that holds the mistake), then the
merged result must set every required key. The schema is the dataclasses in
:mod:`edgepack.config.profiles`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from edgepack import runners
from edgepack.config.profiles import AUTO, SHIPPED_TARGETS_DIR, RunnerSpec, Target
from edgepack.core.errors import ConfigError
from edgepack.core.schema import build, check_mapping, excerpt, show, user_path
from edgepack.core.strict_yaml import is_file, read_yaml
from edgepack.exporters import options_class

TARGETS_DIR_ENV = "EDGEPACK_TARGETS_DIR"
MAX_EXTENDS = 16


# --------------------------------------------------------------------------------------------
# Public API


def targets_dir() -> Path:
    """The folder of shipped profiles: ``$EDGEPACK_TARGETS_DIR`` if set, else the repo's."""
    folder = Path(os.environ.get(TARGETS_DIR_ENV) or SHIPPED_TARGETS_DIR)
    if not folder.is_dir():
        raise ConfigError(f"targets folder not found: expected a folder at {folder}")
    return folder.resolve()


def load_target(name_or_path: str) -> Target:
    """Load and resolve a profile by name (``android``) or by path (``my/phone.yaml``)."""
    if _looks_like_path(name_or_path):
        path = user_path(name_or_path, Path.cwd(), "target")
    else:
        path = targets_dir() / f"{name_or_path}.yaml"
        if not is_file(path):
            raise ConfigError(
                f"unknown target {excerpt(name_or_path)}; valid targets: {', '.join(_target_names())} "
                "(or pass a path to a .yaml file)"
            )
    return _load(path)


def list_targets() -> list[Target]:
    """Every shipped, non-abstract profile, sorted by name."""
    return [load_target(name) for name in _target_names()]


# --------------------------------------------------------------------------------------------
# Finding files


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def _target_names() -> list[str]:
    return [path.stem for path in sorted(targets_dir().glob("*.yaml")) if not _is_abstract(path)]


def _is_abstract(path: Path) -> bool:
    return read_yaml(path).get("abstract") is True


def _locate_parent(ref: str, child: Path) -> Path:
    """Resolve ``extends: ref``: next to the extending file first, then in the targets folder."""
    if _looks_like_path(ref):
        path = user_path(ref, child.parent, f"{show(child)}: extends")
        if not is_file(path):
            raise ConfigError(
                f"{show(child)}: extends {excerpt(ref)}, but {show(path)} does not exist"
            )
        return path
    for folder in (child.parent, targets_dir()):
        if is_file(folder / f"{ref}.yaml"):
            return folder / f"{ref}.yaml"
    names = sorted(path.stem for path in targets_dir().glob("*.yaml"))
    raise ConfigError(
        f"{show(child)}: extends unknown target {excerpt(ref)}; valid targets: {', '.join(names)}"
    )


# --------------------------------------------------------------------------------------------
# Resolving extends and building the dataclasses


def _load(path: Path) -> Target:
    if _is_abstract(path):
        raise ConfigError(
            f"target {path.stem!r} is abstract (only a parent for extends:); "
            f"valid targets: {', '.join(_target_names())}"
        )
    merged, chain = _resolve(path, ())
    return _finish(merged, chain, path.stem, path)


def target_from_profile(profile: dict[str, Any], label: Path) -> Target:
    """A target from a resolved profile mapping (as a manifest records it); errors name
    ``label``. Every key is checked as in a file."""
    raw = {k: v for k, v in profile.items() if k not in ("name", "source")}
    merged = check_mapping(Target, raw, label)
    name = profile.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{show(label)}: the recorded profile has no name")
    return _finish(merged, (label,), name, label)


def _finish(merged: dict[str, Any], chain: tuple[Path, ...], name: str, source: Path) -> Target:
    _check_name(name, source)
    target: Target = build(Target, merged, chain, "", name=name, source=source)
    target.compress.check(target.budgets, show(source))  # keys that only make sense together
    export = _plugin_options(
        options_class(target.format), merged.get("export", {}), chain, "export."
    )
    runner_keys = {f.name for f in dataclasses.fields(RunnerSpec)}
    own = {k: v for k, v in merged.get("runner", {}).items() if k not in runner_keys}
    runner_options = _plugin_options(
        runners.options_class(target.runner.name), own, chain, "runner."
    )
    runner = dataclasses.replace(target.runner, options=runner_options)
    return dataclasses.replace(target, export=export, runner=runner)


def _plugin_options(cls: type, raw: dict[str, Any], chain: tuple[Path, ...], prefix: str) -> Any:
    """A format's or runner's own options, checked strictly against its OPTIONS dataclass."""
    try:
        checked = check_mapping(cls, raw, chain[0], prefix)
        return build(cls, checked, chain, prefix)
    except ConfigError as exc:  # the plugin's own value checks do not know the file
        message = str(exc)
        files = ", ".join(show(p) for p in chain)
        raise ConfigError(
            message if message.startswith(show(chain[0])) else f"{files}: {message}"
        ) from None


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _check_name(name: str, source: Path) -> None:
    """A target's name becomes a folder under the output root: it must be a plain name."""
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(
            f"{show(source)}: target name {name!r} cannot be an output folder name: expected "
            "letters, digits, '.', '_' or '-', starting with a letter or digit; rename the file"
        )


def _resolve(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...]]:
    """The merged mapping of ``path`` and its ancestors, and the files that went into it."""
    if path in seen:
        cycle = " -> ".join(show(p) for p in (*seen, path))
        raise ConfigError(f"extends cycle: {cycle}")
    if len(seen) >= MAX_EXTENDS:  # each level is a stack frame; real chains are 2-3 deep
        raise ConfigError(f"{show(seen[0])}: extends chain longer than {MAX_EXTENDS} files")
    raw = read_yaml(path)
    if isinstance(raw.get("runner"), str):  # `runner: host` names a runner with its defaults
        raw["runner"] = {"name": raw["runner"]}
    if raw.get("student") == AUTO:  # `student: auto` is `student: {family: auto}`
        raw["student"] = {"family": AUTO}
    own = check_mapping(Target, raw, path)
    parent = own.pop("extends", None)
    own.pop("abstract", None)
    if parent is None:
        return own, (path,)
    inherited, chain = _resolve(_locate_parent(parent, path), (*seen, path))
    return _merge(inherited, own), (path, *chain)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Sections merge key by key; anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = {**base[key], **value} if both else value
    runner, inherited = override.get("runner") or {}, base.get("runner") or {}
    if runner.get("name", inherited.get("name")) != inherited.get("name"):
        # Another runner: the parent's runner-specific keys do not apply to it.
        common = {f.name for f in dataclasses.fields(RunnerSpec)}
        kept = {k: v for k, v in inherited.items() if k in common}
        merged["runner"] = {**kept, **runner}
    return merged
