# syntax=docker/dockerfile:1
# pixgen's image. Two variants of one recipe:
#   docker build -t pixgen:cuda .                            CUDA 13.0 runtime, torch 2.13.0's CUDA build (default)
#   docker build --build-arg VARIANT=cpu -t pixgen:cpu .     Ubuntu, torch's CPU build: the toy model, no GPU needed
# Model weights are never baked in: mount a diffusers-format LTX-2 folder (read-only) and set PIXGEN_MODEL to it.
# The install steps are deploy/install.sh, which CI runs too (no image is built there).
# Entrypoint `pixgen`: `serve` (default), `worker`, `keys`, `status`, ... as on a machine.

ARG VARIANT=cuda
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
ARG CPU_IMAGE=ubuntu:24.04

# -- the environment, built once per variant ----------------------------------------------------------------------
FROM ${CPU_IMAGE} AS build
ARG VARIANT
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
COPY src/ src/
COPY deploy/install.sh deploy/requirements.lock deploy/
RUN deploy/install.sh /opt/pixgen "${VARIANT}"

# -- what each variant runs on -------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS base-cuda
# the folder mounted from the host or a volume (read-only): PIXGEN_MODEL names it, e.g. /models/ltx-2
ENV PIXGEN_MODEL=/models/ltx-2

FROM ${CPU_IMAGE} AS base-cpu
ENV PIXGEN_MODEL=tiny \
    PIXGEN_DEVICE=cpu

# -- the image -----------------------------------------------------------------------------------------------------
# base-cuda or base-cpu, a stage of this file (hadolint takes it for an untagged image)
# hadolint ignore=DL3006
FROM base-${VARIANT}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 pixgen \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/pixgen pixgen \
    && mkdir -p /data /models \
    && chown pixgen:pixgen /data
COPY --from=build /opt/pixgen /opt/pixgen
# Settings are PIXGEN_* variables (README "Settings"); the database URL and secrets come from the environment.
# HF_HUB_OFFLINE: the image never downloads weights. Every cache goes under /data, the one writable folder (the
# root file system may be read-only).
ENV PATH=/opt/pixgen/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    XDG_CACHE_HOME=/data/.cache \
    HF_HOME=/data/.cache/huggingface \
    TRITON_CACHE_DIR=/data/.cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/data/.cache/inductor \
    PIXGEN_HOST=0.0.0.0 \
    PIXGEN_PORT=8000 \
    PIXGEN_DATA_DIR=/data \
    PIXGEN_CACHE_DIR=/data/cache
USER 10001:10001
WORKDIR /data
EXPOSE 8000
# The API's liveness (a worker has no port: its liveness is its heartbeat, `pixgen status`).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PIXGEN_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["pixgen"]
CMD ["serve"]
