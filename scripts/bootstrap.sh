#!/usr/bin/env bash
# Create .venv/ and install the pinned dependencies and this project.
#   scripts/bootstrap.sh       the serving install (requirements.lock: no torch), for `make run`
#   scripts/bootstrap.sh dev   plus requirements-dev.lock (torch, sentence-transformers, test
#                              and lint tools), for `make test` and `make train-deps`
# Each lock is a complete closure (scripts/lock.py), installed with --no-deps. Idempotent:
# a stamp per lock, so a no-op (well under a second) when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-serving}
case "$mode" in
  serving) locks=(requirements.lock) ;;
  dev) locks=(requirements.lock requirements-dev.lock) ;;
  *) echo "usage: $0 [serving|dev]" >&2; exit 2 ;;
esac

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' \
    || { echo "bootstrap: Python 3.11 or 3.12 is required ($PY is $("$PY" -V 2>&1))" >&2; exit 1; }
  "$PY" -m venv .venv
fi

site_packages=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

pip_install() {
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"
}

# install "$1" unless .venv/"$2" holds the hash of the given files
install_once() {
  local what=$1 stamp_file=.venv/$2 stamp
  shift 2
  stamp=$(cat "$@" | sha256sum | cut -c1-32)
  if [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$stamp" ]; then
    echo "bootstrap: installing $what into .venv" >&2
    if [ "$what" = project ]; then
      pip_install --no-deps --no-build-isolation -e .
    else
      pip_install --no-deps --no-compile -r "$what"
      # byte-compile on every core: pip compiles one file at a time, which was most of
      # the install's time once the wheels were downloaded. Like pip, a file that does
      # not compile (a package's Python 2 test data) is left to be compiled on import.
      .venv/bin/python -m compileall -q -j 0 "$site_packages" > /dev/null || true
    fi
    echo "$stamp" > "$stamp_file"
  fi
}

for lock in "${locks[@]}"; do
  install_once "$lock" ".installed-${lock%.lock}" "$lock"
done
install_once project .installed-project pyproject.toml
