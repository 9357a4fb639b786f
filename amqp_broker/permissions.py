"""Who may do what: users, per-vhost permissions and topic permissions, and the checks
the method handlers call (RabbitMQ's internal auth backend and rabbit_access_control).

Permissions are three regular expressions per (user, vhost), configure, write and
read, searched (not anchored, as Erlang's re:run) in the resource name; an empty
expression means "^$", which matches no resource a client can name. Topic
permissions are two expressions (write, read) per (user, vhost, exchange), searched in
the routing key after "{username}" and "{vhost}" in them are replaced; they apply
only to topic exchanges, and a user with none for an exchange may use every key.
The default exchange "" is checked as "amq.default". A user may open a connection to
a vhost when it has any permission entry there (even three empty expressions).

Which checks each AMQP method needs (RabbitMQ 3.10's rabbit_channel), in the order
RabbitMQ makes them; "Q"/"X" is the resource named in the method, checked with
`check_resource(ctx, vhost, "queue"|"exchange", name, perm)`; topic checks with
`check_topic(ctx, vhost, exchange, routing_key, perm)`:

=====================  ==================================================================
connection.open        `check_vhost_access` (530 NOT_ALLOWED) after "vhost x not found"
exchange.declare       not passive: "" refused first (403 default exchange), then configure
                       on X; when X is new and has an alternate-exchange argument AE: read on
                       X, then write on AE. passive: no permission check (3.x; 4.x wants any)
exchange.delete        "" refused, then amq.* refused ("deletion of system exchange ..."),
                       then configure on X
exchange.bind/unbind   write on the destination X, then "" refused (either end), then read on
                       the source X, then, when the source exists, topic read on the source
                       with the binding key
queue.declare          not passive: the name is made first (server-named "amq.gen-..." too),
                       then configure on Q; when Q is new and has x-dead-letter-exchange DLX:
                       read on Q, then write on DLX. passive: no permission check;
                       "amq.rabbitmq.reply-to" never
queue.bind/unbind      write on Q, then "" refused, then read on X, then (X exists) topic read
                       on X with the binding key
queue.purge            read on Q
queue.delete           configure on Q
basic.publish          write on X ("" as amq.default), then 404 if X is missing, then 403
                       "cannot publish to internal exchange", then topic write on X with the
                       routing key, then the user_id property (`check_user_id`, 406)
basic.get              read on Q
basic.consume          read on Q; "amq.rabbitmq.reply-to" needs nothing
basic.ack/nack/reject, basic.qos/cancel/recover, channel.*, tx.*, confirm.*: nothing
=====================  ==================================================================

The hot path: a UserContext (one per connection) remembers each check that passed, so
a publisher checks its exchange with one set lookup; any change to users or
permissions bumps a generation number that empties those memories.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .protocol.errors import ACCESS_REFUSED, NOT_ALLOWED, PRECONDITION_FAILED, AMQPError
from .users import DefinitionError, NotFoundError, User

KINDS = ("exchange", "queue")
PERMS = ("configure", "write", "read")
TOPIC_PERMS = ("write", "read")
FULL = ".*"
_CACHE_MAX = 4096  # remembered passed checks per connection before starting afresh


def compile_pattern(pattern: str, what: str) -> re.Pattern[bytes]:
    """An expression as RabbitMQ applies it: "" means "^$"; matched on the bytes of
    the name, as Erlang's re without the unicode option."""
    if not isinstance(pattern, str):
        raise DefinitionError(f"{what}: a permission must be a string, not {pattern!r}")
    try:
        return re.compile((pattern or "^$").encode("utf-8", "surrogateescape"))
    except re.error as exc:
        raise DefinitionError(f"{what}: invalid regular expression '{pattern}': {exc}") \
            from None


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Permission:
    """One user's configure/write/read expressions in one vhost, compiled once."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str
    _compiled: dict[str, re.Pattern[bytes]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        what = f"permissions of user '{self.user}' in vhost '{self.vhost}'"
        compiled = {perm: compile_pattern(getattr(self, perm), what) for perm in PERMS}
        object.__setattr__(self, "_compiled", compiled)

    def allows(self, perm: str, name: str) -> bool:
        pattern = getattr(self, perm)
        if pattern == FULL:
            return True
        return self._compiled[perm].search(_name_bytes(name)) is not None

    def to_definition(self) -> dict[str, Any]:
        return {"user": self.user, "vhost": self.vhost, "configure": self.configure,
                "write": self.write, "read": self.read}


@dataclass(frozen=True)
class TopicPermission:
    """One user's write/read expressions for routing keys on one topic exchange."""

    user: str
    vhost: str
    exchange: str
    write: str
    read: str

    def __post_init__(self) -> None:
        what = (f"topic permissions of user '{self.user}' on exchange '{self.exchange}' "
                f"in vhost '{self.vhost}'")
        for perm in TOPIC_PERMS:
            compile_pattern(self.expanded(perm), what)

    def expanded(self, perm: str) -> str:
        """The expression with {username} and {vhost} replaced (RabbitMQ's variable map
        of an AMQP 0-9-1 connection); the values are not escaped, as there."""
        pattern: str = getattr(self, perm) or "^$"
        return pattern.replace("{username}", self.user).replace("{vhost}", self.vhost)

    def allows(self, perm: str, routing_key: str) -> bool:
        pattern = self.expanded(perm)
        if pattern == FULL:
            return True
        return _compiled(pattern).search(_name_bytes(routing_key)) is not None

    def to_definition(self) -> dict[str, Any]:
        return {"user": self.user, "vhost": self.vhost, "exchange": self.exchange,
                "write": self.write, "read": self.read}


_pattern_cache: dict[str, re.Pattern[bytes]] = {}


def _compiled(pattern: str) -> re.Pattern[bytes]:
    found = _pattern_cache.get(pattern)
    if found is None:
        if len(_pattern_cache) > 1024:
            _pattern_cache.clear()
        found = _pattern_cache[pattern] = re.compile(pattern.encode("utf-8", "surrogateescape"))
    return found


class NamedExchange(Protocol):
    name: str
    type_name: str


class AccessControl:
    """The internal user database: users, permissions and topic permissions. Every
    change is written through `save(key, record or None)` (the broker's durable
    definitions) and bumps `generation`."""

    def __init__(self, vhosts: Container[str],
                 save: Callable[[str, dict[str, Any] | None], None] | None = None) -> None:
        self.vhosts = vhosts  # names of the vhosts that exist (the broker's dict)
        self.save: Callable[[str, dict[str, Any] | None], None] = save or _no_save
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}  # (user, vhost)
        # (user, vhost) -> exchange -> topic permission
        self.topic_permissions: dict[tuple[str, str], dict[str, TopicPermission]] = {}
        self.generation = 0

    # --- users ---------------------------------------------------------------
    def put_user(self, user: User) -> None:
        """Create or replace a user (its permissions stay)."""
        if not user.name:
            raise DefinitionError("a user needs a name")
        self.users[user.name] = user
        self.save(user_key(user.name), user.to_record())
        self.generation += 1

    def delete_user(self, name: str) -> None:
        """Remove a user with its permissions and topic permissions."""
        if self.users.pop(name, None) is None:
            raise NotFoundError(f"no user '{name}'")
        self.save(user_key(name), None)
        for user, vhost in [k for k in self.permissions if k[0] == name]:
            self._drop_permission(user, vhost)
        for user, vhost in [k for k in self.topic_permissions if k[0] == name]:
            self._drop_topic_permissions(user, vhost, None)
        self.generation += 1

    def authenticate(self, name: str, password: str) -> str | None:
        """None when the password is right, else the reason (for the log only)."""
        user = self.users.get(name)
        if password == "":
            # as rabbit_auth_backend_internal: a blank password never logs in
            return (f"user '{name}' attempted to log in with a blank password, which is "
                    "prohibited by the internal authN backend")
        if user is None or not user.check_password(password):
            return f"user '{name}' - invalid credentials"
        return None

    # --- permissions ---------------------------------------------------------
    def _require(self, user: str, vhost: str) -> None:
        if user not in self.users:
            raise NotFoundError(f"no user '{user}'")
        if vhost not in self.vhosts:
            raise NotFoundError(f"no vhost '{vhost}'")

    def set_permissions(self, user: str, vhost: str, configure: str, write: str,
                        read: str) -> Permission:
        self._require(user, vhost)
        perm = Permission(user, vhost, configure, write, read)
        self.permissions[(user, vhost)] = perm
        self.save(permission_key(vhost, user), {"kind": "permission", **perm.to_definition()})
        self.generation += 1
        return perm

    def clear_permissions(self, user: str, vhost: str) -> None:
        self._require(user, vhost)
        self._drop_permission(user, vhost)
        self.generation += 1

    def _drop_permission(self, user: str, vhost: str) -> None:
        if self.permissions.pop((user, vhost), None) is not None:
            self.save(permission_key(vhost, user), None)

    def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str,
                              read: str) -> TopicPermission:
        self._require(user, vhost)
        perm = TopicPermission(user, vhost, exchange, write, read)
        self.topic_permissions.setdefault((user, vhost), {})[exchange] = perm
        self.save(topic_permission_key(vhost, user, exchange),
                  {"kind": "topic_permission", **perm.to_definition()})
        self.generation += 1
        return perm

    def clear_topic_permissions(self, user: str, vhost: str, exchange: str | None = None) -> None:
        """Clear one exchange's topic permissions, or all of the user's in the vhost."""
        self._require(user, vhost)
        self._drop_topic_permissions(user, vhost, exchange)
        self.generation += 1

    def _drop_topic_permissions(self, user: str, vhost: str, exchange: str | None) -> None:
        by_exchange = self.topic_permissions.get((user, vhost), {})
        for name in [exchange] if exchange is not None else list(by_exchange):
            if by_exchange.pop(name, None) is not None:
                self.save(topic_permission_key(vhost, user, name), None)
        if not by_exchange:
            self.topic_permissions.pop((user, vhost), None)

    def forget_vhost(self, vhost: str) -> None:
        """A vhost is deleted: its permissions and topic permissions go with it."""
        for user, v in [k for k in self.permissions if k[1] == vhost]:
            self._drop_permission(user, v)
        for user, v in [k for k in self.topic_permissions if k[1] == vhost]:
            self._drop_topic_permissions(user, v, None)
        self.generation += 1

    def list_permissions(self) -> Iterator[Permission]:
        return iter(list(self.permissions.values()))

    def list_topic_permissions(self) -> Iterator[TopicPermission]:
        return iter([p for by_x in self.topic_permissions.values() for p in by_x.values()])

    # --- recovery ------------------------------------------------------------
    def restore(self, record: dict[str, Any]) -> None:
        """One stored record (kind user, permission or topic_permission), not saved
        again. Raises DefinitionError for a record it cannot use."""
        kind = record.get("kind")
        if kind == "user":
            user = User.from_record(record)
            self.users[user.name] = user
        elif kind == "permission":
            perm = Permission(record["user"], record["vhost"], record["configure"],
                              record["write"], record["read"])
            self.permissions[(perm.user, perm.vhost)] = perm
        elif kind == "topic_permission":
            tperm = TopicPermission(record["user"], record["vhost"], record["exchange"],
                                    record["write"], record["read"])
            self.topic_permissions.setdefault((tperm.user, tperm.vhost), {})[
                tperm.exchange] = tperm
        self.generation += 1

    # --- contexts ------------------------------------------------------------
    def context(self, username: str) -> UserContext:
        """What a connection checks its methods against, made after login."""
        user = self.users.get(username)
        return UserContext(self, username, user.tags if user is not None else ())


def _no_save(_key: str, _record: dict[str, Any] | None) -> None:
    return None


def user_key(name: str) -> str:
    return f"user\x00{name}"


def permission_key(vhost: str, user: str) -> str:
    return f"perm\x00{vhost}\x00{user}"


def topic_permission_key(vhost: str, user: str, exchange: str) -> str:
    return f"topicperm\x00{vhost}\x00{user}\x00{exchange}"


class UserContext:
    """One authenticated user as a connection sees it, with the checks that passed."""

    __slots__ = ("access", "username", "tags", "generation", "passed")

    def __init__(self, access: AccessControl, username: str, tags: tuple[str, ...]) -> None:
        self.access = access
        self.username = username
        self.tags = tags
        self.generation = access.generation
        self.passed: set[tuple[str, str, str, str]] = set()

    def _fresh(self) -> None:
        if self.generation != self.access.generation or len(self.passed) > _CACHE_MAX:
            self.generation = self.access.generation
            self.passed.clear()
            user = self.access.users.get(self.username)
            self.tags = user.tags if user is not None else ()


def check_resource(ctx: UserContext, vhost: str, kind: str, name: str, perm: str) -> None:
    """403 ACCESS_REFUSED unless the user has perm (configure, write, read) on the
    exchange or queue `name` in vhost; "" is the default exchange, amq.default."""
    key = (vhost, kind, name, perm)
    if key in ctx.passed and ctx.generation == ctx.access.generation:
        return
    ctx._fresh()
    if kind == "exchange" and name == "":
        name = "amq.default"
    grant = ctx.access.permissions.get((ctx.username, vhost))
    if grant is None or ctx.username not in ctx.access.users or not grant.allows(perm, name):
        raise AMQPError(ACCESS_REFUSED, f"access to {kind} '{name}' in vhost '{vhost}' "
                        f"refused for user '{ctx.username}'")
    ctx.passed.add(key)


def check_topic(ctx: UserContext, vhost: str, exchange: NamedExchange, routing_key: str,
                perm: str) -> None:
    """403 ACCESS_REFUSED unless the user's topic permissions on this exchange (a
    topic exchange; others are never checked) allow perm (write, read) on the key."""
    if exchange.type_name != "topic":
        return
    by_exchange = ctx.access.topic_permissions.get((ctx.username, vhost))
    if not by_exchange:
        return
    key = (vhost, "\x00topic\x00" + exchange.name, routing_key, perm)
    if key in ctx.passed and ctx.generation == ctx.access.generation:
        return
    ctx._fresh()
    tperm = by_exchange.get(exchange.name)
    if tperm is not None and not tperm.allows(perm, routing_key):
        raise AMQPError(ACCESS_REFUSED, f"access to topic '{routing_key}' in exchange "
                        f"'{exchange.name}' in vhost '{vhost}' refused for user "
                        f"'{ctx.username}'")
    ctx.passed.add(key)


# the argument of a new exchange or queue that names another exchange it will publish to
SIDE_EXCHANGE = {"exchange": "alternate-exchange", "queue": "x-dead-letter-exchange"}


def check_declare(ctx: UserContext, vhost: str, kind: str, name: str, new: bool,
                  arguments: Mapping[str, Any]) -> None:
    """A declare's checks (AMQP or the management API), in RabbitMQ's order: configure
    on the exchange or queue; a new one whose alternate or dead-letter exchange is set
    also needs read on itself and write on that exchange."""
    check_resource(ctx, vhost, kind, name, "configure")
    other = arguments.get(SIDE_EXCHANGE[kind]) if new else None
    if isinstance(other, bytes):
        other = other.decode("utf-8", "surrogateescape")
    if isinstance(other, str):
        check_resource(ctx, vhost, kind, name, "read")
        check_resource(ctx, vhost, "exchange", other, "write")


def check_binding(ctx: UserContext, vhost: str, exchanges: Mapping[str, NamedExchange],
                  dest_kind: str, dest: str, source: str, routing_key: str) -> None:
    """A bind or unbind's checks (AMQP or the management API), in RabbitMQ's order:
    write on the destination, the default exchange refused at either end, read on the
    source, then topic read on the source when it exists."""
    check_resource(ctx, vhost, dest_kind, dest, "write")
    if source == "" or (dest == "" and dest_kind == "exchange"):
        raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
    check_resource(ctx, vhost, "exchange", source, "read")
    ex = exchanges.get(source)
    if ex is not None:
        check_topic(ctx, vhost, ex, routing_key, "read")


def can_access_vhost(access: AccessControl, username: str, vhost: str) -> bool:
    """True when the vhost exists and the user has a permission entry in it."""
    return (vhost in access.vhosts and username in access.users
            and (username, vhost) in access.permissions)


def check_vhost_access(access: AccessControl, username: str, vhost: str) -> None:
    """530 NOT_ALLOWED for connection.open to a vhost the user has no permissions in."""
    if not can_access_vhost(access, username, vhost):
        raise AMQPError(NOT_ALLOWED, f"access to vhost '{vhost}' refused for user '{username}'")


def check_user_id(ctx: UserContext, user_id: str | None) -> None:
    """406 when a published message's user_id property is not the connection's user
    (RabbitMQ's check_user_id_header); users tagged impersonator may set any."""
    if user_id is None or user_id == ctx.username:
        return
    ctx._fresh()
    if "impersonator" in ctx.tags:
        return
    raise AMQPError(PRECONDITION_FAILED, f"user_id property set to '{user_id}' but "
                    f"authenticated user was '{ctx.username}'")
