"""structlog setup: console or JSON lines, stdlib logging routed through it.

Every line is one event: `timestamp` (ISO 8601, UTC), `level`, `event` (a fixed
phrase) and the event's fields (`peer` as "host:port", `user`, `vhost`, `channel`,
`reply_code`, `reply_text`, `method`, ...). Lines from stdlib loggers (the storage
package) also carry `logger` and the fields passed with `extra={...}`; one without
such fields carries the values of its %-style message as `args`, so JSON mode keeps
them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog


def configure(level: str = "info", fmt: str = "console") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"unknown log format {fmt!r} (console or json)")
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(),
                           _positional_args, *shared],
        pass_foreign_args=True))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


_STANDARD_KEYS = {"event", "logger", "level", "timestamp", "_record", "_from_structlog"}


def _positional_args(logger: Any, name: str,
                     event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A stdlib record's %-style values as the `args` field (the formatted text alone
    would lose them in JSON mode)."""
    args = event.pop("positional_args", None)
    # a line that names its fields with extra={...} has them already: no `args` twice
    if isinstance(args, tuple) and args and not event.keys() - _STANDARD_KEYS:
        event["args"] = [a if isinstance(a, (int, float, bool)) or a is None else str(a)
                         for a in args]
    return event
