"""What the object endpoints share: acting in a vhost as the HTTP user, the way
RabbitMQ's management plugin does it through a direct AMQP channel
(rabbit_mgmt_util:direct_request and with_channel).

- `Actor` checks the user's AMQP permissions (configure, write, read, topic) as a
  channel of that user would, in the same order as the AMQP handlers.
- AMQP errors become RabbitMQ's HTTP replies: `direct_error` for declares, deletes and
  bindings (404 not_found with the text, 401 "Access refused." for 403/530, else 400
  bad_request with the text), `channel_error` for get (404 and 401 keep the "NAME - "
  prefix; other codes are 400 "CODE NAME - text"), `publish_error` for publish (every
  code 400 "CODE NAME - text").
- `wait_synced` holds a reply until the durable definitions it is about are on disk,
  as the AMQP handlers' replies do.
- Request body values are checked as RabbitMQ checks them (`parse_bool`); some of its
  errors carry an Erlang term as the reason, sent as a JSON list (`term_error`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import anyio

from .. import permissions
from ..protocol.errors import ACCESS_REFUSED, NOT_ALLOWED, NOT_FOUND, REPLY_NAMES, AMQPError
from .auth import broker_of, require_vhost_access
from .errors import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..broker import Broker
    from ..permissions import UserContext
    from ..vhost import Authorize, Exchange, VHost
    from .auth import Login

# the connection an API declare acts for: not None, so declares are checked as a
# client's are (queue_args.check_declare), and never the owner of an exclusive queue
API_CLIENT = object()


class Actor:
    """The HTTP user acting in one vhost, with that user's AMQP permissions."""

    def __init__(self, broker: Broker, user: str, vhost: VHost) -> None:
        self.broker = broker
        self.vhost = vhost
        self.access: UserContext = broker.user_context(user)

    def permit(self, kind: str, name: str, perm: str) -> None:
        permissions.check_resource(self.access, self.vhost.name, kind, name, perm)

    def permit_topic(self, ex: Exchange, routing_key: str, perm: str) -> None:
        permissions.check_topic(self.access, self.vhost.name, ex, routing_key, perm)

    def declare_checks(self, kind: str, arguments: dict[str, Any]) -> Authorize:
        """A declare's checks, as an AMQP channel of this user makes them."""
        access, vhost = self.access, self.vhost.name
        return lambda name, new: permissions.check_declare(access, vhost, kind, name, new,
                                                           arguments)

    def permit_binding(self, dest_kind: str, dest: str, source: str, routing_key: str) -> None:
        """A bind or unbind's checks, as an AMQP channel of this user makes them."""
        permissions.check_binding(self.access, self.vhost.name, self.vhost.exchanges,
                                  dest_kind, dest, source, routing_key)


def direct_error(exc: AMQPError) -> ApiError:
    """An AMQP error of a declare, delete or bind, as rabbit_mgmt_util:direct_request
    answers it."""
    if exc.reply_code == NOT_FOUND:
        return ApiError(404, "not_found", exc.text)
    if exc.reply_code in (ACCESS_REFUSED, NOT_ALLOWED):
        return ApiError(401, "not_authorised", "Access refused.")
    return bad_request(exc.text)


def channel_error(exc: AMQPError) -> ApiError:
    """An AMQP error of a publish or get, as rabbit_mgmt_util:with_channel answers it."""
    name = REPLY_NAMES.get(exc.reply_code, "ERROR")
    if exc.reply_code == NOT_FOUND:
        return ApiError(404, "not_found", f"{name} - {exc.text}")
    if exc.reply_code == ACCESS_REFUSED:
        return ApiError(401, "not_authorised", f"{name} - {exc.text}")
    return bad_request(f"{exc.reply_code} {name} - {exc.text}")


def publish_error(exc: AMQPError) -> ApiError:
    """An AMQP error of a publish: RabbitMQ's API publishes on a channel it watches, and
    any channel error is a 400 with the code ("404 NOT_FOUND - no exchange ...")."""
    name = REPLY_NAMES.get(exc.reply_code, "ERROR")
    return bad_request(f"{exc.reply_code} {name} - {exc.text}")


def term_error(*term: Any) -> ApiError:
    """400 whose reason is an Erlang tuple, as RabbitMQ sends it: a JSON list
    (["not_boolean", "yes"])."""
    error = bad_request("")
    error.reason = cast(str, list(term))  # JSON-encoded as it is
    return error


def parse_bool(value: Any, default: bool = False) -> bool:
    """RabbitMQ's parse_bool: JSON true/false or the strings "true"/"false"."""
    if value is None:
        return default
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise term_error("not_boolean", value)


def query_flag(value: str | None) -> bool:
    """A query parameter such as if-unused=true."""
    return value == "true"


def vhost_not_found() -> ApiError:
    """404 for a declare or bind in a vhost that does not exist."""
    return ApiError(404, "not_found", "vhost_not_found")


def vhost_of(request: Request, declare: bool = False) -> tuple[VHost, Login]:
    """The path's vhost and the user, who may act there (monitoring users may read);
    an unknown vhost is 404 (RabbitMQ's "vhost_not_found" for a declare)."""
    name = request.path_params["vhost"]
    user = require_vhost_access(request, name, monitor_reads=request.method == "GET",
                                must_exist=not declare)
    vhost = broker_of(request).vhosts.get(name)
    if vhost is None:
        raise vhost_not_found() if declare else not_found()
    return vhost, user


def count_as_channel(broker: Broker, **counts: int) -> None:
    """Add what an API publish or get did to the broker's totals as the channel counters
    of a closed channel: RabbitMQ's API publishes and gets on a channel it opens and
    closes for the request, which its statistics count like any other."""
    retired = broker.counters.retired
    for name, value in counts.items():
        if value:
            retired[name] = retired.get(name, 0) + value


async def wait_synced(broker: Broker, keys: tuple[str, ...]) -> None:
    """Return once the latest writes of these durable definitions are on disk (at once
    when none is pending); 500 when the store could not write them."""
    token = broker.definition_token(*keys) if keys else 0
    await wait_token(broker, token)


async def wait_token(broker: Broker, token: int) -> None:
    """Return once the store synced through token (0: nothing to wait for)."""
    store = broker.store
    while token and store.synced_token < token:
        done = anyio.Event()
        result: list[bool] = []

        def synced(_token: int, ok: bool, done: anyio.Event = done,
                   result: list[bool] = result) -> None:
            result.append(ok)
            done.set()

        store.on_sync(synced)
        await done.wait()
        if result and not result[0]:
            raise ApiError(500, "internal_error",
                           "the message store could not write to disk (see the broker log)")
