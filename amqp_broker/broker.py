"""The broker: virtual hosts, the message store, users, and broker-wide counters.

Nothing here touches sockets; server.py runs connections against a Broker.

Vhosts, users, permissions, policies and parameters are durable definitions like
exchanges and queues (store keys "vhost\x00NAME", "user\x00NAME",
"perm\x00VHOST\x00USER", "topicperm\x00...", "policy\x00...", "param\x00...",
"gparam\x00NAME"). On a first start (a store with no vhost or user yet) the configured
vhosts and the default user (administrator, full permissions on them) are created, as
RabbitMQ's default data, unless definitions are loaded at start-up, which then replace
the default user. A vhost named by --vhosts that does not exist is created at each start.
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Protocol

import structlog

from . import delayed, policies, reply_to, tables
from .alarms import MemoryAlarm, trim_memory
from .config import Config
from .counters import BrokerCounters, Count, channel_counts
from .definitions import RuntimeParameters, VHostInfo, vhost_key
from .exchanges.topic import Finished, TopicRouting
from .permissions import FULL, AccessControl, UserContext
from .protocol.fast import shortstr
from .queue import MESSAGE_OVERHEAD, PAGEABLE, STORED, Message, Queue
from .storage import MemoryStore, MessageStore
from .storage.base import RecoveredMessage
from .storage.spool import SegmentLog, SpoolRoot
from .users import DefinitionError, NotFoundError, User
from .vhost import VHost, binding_store_key

IDENTITY_KINDS = ("vhost", "user", "permission", "topic_permission", "policy", "parameter",
                  "global_parameter")


def is_loopback(host: str) -> bool:
    if not host:
        return True  # in-process tests have no peer
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


class Session(Protocol):
    """What the broker knows of a client connection (the session layer implements it):
    enough to account memory, apply timeouts and end alarms, nothing more."""

    def held_bytes(self) -> int:
        """Bytes it holds in buffers and unacknowledged deliveries."""

    def check_consumer_timeouts(self, now: float, timeout: float) -> None:
        """Close its channels whose oldest unacked delivery is older than timeout
        (seconds, 0: none), or than its queue's own consumer timeout."""

    def alarm_cleared(self) -> None:
        """Every resource alarm cleared."""

    @property
    def user(self) -> str:
        """The user it logged in as."""

    @property
    def vhost(self) -> VHost:
        """The vhost it opened."""

    def force_close(self, text: str = ...) -> None:
        """Close it with 320 CONNECTION_FORCED and this text."""


class Broker:
    # the counters as Broker attributes, for readers (the message path uses self.counters)
    published = Count("received")
    unroutable = Count("unroutable")
    channel_errors = Count("channel_errors")
    connections_opened = Count("connections_opened")
    connections_closed = Count("connections_closed")
    channels_opened = Count("channels_opened")
    channels_closed = Count("channels_closed")
    queues_declared = Count("queues_declared")
    queues_created = Count("queues_created")
    queues_deleted = Count("queues_deleted")

    def __init__(self, config: Config, store: MessageStore | None = None) -> None:
        self.config = config
        self.log = structlog.get_logger("amqp_broker")
        self.store: MessageStore = store if store is not None else MemoryStore()
        self.cluster_name = f"amqp-broker@{socket.gethostname()}"
        self.vhosts: dict[str, VHost] = {}
        self.memory_alarm = MemoryAlarm(config.memory_high_water)
        self.vhost_info: dict[str, VHostInfo] = {}  # description, tags of each vhost
        self.access = AccessControl(self.vhosts, self.save_definition)  # users, permissions
        self.runtime = RuntimeParameters(self.save_definition)  # policies, parameters
        self.runtime.changed = functools.partial(policies.reapply, self)
        self.connections: set[Session] = set()  # open client sessions (connections)
        # plain counters, read by the metrics collector and the management API when asked
        self.counters = BrokerCounters()
        self._msg_id = 0
        # no definition is written until the store is open (recover) and while recovering
        self._recovering = True
        for name in (config.default_vhost, *config.vhosts):
            self.add_vhost(name, "Default virtual host" if name == config.default_vhost else "")
        self._add_default_user()
        self._recovering = False
        self.started = time.time()
        self.alarms: set[str] = set()  # resource alarms on: "memory", "disk"
        # the store holds more unsynced bodies than max_unsynced_bytes: connections that
        # publish wait for the next group commit before more of their input is read
        self.store_backlogged = False
        self._unsynced_limit = config.max_unsynced_bytes
        self.replies = reply_to.Registry()  # direct reply-to consumers
        self._next_ack_check = 0.0
        # queues to dispatch again soon (paged-out reads are bounded per call); the
        # I/O shell sets on_redispatch to schedule run_redispatch
        self.redispatch: set[Queue] = set()
        # topic matches run a slice per redispatch turn (dead letters), and their results
        self.routing: deque[tuple[TopicRouting, Callable[[], None]]] = deque()
        self.finished_routes: Finished = {}
        self.on_redispatch: Callable[[], None] = _noop
        self._contained_logged: dict[str, float] = {}  # kind of work -> last logged
        # definition key -> store token of its latest write, until that is on disk
        self.def_tokens: dict[str, int] = {}
        # stored messages of queues whose definition was not recovered, by store key
        self.orphans: dict[str, list[RecoveredMessage]] = {}
        self._read_only = False  # recover(startup=False): nothing is written
        self.delayed = delayed.Scheduler(self)  # x-delayed-message exchanges' messages
        self._spool_root: SpoolRoot | None = None  # queues' backlogs on disk, made on demand
        # more than half the memory watermark is held: queues spool every new backlog
        self.spool_all = False

    # --- identity and auth ---------------------------------------------------
    def next_msg_id(self) -> int:
        self._msg_id += 1
        return self._msg_id

    def authenticate(self, user: str, password: str, peer_host: str) -> str | None:
        """None when the login is allowed, else the reason it is refused (for the log;
        the client is only told that the login was refused)."""
        refusal = self.access.authenticate(user, password)
        if refusal is None and user in self.config.loopback_users and not is_loopback(
                peer_host):
            refusal = f"user '{user}' can only connect via localhost"
        self.counters.auth_attempts += 1
        self.counters.auth_failed += refusal is not None
        return refusal

    def authenticate_external(self, username: str, peer_host: str) -> str | None:
        """The EXTERNAL mechanism (a verified TLS client certificate named the user):
        None when that user exists (no password involved), else the reason."""
        refusal = None
        if username not in self.access.users:
            refusal = f"user '{username}' - invalid credentials"
        elif username in self.config.loopback_users and not is_loopback(peer_host):
            refusal = f"user '{username}' can only connect via localhost"
        self.counters.auth_attempts += 1
        self.counters.auth_failed += refusal is not None
        return refusal

    def user_context(self, username: str) -> UserContext:
        """What a logged-in connection checks permissions against (permissions.py)."""
        return self.access.context(username)

    def _add_default_user(self) -> None:
        """The default user (guest/guest unless configured): administrator, with full
        permissions on every configured vhost."""
        cfg = self.config
        if not cfg.default_user:
            return
        self.access.put_user(User.with_password(cfg.default_user, cfg.default_pass,
                                                ("administrator",)))
        for name in self.vhosts:
            self.access.set_permissions(cfg.default_user, name, FULL, FULL, FULL)

    # --- vhosts --------------------------------------------------------------------
    def add_vhost(self, name: str, description: str = "", tags: Collection[str] = (),
                  default_queue_type: str | None = None) -> VHost:
        """Create a vhost, or update the description and tags of an existing one."""
        if not isinstance(name, str) or not name:
            raise DefinitionError("a vhost needs a name")
        info = VHostInfo(name, description, tuple(tags), default_queue_type)
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(self, name)
            if not self._recovering:  # the start-up line names the vhosts it starts with
                self.log.info("vhost created", vhost=name)
        elif name in self.vhost_info and default_queue_type is None:
            info.default_queue_type = self.vhost_info[name].default_queue_type
        self.vhost_info[name] = info
        self.save_definition(vhost_key(name), info.to_record())
        self.access.generation += 1
        return vhost

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost with its permissions, policies, parameters, exchanges, queues
        and stored messages; connections to it are closed with 320 CONNECTION_FORCED."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            raise NotFoundError(f"no vhost '{name}'")
        self.access.forget_vhost(name)  # first, as RabbitMQ: no new connections to it
        self.runtime.forget_vhost(name)
        for session in list(self.connections):
            if session.vhost is vhost:
                session.force_close(f"vhost '{name}' is deleted")
        for q in list(vhost.queues.values()):
            vhost.remove_queue(q)
        for ex in list(vhost.exchanges.values()):
            if ex.name and not ex.name.startswith("amq."):
                vhost.delete_exchange(ex.name, False)
        for ex in list(vhost.exchanges.values()):  # amq.* to amq.* bindings
            if ex is not vhost.default_exchange:
                for dest, key, args in list(ex.table.bindings()):
                    vhost.unbind(ex, dest, key, args)  # type: ignore[arg-type]
        for store_key in [k for k in self.orphans if k.partition("\x00")[0] == name]:
            del self.orphans[store_key]
            self.store.delete_queue(store_key)
        del self.vhosts[name]
        self.vhost_info.pop(name, None)
        self.save_definition(vhost_key(name), None)
        self.log.info("vhost deleted", vhost=name)

    def delete_user(self, name: str) -> None:
        """Delete a user with its permissions; its connections are closed with 320."""
        self.access.delete_user(name)
        for session in list(self.connections):
            if session.user == name:
                session.force_close(f"user '{name}' is deleted")

    # --- definitions documents ---------------------------------------------------------
    def import_definitions(self, doc: dict[str, Any], source: str = "definitions") -> dict[
            str, int]:
        """Apply RabbitMQ's definitions JSON (parsed); DefinitionsError names a bad entry."""
        from .definitions import import_definitions
        return import_definitions(self, doc, source)

    def export_definitions(self) -> dict[str, Any]:
        """Everything durable and configured, as RabbitMQ's definitions JSON."""
        from .definitions import export_definitions
        return export_definitions(self)

    # --- durable definitions -------------------------------------------------
    def save_definition(self, key: str, record: dict[str, Any] | None) -> None:
        if not self._recovering and not self._read_only:
            self.def_tokens[key] = self.store.save_definition(
                key, None if record is None else tables.to_json(record))

    def definition_token(self, *keys: str) -> int:
        """The store token a reply about these definitions waits for: that of their
        latest write, or 0 once it is on disk (a redeclare by anyone waits for the
        write of the first declare; an unrelated pending write delays nobody)."""
        tokens = self.def_tokens
        token = max(tokens.get(key, 0) for key in keys) if tokens else 0
        return token if token > self.store.synced_token else 0

    def _prune_definition_tokens(self) -> None:
        synced = self.store.synced_token
        self.def_tokens = {k: t for k, t in self.def_tokens.items() if t > synced}

    def body_of(self, msg: Message) -> bytes:
        """The message body, read back from the store when it was paged out."""
        return msg.body if msg.body is not None else self.store.read_body(msg.msg_id)

    def persist(self, msg: Message, body: bytes, queues: Collection[Queue], exchange: str,
                routing_key: str) -> int:
        """Store a persistent message once for all its durable queues; returns the
        store's sync token (0 when no queue is durable)."""
        durable = [q.store_key for q in queues if q.persists]
        if not durable:
            return 0
        token = self.store.publish(msg.msg_id, exchange, routing_key, msg.properties, body,
                                   durable)
        msg.stored = PAGEABLE if len(durable) == len(queues) else STORED
        if self._unsynced_limit and not self.store_backlogged and (
                self.store.unsynced_bytes > self._unsynced_limit):
            self.store_backlogged = True
            self.store.on_sync(self._store_caught_up)
        return token

    def set_spool_all(self, on: bool) -> None:
        """Above half the memory watermark every queue spools its new backlog."""
        if on != self.spool_all:
            self.spool_all = on
            for q in self.queues():
                q.set_head_bounds(on)

    def head_limits(self) -> tuple[int, int]:
        """Bounds of a queue's in-memory head for this memory watermark: the head's
        bodies at most 1/16 of it, and as many messages as 1/16 of it covers."""
        watermark = self.memory_alarm.watermark
        return max(64, watermark // (16 * MESSAGE_OVERHEAD)), max(64 * 1024, watermark // 16)

    def open_spool(self) -> SegmentLog:
        """A new spool for a queue's backlog (storage/spool.py): under the data dir,
        or a temporary directory when messages are kept in memory only."""
        root = self._spool_root
        if root is None:
            root = self._spool_root = self._new_spool_root()
        return root.open()

    def _new_spool_root(self) -> SpoolRoot:
        """<data dir>/spool, emptied (what a broker that did not stop cleanly left
        there is garbage), or a new temporary directory without a data dir."""
        if self.config.data_dir:
            return SpoolRoot(os.path.join(self.config.data_dir, "spool"))
        return SpoolRoot(tempfile.mkdtemp(prefix="amqp-broker-spool-"))

    def close_spools(self) -> None:
        """The broker stops: spooled backlogs are RAM moved to disk, gone with it."""
        if self._spool_root is not None:
            self._spool_root.remove()
            self._spool_root = None

    def _store_caught_up(self, _token: int, _ok: bool) -> None:
        self.store_backlogged = False

    def recover(self, startup: bool = True) -> dict[str, Any]:
        """Rebuild durable definitions and queue contents from the store; then (startup)
        store the default data of a first start, create missing configured vhosts and
        import config.load_definitions (DefinitionsError if they are bad). Without
        startup nothing is written to the store (export-definitions)."""
        started = time.monotonic()
        recovery = self.store.open()
        if startup and self.config.data_dir:
            self._spool_root = self._new_spool_root()  # a crash's leftovers go now
        self._recovering = True
        self._read_only = not startup
        try:
            defs = [tables.from_json(rec) for rec in recovery.definitions.values()]
            self._rekey_bindings(recovery.definitions, defs)
            stored_vhosts = self._restore_identity(defs)
            for rec in defs:
                if rec.get("kind") == "exchange":
                    vhost = self.vhosts.get(rec["vhost"])
                    if vhost is not None and rec["name"] not in vhost.exchanges:
                        vhost.declare_exchange(rec["name"], rec["type"], False, True,
                                               rec["auto_delete"], rec["internal"],
                                               rec["arguments"])
            queues: dict[str, Queue] = {}
            for rec in defs:
                if rec.get("kind") == "queue":
                    vhost = self.vhosts.get(rec["vhost"])
                    if vhost is not None:
                        q, _ = vhost.declare_queue(rec["name"], False, True, False,
                                                   rec["auto_delete"], rec["arguments"], None)
                        queues[q.store_key] = q
            for rec in defs:
                if rec.get("kind") == "binding":
                    vhost = self.vhosts.get(rec["vhost"])
                    if vhost is None:
                        continue
                    source = vhost.exchanges.get(rec["source"])
                    dest: Any = (vhost.queues if rec["destination_kind"] == "queue"
                                 else vhost.exchanges).get(rec["destination"])
                    if source is not None and dest is not None:
                        vhost.bind(source, dest, rec["routing_key"], rec["arguments"])
        finally:
            self._recovering = False
        messages = 0
        for store_key, entries in recovery.queues.items():
            found = queues.get(store_key)
            if found is None:
                # Stored messages are never deleted because their definition is missing
                # (a vhost not served now, a corrupt definition record): keep them in
                # the store and bring them back when a durable queue of that name is
                # declared again.
                self.orphans[store_key] = entries
                vhost_name, _, queue_name = store_key.partition("\x00")
                self.log.warning("stored messages kept for a queue with no definition",
                                 vhost=vhost_name, queue=queue_name, messages=len(entries))
                continue
            messages += self._restore(found, entries)
        self._msg_id = max(self._msg_id, recovery.next_msg_id - 1)
        if startup:
            self._start_definitions(stored_vhosts)
            self.delayed.open(getattr(self.store, "root", None))  # after the exchanges
        summary = {"queues": len(queues), "messages": messages,
                   "orphaned_queues": len(self.orphans),
                   "skipped_records": recovery.skipped_records,
                   "seconds": round(time.monotonic() - started, 3)}
        if messages:
            del recovery
            _release_memory()
        return summary

    def _restore_identity(self, defs: list[dict[str, Any]]) -> set[str] | None:
        """Vhosts (before their exchanges and queues), users, permissions, policies and
        parameters from the store, in place of the configured defaults; the names of the
        stored vhosts, or None for a store that has no vhost or user yet (a first start,
        or a data directory written before vhosts and users were stored)."""
        records = [rec for rec in defs if rec.get("kind") in IDENTITY_KINDS]
        if not any(rec["kind"] in ("vhost", "user") for rec in records):
            return None
        self.access.users.clear()
        self.access.permissions.clear()
        self.access.topic_permissions.clear()
        stored: set[str] = set()
        for rec in sorted(records, key=lambda r: r["kind"] != "vhost"):
            try:
                if rec["kind"] == "vhost":
                    info = VHostInfo.from_record(rec)
                    self.add_vhost(info.name, info.description, info.tags,
                                   info.default_queue_type)
                    stored.add(info.name)
                elif rec["kind"] in ("user", "permission", "topic_permission"):
                    self.access.restore(rec)
                else:
                    self.runtime.restore(rec)
            except (DefinitionError, KeyError, TypeError, ValueError) as exc:
                self.log.warning("stored definition skipped", kind=rec.get("kind"),
                                 name=rec.get("name", rec.get("user")), error=str(exc))
        return stored

    def _start_definitions(self, stored_vhosts: set[str] | None) -> None:
        """After recovery: on a first start store the configured vhosts and the default
        user (which definitions loaded at start-up replace, as in RabbitMQ); later, create
        the configured vhosts that do not exist yet, the default user (if it exists)
        getting full permissions on them. Then import config.load_definitions."""
        cfg = self.config
        load = cfg.load_definitions
        default = self.access.users.get(cfg.default_user)
        if stored_vhosts is None:
            for info in list(self.vhost_info.values()):
                self.add_vhost(info.name, info.description, info.tags,
                               info.default_queue_type)
            if default is not None and load:
                self.access.delete_user(default.name)
            elif default is not None:
                self.access.put_user(default)
                for perm in list(self.access.list_permissions()):
                    self.access.set_permissions(perm.user, perm.vhost, perm.configure,
                                                perm.write, perm.read)
        else:
            for name in (cfg.default_vhost, *cfg.vhosts):
                if name not in stored_vhosts:
                    self.add_vhost(name)
                    if default is not None:
                        self.access.set_permissions(default.name, name, FULL, FULL, FULL)
        if load:
            from .definitions import load_file
            for source, doc in load_file(load):
                self.import_definitions(doc, source)

    def _rekey_bindings(self, stored: dict[str, Any], defs: list[dict[str, Any]]) -> None:
        """Move binding definitions stored under an older key format to the current
        one, so a later unbind deletes the record it is meant to."""
        for (key, raw), rec in zip(list(stored.items()), defs, strict=True):
            if rec.get("kind") != "binding":
                continue
            try:
                current = binding_store_key(rec["vhost"], rec["source"], rec["destination_kind"],
                                            rec["destination"], rec["routing_key"],
                                            rec["arguments"])
            except (KeyError, TypeError, ValueError):
                continue
            if current != key:
                self.store.save_definition(key, None)
                self.store.save_definition(current, raw)

    def _restore(self, q: Queue, entries: list[RecoveredMessage]) -> int:
        """Put recovered messages back in their queue, in publish order (past the
        queue's head bound they go to its spool)."""
        shared: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        for e in entries:
            raw = shared.get((e.exchange, e.routing_key))
            if raw is None:
                raw = shared[(e.exchange, e.routing_key)] = (
                    shortstr(e.exchange), shortstr(e.routing_key))
            msg = Message(e.msg_id, raw[0], raw[1], e.properties, None, e.body_size)
            msg.stored = PAGEABLE
            q.restore(msg, e.delivered)
        return len(entries)

    def adopt_orphans(self, q: Queue) -> None:
        """A durable queue was declared: take back messages stored for its name."""
        entries = self.orphans.pop(q.store_key, None)
        if entries:
            count = self._restore(q, entries)
            self.log.info("stored messages restored to a redeclared queue",
                          vhost=q.vhost.name, queue=q.name, messages=count)

    # --- lifecycle hooks -----------------------------------------------------
    def session_opened(self, session: Session) -> None:
        self.connections.add(session)
        self.counters.connections_opened += 1

    def session_closed(self, session: Session) -> bool:
        """Forget a session; False when it never opened (closed during the handshake)."""
        if session not in self.connections:
            return False
        self.connections.discard(session)
        self.counters.connections_closed += 1
        return True

    def retire_channel(self, ch: Any) -> None:
        """A channel closed: keep its counters in the totals, which never go down."""
        self.counters.channels_closed += 1
        retired = self.counters.retired
        for name, count in channel_counts(ch).items():
            retired[name] = retired.get(name, 0) + count

    def sweep(self, now: float) -> None:
        """Expire messages at queue heads, delete queues unused past x-expires, and
        close channels whose deliveries went unacknowledged past consumer_timeout."""
        if self.def_tokens:
            self._prune_definition_tokens()
        # every second, even with no broker-wide timeout: a queue may set its own
        # (x-consumer-timeout, the consumer-timeout policy key)
        if now >= self._next_ack_check:
            self._next_ack_check = now + 1.0
            self.contained("consumer timeout check", self._check_consumer_timeouts, now)
        for vhost in self.vhosts.values():
            for q in list(vhost.expiring_queues):
                self.contained("queue expiry", self._sweep_queue, q, now)

    def _sweep_queue(self, q: Queue, now: float) -> None:
        if q.deleted:
            q.vhost.expiring_queues.discard(q)
            return
        if q.may_expire:
            q.expire(now)
        expires = q.args.expires
        if (expires is not None and not q.consumers
                and now - q.last_used > expires / 1000):
            self.log.info("queue expired", queue=q.name, vhost=q.vhost.name)
            q.vhost.remove_queue(q)
        elif q.ttl is None and expires is None and not q.may_expire:
            q.vhost.expiring_queues.discard(q)

    def contained(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run work no client frame started (timers, redispatch): an error is logged
        with its traceback (once a minute per kind of work) and contained; it never
        takes the process down. Errors while handling a frame are translated by
        Connection.receive; store sync callbacks are guarded by the store and the gate."""
        try:
            fn(*args)
        except Exception:
            now = time.monotonic()
            if now - self._contained_logged.get(what, -60.0) >= 60.0:
                self._contained_logged[what] = now
                self.log.exception("internal error contained", during=what)

    def _check_consumer_timeouts(self, now: float) -> None:
        for session in list(self.connections):
            session.check_consumer_timeouts(now, self.config.consumer_timeout)

    def dispatch_soon(self, q: Queue) -> None:
        if not self.redispatch and not self.routing:
            self.on_redispatch()
        self.redispatch.add(q)

    def route_soon(self, task: TopicRouting, resume: Callable[[], None]) -> None:
        """A topic match no connection waits for (a dead letter's) needs more than one
        slice: run it a slice per redispatch turn, then resume() with it recorded in
        finished_routes."""
        if not self.redispatch and not self.routing:
            self.on_redispatch()
        self.routing.append((task, resume))

    def run_redispatch(self) -> None:
        queues, self.redispatch = self.redispatch, set()
        for q in queues:
            if not q.deleted and q.ready and q.consumers:
                self.contained("dispatch", q.dispatch)
        if self.routing:
            self.contained("dead-letter routing", self._route_slice)
            if self.routing or self.redispatch:
                self.on_redispatch()  # another turn

    def _route_slice(self) -> None:
        task, resume = self.routing.popleft()  # one that raises is dropped, not retried
        if not task.step():
            self.routing.appendleft((task, resume))
            return
        task.record(self.finished_routes)
        try:
            resume()
        finally:
            if not self.routing:
                self.finished_routes.clear()

    def queues(self) -> list[Queue]:
        return [q for vhost in self.vhosts.values() for q in vhost.queues.values()]

    # --- resource alarms -----------------------------------------------------
    def memory_held(self) -> int:
        """Bytes the broker holds for messages and clients, what the memory watermark is
        checked against: bodies in RAM and a per-message overhead of ready messages, an
        estimate for unacknowledged deliveries, what connections buffer in and out, and
        bodies the store has not fsync'd yet. Plain counters; no walk over messages."""
        held = self.store.unsynced_bytes + self.delayed.ram_bytes  # delayed, due soon
        for vhost in self.vhosts.values():
            for q in vhost.queues.values():
                held += q.ram_bytes + len(q.ready) * MESSAGE_OVERHEAD
        for session in self.connections:
            held += session.held_bytes()
        return held

    def alarm_reason(self) -> str:
        return "low on " + " and ".join(sorted(self.alarms))

    def set_alarms(self, alarms: set[str], **details: Any) -> None:
        """Raise or clear resource alarms. As RabbitMQ, raising one sends nothing: a
        connection that publishes meanwhile gets connection.blocked and is no longer
        read (Connection); once every alarm cleared, those get connection.unblocked
        and are read again."""
        before = self.alarms
        if alarms == before:
            return
        self.alarms = set(alarms)
        if alarms and not before:
            self.log.warning("resource alarm: blocking publishers", alarms=sorted(alarms),
                             **details)
        elif alarms:
            self.log.warning("resource alarms changed", alarms=sorted(alarms), **details)
        else:
            self.log.info("resource alarm cleared: unblocking publishers", **details)
            for session in list(self.connections):
                session.alarm_cleared()


def _noop() -> None:
    return None


def _release_memory() -> None:
    """Give the recovery's temporary objects back to the OS (glibc keeps freed heap)."""
    gc.collect()
    trim_memory()
