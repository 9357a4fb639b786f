"""Health checks (rabbit_mgmt_wm_health_check_*, rabbit_mgmt_wm_aliveness_test), for any
management user; a failed check is 503 with RabbitMQ's body, which probes read:

    GET /api/health/checks/alarms, /api/health/checks/local-alarms
    GET /api/health/checks/port-listener/{port}
    GET /api/health/checks/protocol-listener/{protocol}
    GET /api/health/checks/virtual-hosts
    GET /api/health/checks/node-is-quorum-critical, .../node-is-mirror-sync-critical
    GET /api/aliveness-test/{vhost}
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .auth import broker_of, login, require_vhost_access
from .errors import bad_request
from .res_nodes import listener_ports, node_name

ALARM_RESOURCES = {"memory": "memory", "disk": "disk"}


def _ok(body: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"status": "ok", **(body or {})})


def _failed(reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "failed", "reason": reason, **extra}, status_code=503)


def _alarms(request: Request) -> list[dict[str, str]]:
    broker = broker_of(request)
    return [{"node": node_name(broker), "resource": ALARM_RESOURCES.get(a, a)}
            for a in sorted(broker.alarms)]


async def alarms(request: Request) -> JSONResponse:
    login(request)
    found = _alarms(request)
    if found:
        return _failed("There are alarms in effect in the cluster", alarms=found)
    return _ok()


async def local_alarms(request: Request) -> JSONResponse:
    login(request)
    found = _alarms(request)
    if found:
        return _failed("There are alarms in effect on the node", alarms=found)
    return _ok()


async def port_listener(request: Request) -> JSONResponse:
    login(request)
    raw = request.path_params["port"]
    try:
        port = int(raw)
    except ValueError:
        raise bad_request("Invalid port") from None
    ports = sorted(set(listener_ports(request).values()))
    if port in ports:
        return _ok({"port": port})
    return _failed("No active listener", missing=port, ports=ports)


_PROTOCOL_ALIASES = {"amqp091": "amqp", "amqp0.9.1": "amqp", "amqp0-9-1": "amqp",
                     "amqps": "amqp/ssl", "amqp091/ssl": "amqp/ssl", "https": "https",
                     "prometheus": "http/prometheus"}


async def protocol_listener(request: Request) -> JSONResponse:
    """One protocol (RabbitMQ 3.10 takes the whole segment as its name)."""
    login(request)
    raw = request.path_params["protocol"]
    wanted = _PROTOCOL_ALIASES.get(raw.strip().lower(), raw.strip().lower())
    active = sorted(listener_ports(request))
    if wanted in active:
        return _ok({"protocol": raw})
    return _failed("No active listener", missing=raw, protocols=active)


async def virtual_hosts(request: Request) -> JSONResponse:
    login(request)
    return _ok()  # a vhost here cannot be down on its own


async def node_is_quorum_critical(request: Request) -> JSONResponse:
    login(request)
    return _ok({"reason": "single node cluster"})


async def aliveness_test(request: Request) -> JSONResponse:
    """RabbitMQ declares a queue, publishes and gets a message there; a vhost of this
    broker that exists and the user may use is alive (its model runs in this loop)."""
    require_vhost_access(request, request.path_params["vhost"])
    return _ok()


def routes() -> list[BaseRoute]:
    checks = "/api/health/checks"
    return [
        Route(f"{checks}/alarms", alarms, methods=["GET"]),
        Route(f"{checks}/local-alarms", local_alarms, methods=["GET"]),
        Route(f"{checks}/port-listener/{{port}}", port_listener, methods=["GET"]),
        Route(f"{checks}/protocol-listener/{{protocol}}", protocol_listener, methods=["GET"]),
        Route(f"{checks}/virtual-hosts", virtual_hosts, methods=["GET"]),
        Route(f"{checks}/node-is-quorum-critical", node_is_quorum_critical, methods=["GET"]),
        Route(f"{checks}/node-is-mirror-sync-critical", node_is_quorum_critical,
              methods=["GET"]),
        Route("/api/aliveness-test/{vhost}", aliveness_test, methods=["GET"]),
    ]
