"""Robustness (issue 9): the broker outlives a shortage of file descriptors, and a client
that gets the login wrong costs one clean close and one log line, as with RabbitMQ 3.x."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import BrokerProcess, pika_connect

from amqp_broker.config import Config
from amqp_broker.server import Server
from storage import MemoryStore

# --- file descriptors -------------------------------------------------------------------

NOFILE = 256  # the broker's soft and hard limit: raising it at start-up cannot help


@contextlib.contextmanager
def limited_broker(tmp_path: Path, soft: int, hard: int, *args: str,
                   data_dir: bool = True) -> Iterator[BrokerProcess]:
    """A broker subprocess started under RLIMIT_NOFILE (soft, hard); stopped by pid."""
    if os.environ.get("AMQP_TEST_PORT"):
        pytest.skip("needs a private broker; AMQP_TEST_PORT points at an external one")
    b = BrokerProcess(data_dir=tmp_path / "data" if data_dir else None,
                      log_path=tmp_path / "broker.log", extra_args=args)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=limit))
        b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def many_fds() -> Iterator[int]:
    """Let this test process hold more sockets than the limited broker has descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * NOFILE
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the test needs {want} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_out_of_descriptors_refuses_new_sockets_and_keeps_serving(
        tmp_path: Path, many_fds: int) -> None:
    """More idle TCP connects than the broker has descriptors: it refuses the surplus
    (logged once) instead of dying on EMFILE, an open connection keeps working, and a
    new one is served once the idle sockets are gone."""
    with limited_broker(tmp_path, NOFILE, NOFILE) as b:
        keeper = pika_connect(b.port)
        ch = keeper.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        idle: list[socket.socket] = []
        try:
            for _ in range(NOFILE + 100):
                idle.append(socket.create_connection(("127.0.0.1", b.port), timeout=5))
            time.sleep(1.5)  # the broker accepts (or refuses) every one of them
            assert b.alive(), f"the broker died; log:\n{b.log()[-3000:]}"
            ch.basic_publish("", q, b"still served")
            assert ch.basic_get(q, auto_ack=True)[2] == b"still served"
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                fresh = pika_connect(b.port)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        fch = fresh.channel()
        fch.basic_publish("", q, b"new connection")
        assert ch.basic_get(q, auto_ack=True)[2] == b"new connection"
        fresh.close()
        keeper.close()
        assert b.alive()
        log = b.log()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("connection limit reached") == 1, log[-3000:]


def test_soft_descriptor_limit_raised_at_start_up(tmp_path: Path) -> None:
    """The soft RLIMIT_NOFILE is raised to the hard limit, and the figures are logged."""
    with limited_broker(tmp_path, NOFILE, 2 * NOFILE, "--log-level", "info") as b:
        with open(f"/proc/{b.pid}/limits") as f:
            line = next(ln for ln in f if ln.startswith("Max open files"))
        assert line.split()[3:5] == [str(2 * NOFILE), str(2 * NOFILE)], line
        log = b.log()
        assert "file descriptors" in log and f"limit={2 * NOFILE}" in log, log
        # the connection limit follows from it: (limit - 100) * 0.9 + 1, as RabbitMQ 3.x
        assert f"max_connections={int((2 * NOFILE - 100) * 0.9) + 1}" in log, log


class FlakyListener:
    """accept() fails with EMFILE a few times, then hands out one stream, then waits."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.stream = object()

    async def accept(self) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        if self.calls == self.failures + 1:
            return self.stream
        await anyio.sleep_forever()


def test_accept_loop_outlives_emfile() -> None:
    """EMFILE from accept() pauses accepting briefly, logged once per episode; the loop
    goes on and serves the next connection (anyio's listener.serve would end instead)."""
    import structlog.testing

    server = Server(Config(data_dir=None, metrics_port=0), MemoryStore())
    listener = FlakyListener(failures=3)
    handled: list[Any] = []

    async def handle(stream: Any) -> None:
        handled.append(stream)

    server._handle = handle  # type: ignore[method-assign]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server._accept_loop, listener, tg)
            with anyio.fail_after(5):
                while not handled:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

    with structlog.testing.capture_logs() as logs:
        anyio.run(main)
    assert handled == [listener.stream]
    assert listener.calls >= 4
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "accept" in warnings[0]["event"], logs
