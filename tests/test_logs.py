"""Logs an operator can use (amqp_broker.logs): JSON mode is one object per line with the
documented fields; channel and connection errors are logged with their reply code and
text; peers are "host:port"; stdlib (storage) lines keep their values; nothing is
logged per message."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import structlog

from amqp_broker import logs
from tests.helpers import pika_connect

PEER = re.compile(r"^(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+$")


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """configure(json) writing into a buffer for one test, then back to the defaults."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    logs.configure("debug", "json")
    yield buffer
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_stdlib_lines_keep_their_fields_in_json(json_logs: Any) -> None:
    log = logging.getLogger("amqp_broker.storage.segment")
    log.error("store file %s: corrupt record at offset %d", "/data/seg-1", 4096,
              extra={"file": "/data/seg-1", "offset": 4096})
    structlog.get_logger("amqp_broker").warning("channel error", peer="127.0.0.1:5555",
                                                reply_code=404)
    first, second = lines_of(json_logs.getvalue())
    assert first["event"] == "store file /data/seg-1: corrupt record at offset 4096"
    assert first["level"] == "error" and first["logger"] == "amqp_broker.storage.segment"
    assert "args" not in first  # its extra fields name the values already
    assert first["file"] == "/data/seg-1" and first["offset"] == 4096
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", first["timestamp"])
    assert second == {"event": "channel error", "peer": "127.0.0.1:5555", "reply_code": 404,
                      "level": "warning", "timestamp": second["timestamp"]}


def test_stdlib_lines_without_fields_keep_their_values_as_args(json_logs: Any) -> None:
    logging.getLogger("amqp_broker.storage").warning("segment %s truncated at %d", "s-2", 17)
    (line,) = lines_of(json_logs.getvalue())
    assert line["args"] == ["s-2", 17] and line["event"] == "segment s-2 truncated at 17"


def test_unknown_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        logs.configure("info", "xml")
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure("loud", "json")


def _bad_frame_connection(port: int) -> None:
    """A client that sends a frame with a bad frame-end octet after the protocol header."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        s.recv(4096)  # connection.start
        s.sendall(struct.pack(">BHI", 1, 0, 4) + b"\x00\x0a\x00\x0b" + b"\x00")
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


def test_broker_json_log_lines(broker_factory: Any, tmp_path: Path) -> None:
    b = broker_factory("--log-format", "json", "--log-level", "info")
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.queue_declare("logs-q")
    for _ in range(200):
        ch.basic_publish("", "logs-q", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.queue_declare("no-such-queue", passive=True)
    conn.close()
    _bad_frame_connection(b.port)
    b.stop()
    text = b.log_path.read_text()
    lines = lines_of(text)  # every line is one JSON object
    assert len(lines) == len(text.strip().splitlines())
    for line in lines:
        assert {"event", "level", "timestamp"} <= set(line), line
        if "peer" in line:
            assert PEER.match(line["peer"]), line
    (channel_error,) = [x for x in lines if x["event"] == "channel error"]
    assert channel_error["reply_code"] == 404 and channel_error["level"] == "error"
    assert channel_error["reply_text"] == "NOT_FOUND - no queue 'no-such-queue' in vhost '/'"
    assert channel_error["method"] == "queue.declare" and channel_error["channel"] == 1
    assert channel_error["user"] == "guest" and channel_error["vhost"] == "/"
    (conn_error,) = [x for x in lines if x["event"] == "connection error"]
    assert conn_error["reply_code"] == 501 and conn_error["reply_text"].startswith("FRAME_ERROR")
    assert [x for x in lines if x["event"] == "connection opened"][0]["peer"]
    # the storage package's stdlib lines carry their values as fields
    (opened,) = [x for x in lines if x["event"].startswith("store opened")]
    assert opened["logger"].startswith("amqp_broker.storage") or opened["logger"].startswith(
        "storage")
    assert {"queues", "messages", "definitions", "seconds"} <= set(opened)
    # nothing per message: 200 publishes add no lines
    assert len(lines) < 40, [x["event"] for x in lines]
