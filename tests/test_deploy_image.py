"""The image's recipe, run where no image can be built: the build stage's COPY lines make a build context from
this checkout, and deploy/install.sh (the Dockerfile's one RUN of pixgen's install) makes the CPU variant's
environment from it; that environment then makes a video with the toy model, as the CPU image would.

The image itself is not built here (no container engine): the base images, apt and the CUDA wheel are not tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_tools import ROOT

from pixgen.media.probe import probe


def build_stage_copies() -> list[tuple[list[str], str]]:
    """The COPY lines of the Dockerfile's ``build`` stage: (sources, destination under its WORKDIR)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM ") and line.endswith(" AS build"))
    copies = []
    for line in lines[start + 1:]:
        if line.startswith("FROM "):
            break
        if line.startswith("COPY "):
            *sources, destination = line.split()[1:]
            copies.append((sources, destination))
    return copies


@pytest.mark.slow
def test_the_image_recipe_installs_an_environment_that_makes_a_video(tmp_path):
    context = tmp_path / "src"  # the build stage's WORKDIR, filled as Docker's COPY fills it
    for sources, destination in build_stage_copies():
        for source in sources:
            if (ROOT / source).is_dir():  # a folder: its contents into the destination
                shutil.copytree(ROOT / source, context / destination, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:  # a file: into the destination folder (trailing /) or as the destination
                target = context / destination / Path(source).name if destination.endswith("/") else \
                    context / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    assert sorted(p.name for p in context.iterdir()) == ["deploy", "pyproject.toml", "src"]

    # As the image's build runs it, with torch's CPU build from wherever pip is configured to find it here, and no
    # byte-compiling (half of pip's time here; it checks nothing: a file that does not compile is only a warning).
    env = {**os.environ, "PYTHON": sys.executable, "TORCH_INDEX_URL": "", "PIP_COMPILE": "0"}
    install = subprocess.run(["bash", context / "deploy" / "install.sh", tmp_path / "pixgen", "cpu"], env=env,
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-5000:] + install.stderr[-5000:]
    assert "pixgen (cpu) installed" in install.stdout

    python = tmp_path / "pixgen" / "bin" / "python"
    installed = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the environment's pixgen, not a checkout's
    versions = subprocess.run([python, "-c", "import torch, pixgen; print(torch.__version__, pixgen.__file__)"],
                              capture_output=True, text=True, timeout=120, env=installed)
    torch_version, location = versions.stdout.split()
    assert torch_version.startswith("2.13.0") and location.startswith(str(tmp_path / "pixgen"))  # not this checkout

    out = tmp_path / "out.mp4"
    made = subprocess.run([tmp_path / "pixgen" / "bin" / "pixgen", "generate", "a red kite over the sea",
                           "--duration", "1", "--quality", "360p", "--seed", "7", "--model", "tiny", "-o", out],
                          env={**installed, "PIXGEN_DEVICE": "cpu"}, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    facts = probe(out)
    assert (facts.width, facts.height) == (640, 360) and abs(facts.num_frames - 25) <= 1
