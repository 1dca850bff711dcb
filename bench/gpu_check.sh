#!/usr/bin/env bash
# The GPU paths in one go, on a machine with one CUDA GPU, no network and only this
# repository's files (issue 14): Triton kernels compiled (not interpreted) against the
# torch reference, a CUDA training step of every architecture against the CPU, DDP and
# FSDP2 on one GPU (NCCL), collect on CUDA against CPU, collect with the subject model
# split over the GPUs and the CPU (model.device_map) against it whole on GPU 0, and the
# transformers backend's log-probs on CUDA against CPU. Prints one table; exit status 1
# if any check failed.
#
#   bash bench/gpu_check.sh prepare   # here, with network: wheels + the tiny model's
#                                     # tokenizer into .gpu/ (ignored, ~14 MB)
#   bash bench/gpu_check.sh run       # there: needs python3 with a CUDA torch, transformers,
#                                     # accelerate, scipy, pytest (a GPU image has them)
#
# The device tool: run(command="bash bench/gpu_check.sh run", carry=[".gpu"], timeout_s=600).
# Record each run's table, date and card in bench/RESULTS.md ("GPU paths").
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
PY=${PYTHON:-python3}

prepare() {
  mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/tokenizer"
  # Pure-Python or cp312 manylinux wheels of what a GPU image lacks, pinned by the lock.
  local pins
  pins=$(grep -E '^(zarr|numcodecs|donfig|google-crc32c)==' launch/requirements.lock)
  for pin in $pins; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$GPU_DIR/wheels" "$pin"
  done
  # The subject/LLM model is tiny-random-llama, rebuilt there from its config and this
  # tokenizer (its 60 MB of weights do not travel; both devices are compared there).
  local src
  src=$(.venv/bin/python -c 'from interp.models.provision import resolve_model; print(resolve_model("tiny-random-llama"))')
  cp "$src"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} \
    "$GPU_DIR/tokenizer/" 2>/dev/null || cp "$src"/{config.json,tokenizer.json,tokenizer_config.json} "$GPU_DIR/tokenizer/"
  du -sh "$GPU_DIR"
}

run() {
  local site=/tmp/interp_gpu_site
  if ! "$PY" -c 'import zarr, numcodecs' 2>/dev/null; then  # a GPU image lacks them
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "$GPU_DIR"/wheels/*.whl
  fi
  export PYTHONPATH="$PWD:$PWD/kernels:$site" INTERP_CACHE=/tmp/interp_gpu_cache
  export INTERP_GPU_TOKENIZER="$PWD/$GPU_DIR/tokenizer" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  "$PY" bench/gpu_check.py
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash bench/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
