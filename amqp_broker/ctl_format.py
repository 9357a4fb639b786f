"""Plain-text rendering for `amqp-broker ctl`: aligned tables and key/value blocks.

Columns are named by a header and a dotted path into the management API's JSON
(`queue.name` reads obj["queue"]["name"]). Cells are one line each: control
characters in names are escaped, so a hostile queue name cannot break a row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MISSING = object()
GAP = "  "  # between columns


def pick(obj: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    for key in path.split("."):
        if not isinstance(obj, Mapping) or key not in obj:
            return MISSING
        obj = obj[key]
    return obj


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def cell(value: Any) -> str:
    """One value as rabbitmqctl shows it: true/false, lists comma-joined, objects as JSON."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _one_line(value)
    if isinstance(value, (list, tuple)):
        return ",".join(cell(item) for item in value)
    if isinstance(value, Mapping):
        return _one_line(json.dumps(value, separators=(",", ":"), sort_keys=True)) if value else ""
    return _one_line(str(value))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as aligned columns under a header line; numbers right-aligned.

    columns: (header, dotted path) pairs. Returns the text with a final newline."""
    headers = [header for header, _ in columns]
    lines: list[list[str]] = []
    right = [True] * len(columns)  # a column is right-aligned when all its values are numbers
    for row in rows:
        values = [pick(row, path) for _, path in columns]
        for i, value in enumerate(values):
            if value is not MISSING and value is not None and not _numeric(value):
                right[i] = False
        lines.append([cell(value) for value in values])
    widths = [max([len(headers[i])] + [len(line[i]) for line in lines])
              for i in range(len(columns))]

    def render(line: Sequence[str], header: bool = False) -> str:
        parts = [text.rjust(widths[i]) if right[i] and not header else text.ljust(widths[i])
                 for i, text in enumerate(line)]
        return GAP.join(parts).rstrip()

    return "".join(render(line, header) + "\n"
                   for header, line in [(True, headers)] + [(False, line) for line in lines])


def pairs(items: Iterable[tuple[str, str]]) -> str:
    """`key   value` lines with the values aligned."""
    items = list(items)
    width = max((len(key) for key, _ in items), default=0)
    return "".join(f"{key.ljust(width)}{GAP}{value}".rstrip() + "\n" for key, value in items)


def size(n: Any) -> str:
    """Bytes for people: 1.5 GiB, 120 MiB, 512 B."""
    if not _numeric(n):
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(ms: Any) -> str:
    """Milliseconds of uptime for people: 3d 4h 5m 6s."""
    if not _numeric(ms):
        return "?"
    seconds = int(ms) // 1000
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{seconds}s")
    return " ".join(parts)
