#!/usr/bin/env bash
# The one prepared command for a GPU session (issue 23). Here first: bash bench/gpu_wheels.sh; then, with the
# device tool:
#   run(command="bash bench/gpu_run.sh --plan speed", carry=[".whl"], timeout_s=560)
# It installs the carried wheels beside the image's torch and transformers, prints the versions and which attention
# kernels the image has, and runs bench/gpu_bench.py with the given arguments inside RUN_BUDGET_S (default 450 s:
# the speed plan of gpu_bench.py in one call of about 8 minutes; what would not fit is skipped and recorded so).
# SMOKE=1 runs the smoke test too (the toy through `pixgen generate` and `pixgen serve`; off by default).
# Results come back in $OUT: gpu.json, gpu_bench.log, versions.txt; copy them to bench/results/ as gpu-<card>.json.
set -uo pipefail
START=$SECONDS
OUT=${OUT:-/tmp/pixgen-gpu}
BUDGET=${RUN_BUDGET_S:-450}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PIXGEN_CACHE_DIR=/tmp/pixgen-cache
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # shapes vary per case: less fragmentation
{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv
  python3 -c "import sys, torch, transformers, diffusers, av; print(sys.version.split()[0], torch.__version__, \
transformers.__version__, diffusers.__version__, av.__version__, torch.cuda.get_device_name(), \
torch.cuda.get_device_capability())"
  for module in flash_attn flash_attn_interface flash_attn.cute sageattention cutlass triton; do
    python3 -c "import importlib, sys; m = importlib.import_module('$module'); \
print('$module', getattr(m, '__version__', 'present'))" 2>/dev/null || echo "$module absent"
  done
} 2>&1 | tee "$OUT/versions.txt"
python3 -c "import torch, diffusers" || exit 1
SMOKE_ARG=--no-smoke
[ "${SMOKE:-0}" = 1 ] && SMOKE_ARG=--smoke
LEFT=$(( BUDGET - (SECONDS - START) ))
echo "bench budget ${LEFT} s"
timeout $((LEFT + 20)) python3 bench/gpu_bench.py "$SMOKE_ARG" --budget-s "$((LEFT - 10))" --out "$OUT/gpu.json" "$@" \
  2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
nvidia-smi --query-gpu=memory.used,memory.total,clocks.sm,temperature.gpu --format=csv
echo "exit $status after $((SECONDS - START)) s"
exit "$status"
