#!/usr/bin/env bash
# Fetch, here, the wheels the H200 device machine lacks (its image has torch 2.11, transformers 5.17, accelerate,
# peft, safetensors, tokenizers, pillow, numpy and httpx, and nothing can be downloaded there) into .whl/, which
# git ignores (.git/info/exclude) and the device tool carries. Then, with the device tool:
#   run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=560)
# Python 3.12 (the device's), manylinux x86-64; about 55 MB, under the 64 MiB the device tool carries.
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
