"""/api/connections, /api/connections/{name}[/channels], /api/vhosts/{vhost}/connections:
a client's connection as listed and shown, and closed with DELETE (X-Reason)."""

from __future__ import annotations

import pika

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q, temp_user
from ._mgmt_objects import find, keys, pick, wait_for

VALUES = ("auth_mechanism", "channel_max", "channels", "frame_max", "host", "peer_host",
          "protocol", "ssl", "ssl_cipher", "ssl_hash", "ssl_key_exchange", "ssl_protocol",
          "peer_cert_issuer", "peer_cert_subject", "peer_cert_validity", "state", "timeout",
          "type", "user", "vhost", "user_provided_name")
SHAPES = ("name", "node", "peer_port", "port", "connected_at", "recv_oct", "recv_oct_details",
          "send_oct", "send_oct_details", "send_pend")


def _connect(ctx, label: str) -> tuple[pika.BlockingConnection, str]:
    name = ctx.name(label)
    params = ctx.params(heartbeat=30, client_properties={"connection_name": name})
    conn = pika.BlockingConnection(params)
    ctx._connections.append(conn)
    return conn, name


def _described(ctx, conn: dict) -> dict:
    return {**pick(conn, *VALUES), "shapes": {f: shape(conn.get(f)) for f in SHAPES},
            "name_is_peer_to_listener": conn.get("name") == (
                f"{conn.get('peer_host')}:{conn.get('peer_port')} -> "
                f"{conn.get('host')}:{conn.get('port')}"),
            "port_is_amqp_port": conn.get("port") == ctx.port,
            "client_connection_name": conn.get("client_properties", {}).get("connection_name")}


@scenario(G, timeout=60)
def connection_fields(ctx):
    """A pika connection with two channels: its fields in the list, the vhost's list and
    its own page (TLS fields null in lists, "" on the page, as RabbitMQ), its channels;
    unknown connections and vhosts are 404."""
    conn, name = _connect(ctx, "conn")
    conn.channel()
    conn.channel()
    listed = wait_for(ctx, "/api/connections", lambda body: (find(
        body, user_provided_name=name) or {}).get("channels") == 2)
    mine = find(listed, user_provided_name=name) or {}
    ctx.log("listed", keys=keys(mine), fields=_described(ctx, mine))
    _, in_vhost = ctx.api("GET", "/api/vhosts/%2F/connections")
    ctx.log("in_vhost", found=find(in_vhost, user_provided_name=name) is not None)
    path = f"/api/connections/{q(mine.get('name', 'x'))}"
    status, one = ctx.api("GET", path)
    ctx.log("one", status=status, keys=keys(one), fields=_described(ctx, one))
    status, channels = ctx.api("GET", path + "/channels")
    ctx.log("its_channels", status=status,
            names_end=sorted(c["name"][len(mine.get("name", "")):] for c in channels))
    call(ctx, "unknown", "GET", "/api/connections/" + q("127.0.0.1:1 -> 127.0.0.1:2"))
    call(ctx, "unknown_vhost", "GET", f"/api/vhosts/{q(ctx.name('nov'))}/connections")
    _, paged = ctx.api("GET", f"/api/connections?page=1&page_size=100&name={q(name)}")
    ctx.log("paged", keys=sorted(paged) if isinstance(paged, dict) else paged)
    conn.close()


@scenario(G, timeout=60)
def connection_close(ctx):
    """DELETE with X-Reason closes the connection with 320 CONNECTION_FORCED and that
    text; closing it again is 404; a management user without permissions sees none of
    the other users' connections and may not close one."""
    conn, name = _connect(ctx, "doomed")
    listed = wait_for(ctx, "/api/connections",
                      lambda body: find(body, user_provided_name=name) is not None)
    mine = find(listed, user_provided_name=name) or {}
    path = f"/api/connections/{q(mine.get('name', 'x'))}"
    mgmt = temp_user(ctx, "mgmt", "management")
    status, theirs = ctx.api("GET", "/api/connections", user=mgmt, password="pw")
    ctx.log("management_lists", status=status,
            sees_it=find(theirs, user_provided_name=name) is not None)
    call(ctx, "management_reads", "GET", path, user=mgmt, password="pw")
    call(ctx, "management_closes", "DELETE", path, user=mgmt, password="pw")
    status = _delete_with_reason(ctx, path, "going down for maintenance")
    ctx.log("close", status=status)
    try:
        for _ in range(50):
            conn.process_data_events(0.1)
        ctx.log("client", outcome="still open")
    except pika.exceptions.ConnectionClosedByBroker as exc:
        ctx.log("client", reply_code=exc.reply_code, reply_text=exc.reply_text)
    wait_for(ctx, "/api/connections",
             lambda body: find(body, user_provided_name=name) is None, timeout=10)
    call(ctx, "close_again", "DELETE", path)


def _delete_with_reason(ctx, path: str, reason: str) -> int:
    """DELETE with an X-Reason header (ctx.api sends no extra headers)."""
    import base64
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{ctx.host}:{ctx.management_port}{path}",
                                 method="DELETE")
    token = base64.b64encode(f"{ctx.user}:{ctx.password}".encode()).decode()
    req.add_header("authorization", f"Basic {token}")
    req.add_header("x-reason", reason)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
