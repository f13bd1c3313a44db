#!/usr/bin/env bash
# Install everything the test suite needs (Python deps in .venv, Debian chromium for the
# browser tests) and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch/torchvision: pip takes the releases on this machine's disk (see /etc/xdg/pip).
.venv/bin/python -m pip install --quiet -e ".[test]"

# Headless Chromium for the real-browser tests (Debian package; Playwright drives it).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }) \
            || echo "warning: could not install chromium; browser tests will skip" >&2
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get install -y -qq chromium || echo "warning: could not install chromium; browser tests will skip" >&2
    fi
fi

# Offline copies of the default bank's images and TFLite models, where ../shared exists.
SHARED=${CASCADE_EXPLORER_SHARED:-$(cd .. && pwd)/shared}
if [ -d "$SHARED/data/imagenet-val-1300/data" ]; then
    export CASCADE_EXPLORER_SHARED="$SHARED"
    export CASCADE_EXPLORER_IMAGES=${CASCADE_EXPLORER_IMAGES:-$SHARED/data/imagenet-val-1300/data}
    export CASCADE_EXPLORER_MODELS=${CASCADE_EXPLORER_MODELS:-$SHARED/models/tflite}
fi
# No downloads during tests: timm/huggingface hub code paths must fail fast, not hang.
export HF_HUB_OFFLINE=1

# loadgroup: tests marked xdist_group("ray") share one worker, so the Ray tests start one local
# cluster between them instead of one per worker (tests without a group are spread as before).
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@"
