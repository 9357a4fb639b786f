"""Broker configuration: one frozen dataclass, built by the CLI and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 5672
    data_dir: str | None = "data"  # None: in-memory store, nothing survives a restart
    log_level: str = "info"
    log_format: str = "console"  # console | json
    # negotiation limits offered in connection.tune
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    # authentication
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    vhosts: tuple[str, ...] = field(default_factory=tuple)
    loopback_users: tuple[str, ...] = ("guest",)  # users allowed from loopback only
    # limits
    max_message_size: int = 128 * 1024 * 1024
    # per-connection output buffer above which deliveries to it pause (bytes)
    write_high_water: int = 1024 * 1024
    # per-connection output (queued and being sent) above which the connection is no
    # longer read until it drains: returns and basic.get replies to a client that does
    # not read stay bounded (bytes)
    max_connection_buffer: int = 4 * 1024 * 1024
    # bodies of persistent messages not yet fsync'd above which publishers wait for the
    # group commit before more of their input is read (bytes)
    max_unsynced_bytes: int = 64 * 1024 * 1024
    # bytes the broker holds (bodies, buffers; RSS as a backstop) above which
    # publishers are blocked (amqp_broker.alarms)
    memory_high_water: int = 1024 * 1024 * 1024
    # free bytes on the data directory's disk below which publishers are blocked
    disk_free_limit: int = 50 * 1000 * 1000
    # seconds a delivery may stay unacknowledged before its channel is closed (0: never)
    consumer_timeout: float = 1800.0
    # prometheus metrics endpoint port (0 disables)
    metrics_port: int = 15692
