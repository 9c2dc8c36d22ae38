#!/usr/bin/env bash
# Create .venv and install Reelgate with pinned dependencies (constraints.txt).
# Idempotent and quick when nothing changed. Installs python3-venv with apt
# when the interpreter cannot create virtual environments (fresh Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "reelgate needs Python 3.11 or newer; found: $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$PYTHON" -m venv .venv
        else
            echo "cannot create a virtualenv: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
    touch "$stamp"
fi
