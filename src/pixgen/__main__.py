import sys
import traceback

from pixgen.cli import main
from pixgen.quick_exit import exit_code, leave

try:
    code = main()
except SystemExit as exc:  # argparse's --help and usage errors
    code = exit_code(exc)
except Exception:  # noqa: BLE001 - reported as Python would (exit status 1), then the same exit
    traceback.print_exc()
    code = 1
# A process that loaded the model (worker, generate, retake...) skips the interpreter's teardown; one that did not
# (the API: it never imports torch) exits as usual, its thread pools finishing what they started.
if "torch" in sys.modules:
    leave(code)
sys.exit(code)
