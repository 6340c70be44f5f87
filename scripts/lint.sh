#!/usr/bin/env bash
# The style held by tools: lint, format and type checks (CI runs this before the tests).
# Versions are pinned in constraints.txt; install them with `bash scripts/setup.sh --test`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check xmodal tests benchmarks scripts examples
python3 -m ruff format --check xmodal tests benchmarks scripts examples
python3 -m mypy
