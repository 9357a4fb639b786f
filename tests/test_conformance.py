"""Runs the conformance suite (conformance/) against our broker and compares every scenario's
observation with the golden file recorded against the reference RabbitMQ.

`python -m conformance --against ours` starts the broker on a free port with a temp data dir and
stops it by pid afterwards; see conformance/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _broker_importable() -> str | None:
    try:
        if importlib.util.find_spec("amqp_broker") is None:
            return "package amqp_broker not found"
        if importlib.util.find_spec("amqp_broker.__main__") is None:
            return "amqp_broker has no __main__ (python -m amqp_broker) yet"
    except Exception as exc:  # noqa: BLE001
        return f"amqp_broker cannot be imported: {exc!r}"
    return None


_reason = _broker_importable()
pytestmark = [
    pytest.mark.skipif(_reason is not None, reason=f"conformance needs our broker: {_reason}"),
]


def test_conformance_against_golden(tmp_path):
    out = tmp_path / "conformance.json"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--against", "ours", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        failing = []
        if out.exists():
            data = json.loads(out.read_text())
            failing = [r["scenario"] for r in data["results"] if not r["status"].startswith("pass")]
        pytest.fail(
            f"{len(failing)} conformance scenario(s) differ from RabbitMQ golden files or failed: "
            f"{failing}\n\n{proc.stdout[-20000:]}\n{proc.stderr[-3000:]}"
        )
