#!/usr/bin/env bash
# Rewrites deploy/requirements.lock: every package pixgen needs at run time, resolved and pinned (torch aside:
# deploy/install.sh installs torch==2.13.0 itself, its CUDA or CPU build). Run it after a change of pyproject's
# dependencies, from a machine with pip and Python 3.11+ (`make install` first), and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$python" -m pip install --quiet --dry-run --ignore-installed --report "$report" . >/dev/null
"$python" - "$report" >deploy/requirements.lock <<'PY'
import json, sys
from packaging.utils import canonicalize_name

report = json.load(open(sys.argv[1]))
pins = sorted((canonicalize_name(i["metadata"]["name"]), i["metadata"]["version"]) for i in report["install"])
print("# pixgen's runtime dependencies, resolved and pinned: the image installs exactly these (deploy/install.sh).")
print("# torch is not here: install.sh installs torch==2.13.0 first (CUDA or CPU build, its CUDA libraries pinned")
print("# by torch itself). Made by deploy/lock.sh from pyproject.toml; do not edit by hand.")
for name, version in pins:
    if name not in ("pixgen", "torch"):
        print(f"{name}=={version.split('+')[0]}")
PY
echo "deploy/requirements.lock: $(grep -vc '^#' deploy/requirements.lock) packages"
