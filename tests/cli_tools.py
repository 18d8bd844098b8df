"""``pixgen`` commands run in the test's own process: ``pixgen.cli.main`` with its output captured, answered as
``subprocess.run(..., capture_output=True, text=True)`` would answer it.

For the tests of what a command's flags do. A command that loads the model then costs its job only, not a fresh
interpreter's imports of torch and diffusers (~6 s of CPU each, more than a toy job). ``python -m pixgen`` itself
stays covered by the tests that need a process of its own (tests/test_cli_generate.py, the servers, the workers).
"""

from __future__ import annotations

import contextlib
import io
import subprocess

from pixgen.cli import main


def pixgen(*args: str) -> subprocess.CompletedProcess[str]:
    """``pixgen ARGS``: its exit code (an argparse refusal's too), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse exits: 2 for a bad flag, 0 for --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["pixgen", *args], code, out.getvalue(), err.getvalue())
