"""The conformance runner's handling of the reference RabbitMQ and of missing system tools.

No real RabbitMQ is started: AMQP_SHARED_DIR points at a temp dir whose
tools/reference-rabbitmq.sh is a fake that fails the way a real start fails (exit 1, a log
line naming the cause), and our broker and the scenario loop are replaced by stubs.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance import runner  # noqa: E402
from conformance.registry import Scenario  # noqa: E402

CAUSE = ("ERROR: could not bind to distribution port 25699, it is in use by another node: "
         "reference@localhost")
FAKE_SCRIPT = f"""#!/usr/bin/env bash
# fake reference-rabbitmq.sh: records its calls, fails to start like the real one does
echo "$*" >> "$(dirname "$0")/calls"
mkdir -p "$REF_RMQ_DIR"
echo 'starting node reference@localhost' > "$REF_RMQ_DIR/server.out"
echo '{CAUSE}' >> "$REF_RMQ_DIR/server.out"
echo "reference RabbitMQ did not start; see $REF_RMQ_DIR/server.out" >&2
exit 1
"""


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AMQP_SHARED_DIR -> tmp/shared holding the failing fake tools/reference-rabbitmq.sh."""
    tools = tmp_path / "shared" / "tools"
    tools.mkdir(parents=True)
    script = tools / "reference-rabbitmq.sh"
    script.write_text(FAKE_SCRIPT)
    script.chmod(0o755)
    monkeypatch.setenv(runner.SHARED_ENV, str(tmp_path / "shared"))
    monkeypatch.setenv("REF_RMQ_DIR", str(tmp_path / "rmq"))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(runner, "rabbitmq_installed", lambda: True)
    return tmp_path / "shared"


class FakeOurBroker:
    def __init__(self) -> None:
        self.port = 1
        self.proc = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def stub_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Our broker and the scenario loop replaced; records what _run was asked to do."""
    calls: dict[str, Any] = {}

    def fake_run(args, selected, want_rabbit, want_ours, ours_port, ours, skipped) -> int:
        calls.update(want_rabbit=want_rabbit, want_ours=want_ours, skipped=skipped)
        return 0

    monkeypatch.setattr(runner, "OurBroker", FakeOurBroker)
    monkeypatch.setattr(runner, "_run", fake_run)
    return calls


@pytest.fixture
def listener() -> Iterator[int]:
    """Something listening on a port (not a RabbitMQ; the runner must not reuse it unasked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def both(port: int, *extra: str) -> list[str]:
    return ["--against", "both", "--rabbitmq-port", str(port), "-k", "handshake.default_tune",
            *extra]


def test_shared_tools_dir_is_next_to_the_checkout_unless_the_variable_says_otherwise(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(runner.SHARED_ENV, raising=False)
    assert runner.ref_script() == REPO.parent / "shared" / "tools" / "reference-rabbitmq.sh"
    monkeypatch.setenv(runner.SHARED_ENV, str(tmp_path))
    assert runner.ref_script() == tmp_path / "tools" / "reference-rabbitmq.sh"


def test_ci_installed_rabbitmq_that_does_not_start_is_a_failure_with_its_cause(
        shared: Path, stub_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CI", "true")
    rc = runner.main(both(runner.free_port()))
    err = capsys.readouterr().err
    assert rc != 0, err
    assert "FAILED (CI=true)" in err
    assert "installed but did not start" in err
    assert CAUSE in err  # the real cause, from the log the script pointed at
    assert "could not be installed" not in err
    assert stub_run == {}  # nothing compared
    assert (shared / "tools" / "calls").read_text().split()[0] == "start"


def test_without_ci_the_rabbitmq_side_is_skipped_with_its_cause(
        shared: Path, stub_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    rc = runner.main(both(runner.free_port()))
    err = capsys.readouterr().err
    assert rc == 0
    assert stub_run["want_rabbit"] is False and stub_run["want_ours"] is True
    assert "RabbitMQ side SKIPPED" in err
    assert CAUSE in err
    assert "under CI=true this is a failure" in err


def test_against_rabbitmq_alone_reports_it_unavailable(
        shared: Path, stub_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    rc = runner.main(["--against", "rabbitmq", "--rabbitmq-port", str(runner.free_port()),
                      "-k", "handshake.default_tune"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "RabbitMQ unavailable" in err and CAUSE in err


def test_rabbitmq_not_installed_is_skipped_even_under_ci(
        shared: Path, stub_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(runner, "rabbitmq_installed", lambda: False)
    rc = runner.main(both(runner.free_port()))
    err = capsys.readouterr().err
    assert rc == 0
    assert stub_run["want_rabbit"] is False
    assert "rabbitmq-server is not installed" in err
    assert "under CI=true this is a failure" not in err


def test_a_broker_already_on_the_port_is_not_reused_unasked(
        shared: Path, stub_run: dict[str, Any], listener: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CI", "true")
    rc = runner.main(both(listener))
    err = capsys.readouterr().err
    assert rc != 0
    assert f"port {listener} is already in use" in err and "--reuse-rabbitmq" in err
    assert not (shared / "tools" / "calls").exists()  # no start attempted over it


def test_reuse_flag_uses_the_broker_on_the_port_and_never_stops_it(
        shared: Path, stub_run: dict[str, Any], listener: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = runner.main(both(listener, "--reuse-rabbitmq"))
    err = capsys.readouterr().err
    assert rc == 0
    assert stub_run["want_rabbit"] is True
    assert "reusing the broker already listening" in err
    assert not (shared / "tools" / "calls").exists()  # neither started nor stopped


def test_missing_start_script_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runner.SHARED_ENV, str(tmp_path))
    monkeypatch.setattr(runner, "rabbitmq_installed", lambda: True)
    problem = runner.ReferenceRabbit(runner.free_port()).ensure()
    assert problem is not None and problem.broken
    assert str(tmp_path / "tools" / "reference-rabbitmq.sh") in problem.reason
    assert runner.SHARED_ENV in problem.reason


# --- scenarios whose system tool is missing ----------------------------------------------

def test_scenarios_needing_a_missing_tool_are_skipped_with_the_tool_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no amqp-publish, no node
    selected = [s for name, s in runner.load_all().items() if name in runner.TOOL_REQUIREMENTS]
    assert sorted(s.name for s in selected) == sorted(runner.TOOL_REQUIREMENTS)
    missing = runner.missing_tools(selected)
    assert "amqp-publish not found" in missing["apps.amqp_tools"]
    assert "amqp-tools" in missing["apps.amqp_tools"]
    assert "node not found" in missing["apps.node_amqplib"]


def test_skipped_scenarios_are_reported_not_failed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def never(ctx: Any) -> None:
        raise AssertionError("a skipped scenario must not run")

    sc = Scenario("apps.amqp_tools", "apps", never, 1.0, "")
    out = tmp_path / "out.json"
    args = argparse.Namespace(rabbitmq_port=1, record=False, verbose=False, json_out=str(out),
                              against="ours")
    reason = "amqp-publish not found on PATH (Debian package amqp-tools)"
    rc = runner._run(args, [sc], False, True, 1, None, {sc.name: reason})
    stdout = capsys.readouterr().out
    assert rc == 0
    assert f"skipped apps.amqp_tools: {reason}" in stdout
    assert "0 failed, 1 skipped" in stdout
    data = json.loads(out.read_text())
    assert data["results"] == [{"scenario": "apps.amqp_tools", "group": "apps",
                                "status": "skipped", "reason": reason}]
