#!/usr/bin/env bash
# Create .venv/ and install the pinned dependencies (requirements.lock) and this
# project. Idempotent: a no-op (well under a second) when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' \
    || { echo "bootstrap: Python 3.11 or 3.12 is required ($PY is $("$PY" -V 2>&1))" >&2; exit 1; }
  "$PY" -m venv .venv
fi

stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-32)
if [ "$(cat .venv/.installed 2>/dev/null || true)" != "$stamp" ]; then
  echo "bootstrap: installing pinned dependencies into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  echo "$stamp" > .venv/.installed
fi
