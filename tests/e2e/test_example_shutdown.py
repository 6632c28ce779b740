"""`common.serve`, how the example apps run their server: a SIGTERM that comes while the process
is already leaving (`make demo` stopping a child that Ctrl-C stopped first) prints no traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

from .harness import EXAMPLES

# The "server" returns at once and leaves a thread running: the interpreter then waits for it in
# `threading._shutdown`, which is where a late SIGTERM lands.
SCRIPT = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import common
common.serve(lambda: threading.Thread(target=time.sleep, args=(1.5,)).start(), "serving")
print("main returned", flush=True)
"""


def test_a_sigterm_while_the_process_leaves_prints_no_traceback() -> None:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(EXAMPLES)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "serving"
    assert process.stdout.readline().strip() == "main returned"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
