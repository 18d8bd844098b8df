#!/usr/bin/env bash
# The one command for the H200 device machine (bench/gpu_wheels.sh first, here):
#   run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=570)
# Installs the carried wheels beside the image's torch and transformers, runs the smoke test (the toy model through
# `pixgen generate` and `pixgen serve` on CUDA, bfloat16) first, then bench/gpu_bench.py on full-size LTX-2 inside
# what is left of RUN_BUDGET_S (cases, a profiled step, speed options, memory modes: what would not fit is skipped
# and recorded so). smoke.json, gpu.json and the logs come back in $OUT; copy them to bench/results/ here.
set -uo pipefail
START=$SECONDS
OUT=${OUT:-/tmp/pixgen-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PIXGEN_CACHE_DIR=/tmp/pixgen-cache
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True  # shapes vary per case: less fragmentation
nvidia-smi -L
python3 -c "import sys, torch, transformers, diffusers, av; print(sys.version.split()[0], torch.__version__, \
transformers.__version__, diffusers.__version__, av.__version__, torch.cuda.get_device_name())" || exit 1
timeout 170 python3 bench/gpu_bench.py --smoke-only --out "$OUT/smoke.json" 2>&1 | tee "$OUT/smoke.log"
smoke=${PIPESTATUS[0]}
LEFT=$(( ${RUN_BUDGET_S:-550} - (SECONDS - START) ))
echo "smoke: exit $smoke after $((SECONDS - START)) s; bench budget ${LEFT} s"
timeout $((LEFT + 15)) python3 bench/gpu_bench.py --no-smoke --budget-s "$((LEFT - 5))" --out "$OUT/gpu.json" "$@" \
  2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
nvidia-smi --query-gpu=memory.used,memory.total --format=csv
exit $(( smoke || status ))
