"""Configuration errors that name the file, the YAML path and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is meant for operators."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"invalid configuration in {self.path}:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def yaml_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic error location as a YAML path: ``router.intents[2].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe_error(error: dict[str, object]) -> str:
    """One pydantic error as ``<yaml path>: <what was expected> (got <value>)``."""
    loc = error.get("loc", ())
    assert isinstance(loc, tuple)
    # pydantic appends the validator name for tagged unions / function validators
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        msg = "unknown key (not allowed here; check the spelling)"
    got = error.get("input")
    shown = "" if error.get("type") in {"missing", "extra_forbidden"} else f" (got {got!r})"
    if isinstance(got, dict | list):
        shown = ""
    return f"{yaml_path(parts)}: {msg}{shown}"


def from_validation_error(path: Path | str, exc: ValidationError) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into a ``ConfigError`` with YAML paths."""
    return ConfigError(path, [describe_error(dict(e)) for e in exc.errors()])
