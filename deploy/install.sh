#!/usr/bin/env bash
# The one install recipe of pixgen's image: the Dockerfile runs it, and so does CI (tests/test_deploy_image.py),
# where no image can be built, so the recipe is exercised on every change.
#
#   deploy/install.sh PREFIX [cuda|cpu]
#
# Makes the virtual environment PREFIX with:
#   1. torch 2.13.0: "cuda" (default) takes the build PyPI ships for Linux x86_64 (CUDA 13.0; its CUDA libraries
#      come pinned by torch itself); "cpu" takes the CPU build from TORCH_INDEX_URL (default: PyTorch's CPU index;
#      set it empty to let pip's own configuration find it, as on machines that keep the wheel on disk);
#   2. every other dependency, exactly as pinned in deploy/requirements.lock (deploy/lock.sh makes it);
#   3. pixgen itself from this checkout, without resolving anything more;
# then checks it: `pip check` (the lock is complete and consistent) and `pixgen --help`.
# PYTHON: the interpreter the environment is made from (default python3; 3.11 or newer).
set -euo pipefail

prefix="${1:?usage: deploy/install.sh PREFIX [cuda|cpu]}"
variant="${2:-cuda}"
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
lock="$source_dir/deploy/requirements.lock"
torch="torch==2.13.0"

"${PYTHON:-python3}" -m venv "$prefix"
pip=("$prefix/bin/python" -m pip --no-input --disable-pip-version-check --no-cache-dir)

case "$variant" in
  cuda)
    "${pip[@]}" install "$torch" --constraint "$lock"
    ;;
  cpu)
    index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
    "${pip[@]}" install --no-deps ${index:+--index-url "$index"} "$torch"
    ;;
  *)
    echo "install.sh: the variant is cuda or cpu, not '$variant'" >&2
    exit 2
    ;;
esac
"${pip[@]}" install --no-deps --requirement "$lock"
"${pip[@]}" install --no-deps --no-build-isolation "$source_dir"
"${pip[@]}" check
"$prefix/bin/pixgen" --help >/dev/null
echo "install.sh: pixgen ($variant) installed in $prefix"
