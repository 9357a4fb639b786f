"""/api/connections: client connections as RabbitMQ's management API shows them
(rabbit_mgmt_wm_connection(s), rabbit_mgmt_wm_connection_channels,
rabbit_mgmt_wm_connections_vhost), and DELETE to close one with 320 CONNECTION_FORCED.

A connection is named as RabbitMQ names it, "PEER:PORT -> LOCAL:PORT" (IPv6 hosts in
brackets). Who sees what (rabbit_mgmt_util:filter_conn_ch_list, is_authorized_user):
monitoring and administrator users see every connection, other management users their
own; only an administrator or the connection's own user may close it.

Also the shared pieces of the connection-shaped objects (channels and consumers name
their connection the same way): `connection_name`, `open_connections`, `iso_time`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..definitions import plain
from .auth import broker_of, login, require_vhost_access
from .errors import not_authorised, not_found
from .listing import reply_item, reply_list
from .rates import CONNECTION_FIELDS, connection_counters, rates_for
from .res_nodes import node_name

if TYPE_CHECKING:
    from ..broker import Broker
    from ..connection import Connection
    from .auth import Login

DEFAULT_CLOSE_REASON = "Closed via management plugin"


def iso_time(wall: float) -> str:
    """Seconds since the epoch as RabbitMQ prints times (RFC 3339, milliseconds, UTC)."""
    ms = int(wall * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
        f".{ms % 1000:03d}+00:00"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_address(conn: Connection) -> tuple[str, int]:
    """Where the client connected to; an in-process connection (no socket) shows the
    configured listener."""
    if conn.local is not None:
        return conn.local
    config = conn.broker.config
    host = config.host if config.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return host, config.port


def peer_address(conn: Connection) -> tuple[str, int]:
    return conn.peer if conn.peer is not None else ("", 0)


def connection_name(conn: Connection) -> str:
    """RabbitMQ's connection name: "127.0.0.1:54321 -> 127.0.0.1:5672"."""
    return f"{_address(*peer_address(conn))} -> {_address(*local_address(conn))}"


def open_connections(broker: Broker) -> list[Connection]:
    """The broker's open client connections (the sessions it counts)."""
    from ..connection import Connection
    return [s for s in broker.connections if isinstance(s, Connection)]


def find_connection(broker: Broker, name: str) -> Connection | None:
    for conn in open_connections(broker):
        if connection_name(conn) == name:
            return conn
    return None


def _state(conn: Connection) -> str:
    from ..connection import ConnState
    if conn.state is ConnState.CLOSING:
        return "closing"
    if conn.alarm_blocked:
        return "blocked"
    if conn.throttled:
        return "flow"
    return "running"


def connection_details(conn: Connection) -> dict[str, Any]:
    """The `connection_details` object channels and queues carry."""
    host, port = peer_address(conn)
    return {"name": connection_name(conn), "peer_host": host, "peer_port": port}


def connection_info(conn: Connection, detail: bool = False) -> dict[str, Any]:
    """One connection's JSON. As RabbitMQ, the TLS fields of a plain connection are null
    in lists and empty strings in the single-object reply (detail)."""
    broker = conn.broker
    peer_host, peer_port = peer_address(conn)
    host, port = local_address(conn)
    client_properties = plain(conn.client_properties)
    tls = conn.tls_session
    unset: str | None = "" if detail else None
    counters = dict(zip(CONNECTION_FIELDS, connection_counters(conn), strict=True))
    rates = rates_for(broker).object_rates(("connection", id(conn)), CONNECTION_FIELDS)
    info: dict[str, Any] = {
        "auth_mechanism": conn.auth_mechanism or "PLAIN",
        "channel_max": conn.channel_max,
        "channels": len(conn.channels),
        "client_properties": client_properties,
        "connected_at": conn.connected_at,
        "frame_max": conn.frame_max,
        "host": host,
        "name": connection_name(conn),
        "node": node_name(broker),
        "peer_cert_issuer": tls.peer_cert_issuer if tls and tls.peer_cert_issuer else unset,
        "peer_cert_subject": tls.peer_cert_subject if tls and tls.peer_cert_subject else unset,
        "peer_cert_validity": unset,
        "peer_host": peer_host,
        "peer_port": peer_port,
        "port": port,
        "protocol": "AMQP 0-9-1",
        "recv_oct": counters["recv_oct"],
        "recv_oct_details": {"rate": rates["recv_oct"]},
        "send_oct": counters["send_oct"],
        "send_oct_details": {"rate": rates["send_oct"]},
        "send_pend": conn.out_size,
        "ssl": tls is not None,
        "ssl_cipher": tls.cipher if tls else unset,
        "ssl_hash": unset,
        "ssl_key_exchange": unset,
        "ssl_protocol": tls.protocol if tls else unset,
        "state": _state(conn),
        "timeout": conn.heartbeat,
        "type": "network",
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "vhost": conn.vhost.name if conn.vhost is not None else "",
    }
    if isinstance(client_properties, dict) and isinstance(
            client_properties.get("connection_name"), str):
        info["user_provided_name"] = client_properties["connection_name"]
    return info


def visible_connections(user: Login, conns: Iterable[Connection]) -> list[Connection]:
    """Monitoring and administrator users see all; others only their own."""
    if user.is_monitor:
        return list(conns)
    return [c for c in conns if c.user == user.name]


def may_see(user: Login, owner: str, method: str = "GET") -> bool:
    """RabbitMQ's is_authorized_user: the object's own user, or a monitor to read,
    or an administrator to delete."""
    if owner == user.name:
        return True
    return user.is_admin if method == "DELETE" else user.is_monitor


def named_connection(request: Request) -> Connection:
    """The connection of the path (access checked first, as RabbitMQ does)."""
    user = login(request)
    conn = find_connection(broker_of(request), request.path_params["name"])
    if not may_see(user, conn.user if conn is not None else "", request.method):
        raise not_authorised("User not authorised to access object")
    if conn is None:
        raise not_found()
    return conn


# --- handlers ---------------------------------------------------------------------------
async def list_connections(request: Request) -> JSONResponse:
    user = login(request)
    conns = visible_connections(user, open_connections(broker_of(request)))
    return reply_list(request, [connection_info(c) for c in conns])


async def list_vhost_connections(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    user = require_vhost_access(request, vhost, monitor_reads=True)
    conns = [c for c in open_connections(broker_of(request)) if c.vhost.name == vhost]
    return reply_list(request, [connection_info(c) for c in
                                visible_connections(user, conns)],
                      paginated=False)


async def get_connection(request: Request) -> JSONResponse:
    return reply_item(request, connection_info(named_connection(request), detail=True))


async def delete_connection(request: Request) -> Response:
    """Close it with 320 CONNECTION_FORCED and the X-Reason header's text."""
    conn = named_connection(request)
    reason = _header_text(request.headers.get("x-reason")) or DEFAULT_CLOSE_REASON
    broker_of(request).log.info("connection closed via the management API",
                                connection=connection_name(conn), reason=reason,
                                by=login(request).name)
    conn.force_close(reason)
    conn.flush()
    return Response(status_code=204)


def _header_text(value: str | None) -> str | None:
    """A header as the client wrote it: HTTP headers arrive as latin-1, clients send the
    reason's UTF-8 bytes (rabbitmqadmin, ctl), which RabbitMQ shows as written."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


async def list_connection_channels(request: Request) -> JSONResponse:
    from .res_channels import channel_info
    conn = named_connection(request)
    return reply_list(request, [channel_info(ch) for ch in conn.channels.values()],
                      paginated=False)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/connections", list_connections, methods=["GET"]),
        Route("/api/connections/{name}", get_connection, methods=["GET"]),
        Route("/api/connections/{name}", delete_connection, methods=["DELETE"]),
        Route("/api/connections/{name}/channels", list_connection_channels, methods=["GET"]),
        Route("/api/vhosts/{vhost}/connections", list_vhost_connections, methods=["GET"]),
    ]
