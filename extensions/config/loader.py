"""Read a YAML file and validate it against a pydantic model, once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Set
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from extensions.config.errors import ConfigError, from_validation_error
from extensions.config.references import reference_problems
from extensions.config.schema import GatewayConfig

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(path: Path) -> dict[str, object]:
    """Parse a YAML file that must hold a mapping; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read file: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}not valid YAML ({problem})"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, [f"(top level): expected a mapping, got {type(data).__name__}"])
    return data


def load_model(path: Path | str, model: type[M]) -> M:
    """Load ``path`` and validate it as ``model``; raise ``ConfigError`` on any problem."""
    p = Path(path)
    data = read_yaml_mapping(p)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(p, exc) from exc


def litellm_model_groups(path: Path | str) -> set[str]:
    """The ``model_name`` of every deployment in litellm.yaml."""
    p = Path(path)
    entries = read_yaml_mapping(p).get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError(p, ["model_list: expected a list of deployments"])
    return {str(e["model_name"]) for e in entries if isinstance(e, dict) and "model_name" in e}


ENV_PREFIX = "os.environ/"


def substitute_env(
    value: object, environ: Mapping[str, str], where: str, problems: list[str]
) -> object:
    """Replace every string ``os.environ/NAME`` (LiteLLM's convention) by the variable."""
    if isinstance(value, dict):
        return {k: substitute_env(v, environ, f"{where}.{k}" if where else str(k), problems)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [substitute_env(v, environ, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not environ.get(name):
            problems.append(f"{where}: environment variable {name} is not set")
            return None
        return environ[name]
    return value


EXTENDS = "extends"


def _merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


def config_chain(path: Path) -> list[Path]:
    """The file and, through ``extends: <path relative to it>``, the files it builds on
    (base first; bases resolved through links). An overlay holds only what differs,
    e.g. a deployment's Redis."""
    chain: list[Path] = []
    current: Path | None = path
    while current is not None:
        if current in chain:
            raise ConfigError(path, [f"{EXTENDS}: cycle through {current}"])
        chain.insert(0, current)
        parent = read_yaml_mapping(current).get(EXTENDS)
        if parent is not None and not isinstance(parent, str):
            raise ConfigError(current, [f"{EXTENDS}: expected a file path, got {parent!r}"])
        current = (current.parent / parent).resolve() if parent else None
    return chain


def _anchor_example_files(layer: dict[str, object], folder: Path) -> None:
    """Make a base layer's relative ``routers.*.intents[].examples_file`` paths absolute,
    in the base's ``folder``: an overlay in another folder extends a base whose example
    files sit next to the base."""
    routers = layer.get("routers")
    if not isinstance(routers, dict):
        return
    for router in routers.values():
        intents = router.get("intents") if isinstance(router, dict) else None
        for intent in intents if isinstance(intents, list) else []:
            name = intent.get("examples_file") if isinstance(intent, dict) else None
            if isinstance(name, str) and not Path(name).is_absolute():
                intent["examples_file"] = str(folder / name)


def read_gateway_yaml(path: Path) -> dict[str, object]:
    """gateway.yaml with what it ``extends`` merged underneath; a base's relative example
    files are anchored to the base's folder."""
    data: dict[str, object] = {}
    top = path.resolve().parent
    for file in config_chain(path):
        layer = read_yaml_mapping(file)
        layer.pop(EXTENDS, None)
        # a base in the overlay's own folder (a ConfigMap's files all resolve into one
        # timestamped folder) keeps its relative paths: nothing time-stamped leaks in
        if file != path and file.parent != top:
            _anchor_example_files(layer, file.parent)
        data = _merge(data, layer)
    return data


def missing_example_files(config: GatewayConfig, folder: Path) -> list[str]:
    """``examples_file`` entries that name no readable file (relative to ``folder``)."""
    problems = []
    for name, router in config.routers.items():
        for i, intent in enumerate(router.intents):
            if intent.examples_file is not None and not (folder / intent.examples_file).is_file():
                problems.append(
                    f"routers.{name}.intents[{i}].examples_file: no such file "
                    f"{folder / intent.examples_file} (a path relative to the file that names it)"
                )
    return problems


def load_gateway_config(
    path: Path | str,
    model_groups: Set[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Load and validate ``config/gateway.yaml``; with ``model_groups``, check references too.

    Values written ``os.environ/NAME`` are taken from ``environ`` (the process environment
    by default), so secrets such as a Redis password stay out of the file.
    """
    p = Path(path)
    problems: list[str] = []
    raw = read_gateway_yaml(p)
    if "version" not in raw:  # an editor that truncates before writing leaves an empty file
        raise ConfigError(p, ["version: required (write `version: 1`; an empty or truncated "
                              "gateway.yaml is refused, and a running gateway keeps its last "
                              "good configuration)"])  # fmt: skip
    data = substitute_env(raw, os.environ if environ is None else environ, "", problems)
    if problems:
        raise ConfigError(p, problems)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(p, exc) from exc
    problems = missing_example_files(config, p.parent)
    if model_groups is not None:
        problems += reference_problems(config, model_groups)
    if problems:
        raise ConfigError(p, problems)
    return config
