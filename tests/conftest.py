"""Shared fixtures: the broker as a subprocess on a free port.

`broker` is one broker for the whole session (tests use unique queue and
exchange names); `broker_factory` starts private brokers (custom flags,
restarts) that are stopped by PID when the test ends, pass or fail.
Integration tests get a hard per-test time limit (SIGALRM) so a hung client
call fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import BrokerProcess  # noqa: E402

DEFAULT_TEST_TIMEOUT = 30


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "time_limit(seconds): hard time limit for an integration test "
                   f"(default {DEFAULT_TEST_TIMEOUT}s)")
    config.addinivalue_line(
        "markers", "slow: takes tens of seconds (a venv, a build); runs in the normal suite, "
                   "-m 'not slow' leaves it out")


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def _integration_time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    if not request.node.fspath.basename.startswith("test_integration_") or \
            not hasattr(signal, "SIGALRM"):
        yield
        return
    marker = request.node.get_closest_marker("time_limit")
    seconds = int(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded(f"test exceeded its {seconds}s time limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the session, its data dir in tmp.

    AMQP_TEST_PORT=5673 runs the tests against an already running broker instead
    (the reference RabbitMQ), to check what a test expects."""
    external = os.environ.get("AMQP_TEST_PORT")
    if external:
        yield BrokerProcess(data_dir=None, log_path=Path("/dev/null"), port=int(external))
        return
    base = tmp_path_factory.mktemp("broker")
    proc = BrokerProcess(data_dir=base / "data", log_path=base / "broker.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """Start private brokers: factory(*extra_args, data_dir=...) -> started BrokerProcess."""
    if os.environ.get("AMQP_TEST_PORT"):
        pytest.skip("needs a private broker; AMQP_TEST_PORT points at an external one")
    started: list[BrokerProcess] = []

    def start(*extra_args: str, data_dir: Path | None | str = "tmp") -> BrokerProcess:
        n = len(started)
        if data_dir == "tmp":
            data_dir = tmp_path / f"data{n}"
        proc = BrokerProcess(data_dir=data_dir if data_dir else None,  # type: ignore[arg-type]
                             log_path=tmp_path / f"broker{n}.log",
                             extra_args=tuple(extra_args))
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def uid() -> str:
    """A unique suffix for queue and exchange names."""
    return uuid.uuid4().hex[:12]
