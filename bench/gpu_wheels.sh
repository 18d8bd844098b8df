#!/usr/bin/env bash
# Fetch, here, the wheels the GPU device machine lacks (its image has torch 2.11, transformers 5.17, accelerate,
# peft, safetensors, tokenizers, pillow, numpy and httpx, and nothing can be downloaded there) into .whl/, which
# git ignores (.git/info/exclude) and the device tool carries. Then, with the device tool:
#   run(command="bash bench/gpu_run.sh --plan speed", carry=[".whl"], timeout_s=560)
# Python 3.12 (the device's), manylinux x86-64; about 55 MB, under the 64 MiB the device tool carries.
#
# Attention kernels (--attention-backend) that cannot be carried, checked 2026-12 on PyPI:
# - flash-attn-4 (4.0.0b36, CuTe DSL) is a 0.5 MB pure wheel, but it needs nvidia-cutlass-dsl's libraries
#   (nvidia-cutlass-dsl-libs-cu12 / -cu13: 92 MB each) and diffusers 0.42 reaches FA4 only through its *_hub
#   backend (a Hub download); gpu_run.sh reports whether the image has cutlass.
# - SageAttention: PyPI has only 1.0.6; diffusers' sage backends need >= 2.1.1 (built from source).
# - FlashAttention-3: no wheel on PyPI; flash-attn (FA2) is a source distribution (an hour's CUDA build).
# What needs no wheel and is measured by the full plan: _native_cudnn, _native_flash (PyTorch's own kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
# The versions this project's venv tested (.venv, from `make install`), so the device runs what CI ran.
NAMES='diffusers|importlib.metadata|av|pydantic|pydantic.core|annotated.types|typing.inspection|fastapi|starlette'
NAMES+='|uvicorn|python.multipart|sqlalchemy|greenlet|alembic|mako|pydantic.settings|python.dotenv|opentelemetry.api'
mapfile -t WHEELS < <(.venv/bin/python -m pip freeze | grep -iE "^($NAMES)==")
[ "${#WHEELS[@]}" -eq 18 ] || { echo "expected 18 pinned packages in .venv, got: ${WHEELS[*]}" >&2; exit 1; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
du -sh .whl
ls .whl
[ "$(du -sm .whl | cut -f1)" -lt 64 ] || { echo ".whl is over the 64 MiB the device tool carries" >&2; exit 1; }
