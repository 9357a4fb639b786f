"""Stopping a broker (or any child) process by its pid: SIGTERM, a grace period, then
SIGKILL. The tests, the conformance runner and the benchmarks all stop brokers this
way; never by process name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> int | None:
    """Stop proc if it still runs; returns its exit code (None when there was none)."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode
