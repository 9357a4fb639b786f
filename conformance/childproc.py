"""Stopping a broker (or any child) process by its pid: SIGTERM, a grace period, then
SIGKILL. The tests, the conformance runner and the benchmarks all stop brokers this
way; never by process name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0,
                 group: bool = False) -> int | None:
    """Stop proc if it still runs; returns its exit code (None when there was none).
    With group, the signals go to its whole process group (started with
    start_new_session=True), so its children stop too."""
    if proc is None:
        return None
    if proc.poll() is None:
        kill = os.killpg if group else os.kill
        with contextlib.suppress(ProcessLookupError):
            kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode
