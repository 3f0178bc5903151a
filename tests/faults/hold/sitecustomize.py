"""Test-only: hold a Python process at a known point (loaded through PYTHONPATH).

A fault test puts this folder first on ``PYTHONPATH`` of the process it starts; Python
imports ``sitecustomize`` at start-up, before any product code. With
``CHURN_TEST_HOLD_REPLACE`` set to a file-name glob (``drift_report_*.json``), the
process stops itself with SIGSTOP inside ``os.replace`` onto a matching name, before
the rename: the report's temporary file is complete and fsynced, the report is not in
place yet. ``CHURN_TEST_HOLD_AFTER=N`` lets the first N matching renames through. The
test waits for the stopped state (``T`` in ``/proc/<pid>/stat``) and kills the process
there, so the kill lands at the same point on an idle or a busy machine. Nothing in the
product knows about it.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import threading
from typing import Any

_PATTERN = os.environ.get("CHURN_TEST_HOLD_REPLACE")

if _PATTERN:
    _real_replace = os.replace
    _let_through = [int(os.environ.get("CHURN_TEST_HOLD_AFTER", "0"))]

    def _replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if fnmatch.fnmatch(os.path.basename(os.fsdecode(dst)), _PATTERN):
            if _let_through[0] == 0:
                # Directed at this thread: it takes the stop itself on return from
                # the system call, before the rename. A signal to the pid may be taken
                # by another thread, and this one would rename before the stop lands.
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            else:
                _let_through[0] -= 1
        _real_replace(src, dst, *args, **kwargs)

    os.replace = _replace
