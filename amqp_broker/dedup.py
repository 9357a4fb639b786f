"""Message deduplication, as the community plugin rabbitmq-message-deduplication and LavinMQ
define it.

Exchanges: the exchange type `x-message-deduplication` (the plugin's: it routes as fanout
and needs `x-cache-size`), or the argument `x-message-deduplication: true` on an exchange
of any type (LavinMQ's). A message whose `x-deduplication-header` header value was seen
before (and has not expired from the cache) is not routed: it is unroutable, so a
confirming publisher gets basic.ack, a mandatory one a basic.return, as with the plugin
(and an alternate exchange gets it, as RabbitMQ hands any unrouted message there).
Arguments: `x-cache-size` (entries; the oldest-used one is evicted when full; LavinMQ's
128 by default for the argument form), `x-cache-ttl` (ms an entry lives; the message
header `x-cache-ttl` overrides it per message), `x-cache-persistence` (`memory`, the
default, or `disk`: a durable exchange's cache then survives a restart), and LavinMQ's
`x-deduplication-header` naming another header to read.

Queues: the argument `x-message-deduplication: true`. A message is not enqueued while
another with the same header value is in the queue (ready or unacknowledged): the value
leaves the cache when its message is acked, rejected, dropped, expired, delivered with
no-ack or purged, as with the plugin. `x-cache-size` and `x-cache-ttl` bound the cache
there too. A duplicate is dropped silently: it counts as routed (no basic.return) and a
confirming publisher gets basic.ack. After a restart the cache is rebuilt from the
recovered messages.

Bad argument values are 406 PRECONDITION_FAILED naming the argument. Only scalar header
values (strings, numbers, booleans) deduplicate; a message without the header, or with a
table or array there, always passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .protocol import fast
from .protocol.errors import PRECONDITION_FAILED, AMQPError

if TYPE_CHECKING:
    from .queue import Message
    from .vhost import Exchange

EXCHANGE_TYPE = "x-message-deduplication"
ARGUMENT = "x-message-deduplication"
HEADER = "x-deduplication-header"
TTL_HEADER = "x-cache-ttl"
DEFAULT_SIZE = 128  # LavinMQ's default; the plugin's exchange type requires a size
# a disk journal is rewritten with only its live entries past this many lines per entry
COMPACT_FACTOR = 4

Key = tuple[str, Any]


def key_of(value: Any) -> Key | None:
    """The cache key of a header value: its kind and value (1 and "1" differ, as they do
    as AMQP field values); None for a value that is not deduplicated."""
    if isinstance(value, bool):
        return ("t", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (bytes, bytearray)):
        return ("b", bytes(value).hex())
    return None


class Journal:
    """A cache's entries on disk: one JSON array a line, ["+", kind, value, expires] or
    ["-", kind, value] or ["clear"]; replayed at start-up, rewritten when it has grown
    COMPACT_FACTOR times past the live entries. Lines are flushed to the OS as written
    (a killed broker loses none; a power loss may lose the last ones)."""

    def __init__(self, path: str, on_error: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.lines = 0
        self._file: Any = None
        self.failed = False  # a write failed: the cache goes on in memory only
        self.on_error = on_error

    def load(self) -> list[tuple[Key, float | None]]:
        entries: OrderedDict[Key, float | None] = OrderedDict()
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        if rec[0] == "+":
                            entries[(rec[1], rec[2])] = rec[3]
                        elif rec[0] == "-":
                            entries.pop((rec[1], rec[2]), None)
                        elif rec[0] == "clear":
                            entries.clear()
                    except (ValueError, IndexError, TypeError, KeyError):
                        continue  # a torn last line
        except FileNotFoundError:
            pass
        return list(entries.items())

    def rewrite(self, entries: list[tuple[Key, float | None]]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for (kind, value), expires in entries:
                f.write(json.dumps(["+", kind, value, expires]) + "\n")
        os.replace(tmp, self.path)
        self.lines = len(entries)
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def write(self, record: list[Any]) -> None:
        if self.failed:
            return
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:
            self.fail(exc)
            return
        self.lines += 1

    def compact(self, entries: list[tuple[Key, float | None]]) -> None:
        if self.failed:
            return
        try:
            self.rewrite(entries)
        except OSError as exc:
            self.fail(exc)

    def fail(self, exc: OSError) -> None:
        """Stop writing (logged once): the cache keeps working in memory."""
        self.failed = True
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self.on_error is not None:
            self.on_error(f"{self.path}: {exc}")

    def delete(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Cache:
    """Seen header values, bounded by size (least recently seen evicted first), each
    with an optional expiry (wall-clock seconds, so a disk cache's entries keep theirs
    across a restart)."""

    def __init__(self, size: int | None, ttl_ms: int | None, journal: Journal | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.ttl_ms = ttl_ms
        self.entries: OrderedDict[Key, float | None] = OrderedDict()
        self.journal = journal
        self.clock = clock
        if journal is not None:
            now = clock()
            try:
                loaded = journal.load()
            except OSError as exc:  # unreadable: start empty, in memory
                journal.fail(exc)
                loaded = []
            live = [(k, e) for k, e in loaded if e is None or e > now]
            if size is not None:
                live = live[-size:]
            self.entries.update(live)
            journal.compact(live)

    def seen(self, key: Key, ttl_ms: int | None = None) -> bool:
        """True when key is cached (a duplicate); else cache it and return False."""
        entries = self.entries
        expires = entries.get(key, 0)
        if expires != 0:
            if expires is None or expires > self.clock():
                entries.move_to_end(key)
                return True
            del entries[key]
        if self.size is not None and len(entries) >= self.size:
            old = next(iter(entries))
            del entries[old]
            self._log(["-", old[0], old[1]])
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        expires = None if ttl is None else self.clock() + ttl / 1000
        entries[key] = expires
        self._log(["+", key[0], key[1], expires])
        return False

    def discard(self, key: Key) -> None:
        if self.entries.pop(key, 0) != 0:
            self._log(["-", key[0], key[1]])

    def clear(self) -> None:
        self.entries.clear()
        self._log(["clear"])

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: Key) -> bool:
        expires = self.entries.get(key, 0)
        return expires != 0 and (expires is None or expires > self.clock())

    def _log(self, record: list[Any]) -> None:
        journal = self.journal
        if journal is None:
            return
        if journal.lines > COMPACT_FACTOR * (len(self.entries) + 64):
            journal.compact(list(self.entries.items()))
        else:
            journal.write(record)


# --- arguments -----------------------------------------------------------------

def _fail(text: str) -> AMQPError:
    return AMQPError(PRECONDITION_FAILED, text)


def _positive(arguments: dict[str, Any], name: str, required: bool) -> int | None:
    """A positive integer argument (a string of digits too, as the plugin takes)."""
    value = arguments.get(name)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        start = "Missing or invalid argument" if required else "Invalid argument"
        raise _fail(f"{start}, '{name}' must be an integer greater than 0")
    return value


def _string(arguments: dict[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if value is None or isinstance(value, str):
        return value
    raise _fail(f"Invalid argument, '{name}' must be a string")


class Settings:
    """A deduplication's validated arguments."""

    __slots__ = ("header", "persistence", "size", "ttl_ms")

    def __init__(self, arguments: dict[str, Any], size_required: bool) -> None:
        self.size = _positive(arguments, "x-cache-size", size_required)
        self.ttl_ms = _positive(arguments, "x-cache-ttl", False)
        persistence = _string(arguments, "x-cache-persistence") or "memory"
        if persistence not in ("memory", "disk"):
            raise _fail("Invalid argument, 'x-cache-persistence' must be either 'disk' or "
                        "'memory'")
        self.persistence = persistence
        self.header = _string(arguments, HEADER) or HEADER


def enabled(arguments: dict[str, Any]) -> bool:
    """Whether x-message-deduplication asks for deduplication (406 unless a boolean)."""
    value = arguments.get(ARGUMENT)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"Invalid argument, '{ARGUMENT}' must be a boolean")
    return value


def _header_key(props: bytes, header: str) -> Key | None:
    if not fast.flags_of(props) & fast.FLAG_HEADERS:
        return None
    headers = fast.message_headers(props)
    if not headers or header not in headers:
        return None
    return key_of(headers[header])


# --- exchanges -----------------------------------------------------------------

class ExchangeDedup:
    """The cache of one deduplicating exchange."""

    __slots__ = ("cache", "header")

    def __init__(self, cache: Cache, header: str) -> None:
        self.cache = cache
        self.header = header

    def duplicate(self, headers: dict[str, Any] | None) -> bool:
        """Whether a message with these headers was seen before (it is cached if not)."""
        if not headers:
            return False
        value = headers.get(self.header)
        if value is None:
            return False
        key = key_of(value)
        if key is None:
            return False
        ttl = headers.get(TTL_HEADER)
        ttl_ms = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0 \
            else None
        return self.cache.seen(key, ttl_ms)

    def close(self) -> None:
        """The exchange is deleted: its disk cache goes too."""
        if self.cache.journal is not None:
            self.cache.journal.delete()


def journal_path(data_dir: str, vhost: str, kind: str, name: str) -> str:
    digest = hashlib.sha256(f"{vhost}\x00{name}".encode("utf-8", "surrogateescape"))
    return os.path.join(data_dir, "dedup", f"{kind}-{digest.hexdigest()[:40]}.log")


def for_exchange(ex: Exchange) -> ExchangeDedup | None:
    """The deduplication of a new exchange (None for most); 406 for bad arguments."""
    arguments = ex.arguments
    is_type = ex.type_name == EXCHANGE_TYPE
    if not is_type and ARGUMENT not in arguments:
        return None
    if not is_type and not enabled(arguments):
        return None
    settings = Settings(arguments, size_required=is_type)
    journal = None
    data_dir = ex.vhost.broker.config.data_dir
    if settings.persistence == "disk" and ex.durable and data_dir:
        log = ex.vhost.broker.log

        def failed(error: str) -> None:
            log.error("deduplication cache kept in memory only: its journal failed",
                      exchange=ex.name, vhost=ex.vhost.name, error=error)

        journal = Journal(journal_path(str(data_dir), ex.vhost.name, "exchange", ex.name),
                          failed)
    cache = Cache(settings.size if settings.size is not None else DEFAULT_SIZE,
                  settings.ttl_ms, journal)
    return ExchangeDedup(cache, settings.header)


# --- queues --------------------------------------------------------------------

class QueueDedup:
    """The header values of the messages in one deduplicating queue."""

    __slots__ = ("cache", "header", "keys")

    def __init__(self, settings: Settings) -> None:
        self.cache = Cache(settings.size, settings.ttl_ms)
        self.header = settings.header
        self.keys: dict[int, Key] = {}  # msg_id -> its key, while it is in the queue

    def duplicate(self, msg: Message) -> bool:
        """Whether msg duplicates a message in the queue; if not its value is kept."""
        key = _header_key(msg.properties, self.header)
        if key is None:
            return False
        if self.cache.seen(key):
            return True
        self.keys[msg.msg_id] = key
        return False

    def left(self, msgs: Any) -> None:
        keys = self.keys
        if keys:
            for msg in msgs:
                key = keys.pop(msg.msg_id, None)
                if key is not None:
                    self.cache.discard(key)

    def clear(self) -> None:
        self.keys.clear()
        self.cache.clear()


def for_queue(arguments: dict[str, Any]) -> QueueDedup | None:
    """The deduplication of a new queue (None unless x-message-deduplication is true);
    406 for bad arguments."""
    if ARGUMENT not in arguments or not enabled(arguments):
        return None
    return QueueDedup(Settings(arguments, size_required=False))
