"""Ending a pixgen process once its work is done, without tearing the interpreter down."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def leave(code: int) -> NoReturn:
    """End the process with ``code`` as multiprocessing's children end: the caller's work is over (files closed,
    workers stopped, scratch folders removed), the logs and standard streams are flushed here, and the interpreter's
    own teardown is skipped: unloading torch, diffusers and transformers module by module takes one or two CPU
    seconds that whatever waits for this process (a restart, a drain, a test) would wait for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The status ``sys.exit(x)`` would give: ``None`` is 0, an int is itself, anything else is printed and is 1."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1
