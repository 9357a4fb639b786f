"""Runs the conformance suite (conformance/) against our broker and compares every scenario's
observation with the golden file recorded against the reference RabbitMQ.

`python -m conformance --against ours` starts the broker on a free port with a temp data dir and
stops it by pid afterwards; see conformance/README.md. It runs once per module; scenarios that
drive a system tool (amqp-tools, Node) are reported by their own test, which is skipped with the
runner's reason (naming the missing tool) when the runner could not run them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance.runner import TOOL_REQUIREMENTS  # noqa: E402


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


@pytest.fixture(scope="module")
def conformance_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `python -m conformance --against ours` run: its output and per-scenario results."""
    out = tmp_path_factory.mktemp("conformance") / "conformance.json"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "--against", "ours", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )
    output = f"{proc.stdout[-20000:]}\n{proc.stderr[-3000:]}"
    if not out.exists():
        pytest.fail(f"the conformance runner wrote no results (exit {proc.returncode}):\n{output}")
    data = json.loads(out.read_text())
    return {"returncode": proc.returncode, "output": output, "stdout": proc.stdout,
            "results": {r["scenario"]: r for r in data["results"]}}


def test_conformance_against_golden(conformance_run: dict[str, Any]) -> None:
    results = conformance_run["results"]
    failing = [name for name, r in results.items()
               if name not in TOOL_REQUIREMENTS and not r["status"].startswith("pass")]
    if failing:
        pytest.fail(
            f"{len(failing)} conformance scenario(s) differ from RabbitMQ golden files or failed: "
            f"{failing}\n\n{conformance_run['output']}"
        )
    tool_failures = [n for n in TOOL_REQUIREMENTS
                     if n in results and results[n]["status"] != "skipped"
                     and not results[n]["status"].startswith("pass")]
    assert conformance_run["returncode"] == (1 if tool_failures else 0), conformance_run["output"]


@pytest.mark.parametrize("name", sorted(TOOL_REQUIREMENTS))
def test_conformance_scenario_with_system_tool(conformance_run: dict[str, Any], name: str) -> None:
    result = conformance_run["results"].get(name)
    assert result is not None, f"scenario {name} was not run:\n{conformance_run['output']}"
    if result["status"] == "skipped":
        pytest.skip(f"conformance scenario {name} not run: {result['reason']}")
    if not result["status"].startswith("pass"):
        detail = conformance_run["stdout"].split(f"=== {name}\n", 1)[-1].split("\n=== ", 1)[0]
        pytest.fail(f"conformance scenario {name} differs from the golden file or failed:\n"
                    f"=== {name}\n{detail[:10000]}")
