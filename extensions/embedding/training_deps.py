"""The training extras (torch, sentence-transformers) are not part of the serving install.

Commands that need them call ``require_training_deps`` first, which says how to get
them instead of failing with an ImportError deep inside a library.
"""

from __future__ import annotations

import importlib.util

TRAINING_MODULES = ("torch", "sentence_transformers", "transformers")
INSTALL_HINT = "run `make train-deps` (installs requirements-dev.lock into .venv)"


class MissingTrainingDeps(RuntimeError):
    """A command needs the training extras and they are not installed."""


def missing_training_modules() -> list[str]:
    return [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]


def require_training_deps(what: str) -> None:
    missing = missing_training_modules()
    if missing:
        raise MissingTrainingDeps(
            f"{what} needs the training extras ({', '.join(missing)} not installed): {INSTALL_HINT}"
        )
