"""GET /api/nodes and /api/nodes/{name}: the one node this broker is (rabbit_mgmt_wm_nodes,
rabbit_mgmt_wm_node), for monitoring users; GET/PUT /api/cluster-name. Also the node facts
/api/overview shares: `node_name`, `cluster_name`, `listeners`, `contexts`,
`exchange_types`.

RabbitMQ reports Erlang VM figures (processes, GC, mnesia, io); the fields are kept with
this process's closest figures (asyncio tasks as processes) or zero, so clients reading
them find them; counters carry the `_details` rate object as RabbitMQ's do.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..broker import Broker
from .auth import broker_of, login, require_admin, require_monitor
from .errors import bad_request, json_object, not_found
from .listing import reply_item, reply_list

# the RabbitMQ release whose management API this one follows (clients check it for features)
RABBITMQ_VERSION = "3.10.8"
PRODUCT_NAME = "amqp-broker"

EXCHANGE_TYPE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
    "x-delayed-message": "Delayed Message Exchange.",
    "x-message-deduplication": "Message Deduplication Exchange.",  # the plugin's words
}
AUTH_MECHANISMS = (
    ("PLAIN", "SASL PLAIN authentication mechanism"),
    ("AMQPLAIN", "QPid AMQPLAIN mechanism"),
    ("EXTERNAL", "TLS peer verification-based authentication plugin. Used in combination "
                 "with the EXTERNAL SASL mechanism."),
)
# Erlang VM counters RabbitMQ reports per node; none has a meaning here
ZERO_COUNTERS = (
    "gc_num", "gc_bytes_reclaimed", "context_switches", "io_read_count", "io_read_bytes",
    "io_read_avg_time", "io_write_count", "io_write_bytes", "io_write_avg_time",
    "io_sync_count", "io_sync_avg_time", "io_seek_count", "io_seek_avg_time",
    "io_reopen_count", "mnesia_ram_tx_count", "mnesia_disk_tx_count", "msg_store_read_count",
    "msg_store_write_count", "queue_index_write_count", "queue_index_read_count",
)
# churn field -> the Broker counter behind it
CHURN_FIELDS = {"connection_created": "connections_opened",
                "connection_closed": "connections_closed",
                "channel_created": "channels_opened", "channel_closed": "channels_closed",
                "queue_declared": "queues_declared", "queue_created": "queues_created",
                "queue_deleted": "queues_deleted"}


def node_name(broker: Broker) -> str:
    """This broker's node name (the `node` field of connections, queues, ...)."""
    return broker.cluster_name


def cluster_name(broker: Broker) -> str:
    """The cluster name: the global parameter cluster_name when set (PUT /api/cluster-name,
    definitions), else the broker's."""
    param = broker.runtime.global_parameters.get("cluster_name")
    value = param.get("value") if isinstance(param, dict) else None
    return value if isinstance(value, str) and value else broker.cluster_name


def exchange_types() -> list[dict[str, Any]]:
    from ..exchanges import TYPES
    return [{"name": name, "description": EXCHANGE_TYPE_DESCRIPTIONS.get(name, ""),
             "enabled": True} for name in sorted(TYPES)]


def _server(request: Request) -> Any:
    return getattr(request.app.state, "server", None)


def listener_ports(request: Request) -> dict[str, int]:
    """protocol -> port of each listener that is on (the actual ports when running)."""
    config = request.app.state.config
    server = _server(request)
    ports: dict[str, int] = {}
    amqp = getattr(server, "port", None) or config.port
    if amqp:
        ports["amqp"] = amqp
    amqps = getattr(server, "tls_port", None) or (config.tls_port or 0)
    if amqps:
        ports["amqp/ssl"] = amqps
    management = getattr(server, "management_port", None) or config.management_port
    if management:
        ports["http"] = management
    if config.metrics_port:
        ports["http/prometheus"] = config.metrics_port
    return ports


_ADDRESS_OF = {"amqp": "amqp", "amqp/ssl": "amqps", "http": "management",
               "http/prometheus": "prometheus"}


def listeners(request: Request) -> list[dict[str, Any]]:
    """RabbitMQ's listener objects, sorted by protocol and port as there."""
    broker = broker_of(request)
    config = request.app.state.config
    out = []
    for protocol, port in listener_ports(request).items():
        host, _ = config.address(_ADDRESS_OF[protocol])
        opts: Any
        if protocol.startswith("http"):
            opts = {"cowboy_opts": {"sendfile": False}, "ip": host or "::", "port": port}
            if protocol == "http/prometheus":
                opts["protocol"] = protocol
        else:
            opts = {"backlog": 128, "nodelay": True, "linger": [True, 0],
                    "exit_on_close": False}
        out.append({"node": node_name(broker), "protocol": protocol,
                    "ip_address": host or "::", "port": port, "socket_opts": opts})
    out.sort(key=lambda one: (one["protocol"], one["port"]))
    return out


def contexts(request: Request, with_node: bool = True) -> list[dict[str, Any]]:
    """The web contexts (management, prometheus) as RabbitMQ lists them."""
    broker = broker_of(request)
    config = request.app.state.config
    ports = listener_ports(request)
    out = []
    for protocol, description in (("http", "RabbitMQ Management"),
                                  ("http/prometheus", "RabbitMQ Prometheus")):
        if protocol not in ports:
            continue
        host, _ = config.address(_ADDRESS_OF[protocol])
        one: dict[str, Any] = {"ssl_opts": []} if with_node else {}
        if with_node:
            one["node"] = node_name(broker)
        one.update({"description": description, "path": "/",
                    "cowboy_opts": "[{sendfile,false}]", "ip": host or "::",
                    "port": str(ports[protocol])})
        if protocol == "http/prometheus":
            one["protocol"] = "'http/prometheus'"
        out.append(one)
    out.sort(key=lambda one: (one["description"], one["port"]))
    return out


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage if sys.platform == "darwin" else usage * 1024


def _fds_used() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _disk_free(path: str) -> int:
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return 0
    return st.f_bavail * st.f_frsize


def _with_details(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        out[key] = value
        out[key + "_details"] = {"rate": 0.0}
    return out


def churn_counters(broker: Broker) -> dict[str, int]:
    """Connection, channel and queue churn counters the broker keeps (0 where it keeps
    none)."""
    return {name: int(getattr(broker, attribute, 0))
            for name, attribute in CHURN_FIELDS.items()}


def node(request: Request) -> dict[str, Any]:
    """The node object of /api/nodes."""
    from ..server import fd_limit
    broker = broker_of(request)
    config = request.app.state.config
    server = _server(request)
    sockets_total = getattr(server, "max_connections", None) or max(1, int(
        (fd_limit() - 100) * 0.9) + 1)
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = 0
    mechanisms = set(config.auth_mechanisms)
    plugins = ["rabbitmq_management"] + (["rabbitmq_prometheus"] if config.metrics_port else [])
    facts: dict[str, Any] = {
        "partitions": [], "os_pid": str(os.getpid()), "fd_total": fd_limit(),
        "sockets_total": sockets_total, "mem_limit": broker.memory_alarm.watermark,
        "mem_alarm": "memory" in broker.alarms, "disk_free_limit": config.disk_free_limit,
        "disk_free_alarm": "disk" in broker.alarms, "proc_total": 1048576,
        "rates_mode": "basic", "uptime": int((time.time() - broker.started) * 1000),
        "run_queue": 0, "processors": os.cpu_count() or 1,
        "exchange_types": exchange_types(),
        "auth_mechanisms": [{"name": name, "description": text, "enabled": name in mechanisms}
                            for name, text in AUTH_MECHANISMS],
        "applications": [{"name": "amqp_broker", "description": "An AMQP 0-9-1 broker in "
                          "Python", "version": __version__},
                         {"name": "python", "description": platform.python_implementation(),
                          "version": platform.python_version()}],
        "contexts": contexts(request, with_node=False),
        "log_files": ["<stdout>"],
        "db_dir": os.path.abspath(config.data_dir) if config.data_dir else "",
        "config_files": [], "net_ticktime": 60, "enabled_plugins": plugins,
        "mem_calculation_strategy": "rss", "ra_open_file_metrics": {},
        "name": node_name(broker), "type": "disc", "running": True,
    }
    used = {"mem_used": _rss(), "fd_used": _fds_used(),
            "sockets_used": getattr(server, "sockets", len(broker.connections)),
            "proc_used": tasks,
            "disk_free": _disk_free(config.data_dir or os.getcwd())}
    facts.update(_with_details(used))
    facts.update(_with_details(dict.fromkeys(ZERO_COUNTERS, 0)))
    facts.update(_with_details(churn_counters(broker)))
    facts["cluster_links"] = []
    facts["metrics_gc_queue_length"] = dict.fromkeys(
        ("connection_closed", "channel_closed", "consumer_deleted", "exchange_deleted",
         "queue_deleted", "vhost_deleted", "node_node_deleted", "channel_consumer_deleted"), 0)
    return facts


async def list_nodes(request: Request) -> JSONResponse:
    require_monitor(request)
    return reply_list(request, [node(request)], default_sort=("name",))


async def get_node(request: Request) -> JSONResponse:
    require_monitor(request)
    if request.path_params["name"] != node_name(broker_of(request)):
        raise not_found()
    return reply_item(request, node(request))


async def get_cluster_name(request: Request) -> JSONResponse:
    login(request)
    return JSONResponse({"name": cluster_name(broker_of(request))})


async def put_cluster_name(request: Request) -> Response:
    require_admin(request)
    body = await json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("[{key_missing,name}]" if "name" not in body
                          else "name must be a non-empty string")
    broker_of(request).runtime.set_global_parameter({"name": "cluster_name", "value": name})
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [Route("/api/nodes", list_nodes, methods=["GET"]),
            Route("/api/nodes/{name}", get_node, methods=["GET"]),
            Route("/api/cluster-name", get_cluster_name, methods=["GET"]),
            Route("/api/cluster-name", put_cluster_name, methods=["PUT"])]
