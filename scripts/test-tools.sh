#!/usr/bin/env bash
# Tools the test suite uses beyond the Python packages: Debian's chromium, for the
# dashboard's headless-browser test. Installed when missing and we may (root + apt);
# otherwise that one test is reported as skipped. A no-op when already present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-tools: installing chromium (dashboard test)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "test-tools: could not install chromium; the dashboard test will be skipped" >&2
else
  echo "test-tools: chromium not found; the dashboard test will be skipped" >&2
fi
