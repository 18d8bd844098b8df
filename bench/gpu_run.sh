#!/usr/bin/env bash
# The one command for the H200 device machine (bench/gpu_wheels.sh first, here):
#   run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=560)
# Installs the carried wheels beside the image's torch and transformers, then runs bench/gpu_bench.py (full-size
# cases, diffusers' calls, and the toy model through `pixgen generate` and `pixgen serve` on the GPU). The JSON and
# the log come back in $OUT; copy gpu.json to bench/results/gpu.json here.
set -uo pipefail
OUT=${OUT:-/tmp/pixgen-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # shapes vary per case: less fragmentation
nvidia-smi -L
python3 -c "import sys, torch, transformers, diffusers, av; print(sys.version.split()[0], torch.__version__, \
transformers.__version__, diffusers.__version__, av.__version__, torch.cuda.get_device_name())" || exit 1
timeout "${BENCH_TIMEOUT:-500}" python3 bench/gpu_bench.py --out "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
exit "$status"
