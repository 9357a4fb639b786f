"""Command line: `amqp-broker` and `python -m amqp_broker`.

Every option can also be set with an AMQP_BROKER_* environment variable; a
flag on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config

ENV = "AMQP_BROKER_"


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(ENV + name, default)


def _memory_limit(value: str) -> int:
    """Bytes, or a fraction of physical RAM like RabbitMQ's vm_memory_high_watermark."""
    number = float(value)
    if number <= 1.0:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total * number)
    return int(number)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amqp-broker",
        description="An AMQP 0-9-1 message broker that RabbitMQ clients use unmodified.",
        epilog="Each option may also be set by an environment variable named in brackets.",
    )
    p.add_argument("--host", default=_env("HOST", ""),
                   help="address to listen on [AMQP_BROKER_HOST] (default: every IPv4 and "
                        "IPv6 interface, as RabbitMQ)")
    p.add_argument("--port", type=_port, default=_port(_env("PORT", "5672") or "5672"),
                   help="AMQP port [AMQP_BROKER_PORT] (default: 5672)")
    p.add_argument("--data-dir", default=_env("DATA_DIR", "data"),
                   help="directory for durable messages and definitions "
                        "[AMQP_BROKER_DATA_DIR] (default: ./data); 'none' keeps "
                        "everything in memory")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"],
                   help="[AMQP_BROKER_LOG_LEVEL] (default: info)")
    p.add_argument("--log-format", default=_env("LOG_FORMAT", "console"),
                   choices=["console", "json"], help="[AMQP_BROKER_LOG_FORMAT] (default: console)")
    p.add_argument("--default-user", default=_env("DEFAULT_USER", "guest"),
                   help="user name [AMQP_BROKER_DEFAULT_USER] (default: guest)")
    p.add_argument("--default-pass", default=_env("DEFAULT_PASS", "guest"),
                   help="password [AMQP_BROKER_DEFAULT_PASS] (default: guest)")
    p.add_argument("--vhosts", default=_env("VHOSTS", "/"),
                   help="comma-separated virtual hosts to serve [AMQP_BROKER_VHOSTS] "
                        "(default: /)")
    p.add_argument("--allow-remote-guest", action="store_true",
                   default=(_env("ALLOW_REMOTE_GUEST", "") or "").lower() in ("1", "true", "yes"),
                   help="let the guest user log in from other hosts; by default, as in "
                        "RabbitMQ, guest may only connect via localhost "
                        "[AMQP_BROKER_ALLOW_REMOTE_GUEST=1]")
    p.add_argument("--heartbeat", type=int, default=int(_env("HEARTBEAT", "60") or 60),
                   help="heartbeat interval offered to clients, seconds; 0 disables "
                        "[AMQP_BROKER_HEARTBEAT] (default: 60)")
    p.add_argument("--memory-high-watermark", default=_env("MEMORY_HIGH_WATERMARK", "0.4"),
                   help="block publishers above this RSS: a fraction of RAM (<= 1) or bytes "
                        "[AMQP_BROKER_MEMORY_HIGH_WATERMARK] (default: 0.4)")
    p.add_argument("--disk-free-limit", type=int,
                   default=int(_env("DISK_FREE_LIMIT", "50000000") or 0),
                   help="block publishers while the data directory's disk has fewer free "
                        "bytes than this; 0 disables [AMQP_BROKER_DISK_FREE_LIMIT] "
                        "(default: 50000000, as RabbitMQ)")
    p.add_argument("--consumer-timeout", type=float,
                   default=float(_env("CONSUMER_TIMEOUT", "1800") or 0),
                   help="seconds a delivery may stay unacknowledged before its channel is "
                        "closed with 406, as RabbitMQ's consumer_timeout; 0 disables "
                        "[AMQP_BROKER_CONSUMER_TIMEOUT] (default: 1800)")
    p.add_argument("--metrics-port", type=_port,
                   default=_port(_env("METRICS_PORT", "15692") or "0"),
                   help="Prometheus metrics on http://HOST:PORT/metrics; 0 disables "
                        "[AMQP_BROKER_METRICS_PORT] (default: 15692, as RabbitMQ's plugin)")
    p.add_argument("--version", action="version", version=f"amqp-broker {__version__}")
    return p


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    args = parser().parse_args(argv)
    data_dir = None if str(args.data_dir).lower() in ("", "none") else args.data_dir
    vhosts = [v.strip() for v in str(args.vhosts).split(",") if v.strip()] or ["/"]
    loopback = () if args.allow_remote_guest else ("guest",)
    return Config(host=args.host, port=args.port, data_dir=data_dir, log_level=args.log_level,
                  log_format=args.log_format, default_user=args.default_user,
                  default_pass=args.default_pass, loopback_users=loopback,
                  heartbeat=args.heartbeat, metrics_port=args.metrics_port,
                  disk_free_limit=args.disk_free_limit,
                  consumer_timeout=args.consumer_timeout,
                  default_vhost=vhosts[0], vhosts=tuple(vhosts[1:]),
                  memory_high_water=_memory_limit(args.memory_high_watermark))


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    import structlog

    from . import logs, server
    from .storage import StoreError
    logs.configure(config.log_level, config.log_format)
    log = structlog.get_logger("amqp_broker")
    try:
        if config.data_dir:
            os.makedirs(config.data_dir, exist_ok=True)
        server.run(config)
    except (OSError, StoreError) as exc:
        # a busy port, an unusable or locked data directory: one clear line, exit 1
        log.error("cannot start", error=str(exc), port=config.port, data_dir=config.data_dir)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
