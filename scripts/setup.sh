#!/usr/bin/env bash
# Set up xmodal in the current Python environment (a venv is recommended).
#   bash scripts/setup.sh          # the library and its command
#   bash scripts/setup.sh --test   # plus the test extras
# Installs the tested versions from constraints.txt. open3d needs the system library
# libusb-1.0: installed with apt-get when running as root, otherwise we say how.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

"$PYTHON" - <<'PY' || { echo "xmodal needs Python >= 3.10 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.x" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing libusb-1.0-0 (needed by open3d) with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
    else
        echo "open3d needs the system library libusb-1.0: run 'sudo apt-get install libusb-1.0-0' (Debian/Ubuntu) or 'sudo dnf install libusbx' (Fedora), then rerun this script" >&2
        exit 1
    fi
fi

"$PYTHON" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extras}"
"$PYTHON" -c "import xmodal, open3d, torch; print(f'xmodal {xmodal.__version__} ready (torch {torch.__version__}, open3d {open3d.__version__})')"
