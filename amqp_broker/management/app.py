"""The management HTTP API as a Starlette app: `create_app(broker, config)`.

One module per resource (`res_<name>.py`, each with `routes()`), included when it exists,
so resources land independently. Handlers run in the broker's own event loop and read
its state directly. Around them:

- Paths are routed on the raw (still percent-encoded) path and each path parameter is
  decoded once, so a vhost named "/" is `%2F` in one segment, as RabbitMQ has it.
- Every `ApiError` and Starlette error becomes RabbitMQ's JSON error body
  (errors.EXCEPTION_HANDLERS); anything else is logged in one line and answered 500,
  so no request can take the broker down.
- `/api/...` replies carry `cache-control: no-cache`, as RabbitMQ's do.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..broker import Broker
from ..config import Config
from .errors import EXCEPTION_HANDLERS, allowed_methods

# the resource modules, in routing order; the web UI (serving "/") comes last
RESOURCE_MODULES = (
    "res_overview", "res_nodes", "res_whoami", "res_vhosts", "res_users", "res_permissions",
    "res_policies", "res_definitions", "res_health",
    "res_connections", "res_channels", "res_consumers", "res_exchanges", "res_queues",
    "res_bindings",
    "ui",
)


def _load(name: str) -> Any | None:
    """The module amqp_broker.management.<name>, or None when it does not exist (yet);
    an import error inside an existing module is not hidden."""
    full = f"{__package__}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name == full:
            return None
        raise


def collect_routes(modules: Iterable[str] = RESOURCE_MODULES) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for name in modules:
        module = _load(name)
        if module is not None:
            routes.extend(module.routes())
    for route in routes:
        _decode_params(route)
    return routes


def _decode_params(route: BaseRoute) -> None:
    """Path parameters are matched on the raw path (see RawPath): decode each once."""
    if isinstance(route, Route):
        route.app = _DecodeParams(route.app)
    elif isinstance(route, Mount):
        for sub in route.routes:
            _decode_params(sub)


class _DecodeParams:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params")
        if params:
            scope["path_params"] = {k: unquote(v) if isinstance(v, str) else v
                                    for k, v in params.items()}
        await self.app(scope, receive, send)


class RawPath:
    """Route on the percent-encoded path, so "%2F" in a vhost name stays inside its
    segment (the server decodes `path`; `raw_path` is what the client sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            if raw:
                path = raw.split(b"?", 1)[0].decode("latin-1")
                if path != scope["path"]:
                    scope = dict(scope)
                    scope["path"] = path
        await self.app(scope, receive, send)


class Options:
    """OPTIONS on an API path: 200 with the allowed methods (what RabbitMQ answers, and
    what a CORS preflight needs), no login needed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and scope[
                "path"].startswith("/api/"):
            allowed = allowed_methods(Request(scope), scope["path"])
            if allowed:
                await Response(status_code=200, headers={"allow": ", ".join(allowed)})(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApiHeaders:
    """`cache-control: no-cache` on API replies; anything a handler raised that is not an
    API error is logged in one line and answered 500 (no traceback, nothing crashes)."""

    def __init__(self, app: ASGIApp, broker: Broker) -> None:
        self.app = app
        self.broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if api:
                    headers = list(message.get("headers", []))
                    headers.append((b"cache-control", b"no-cache"))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        except Exception as exc:  # a handler's bug: one line, 500, the broker goes on
            self.broker.log.error("management API request failed", method=scope["method"],
                                  path=scope["path"], error=f"{type(exc).__name__}: {exc}")
            if not started:
                body = (b'{"error":"Internal Server Error","reason":'
                        b'"the request failed; see the broker log"}')
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})


def create_app(broker: Broker, config: Config | None = None,
               modules: Iterable[str] = RESOURCE_MODULES, server: Any = None) -> Starlette:
    """The management app for a broker (its config by default). server is the running
    server.Server, when there is one (its listeners' actual ports, for /api/overview)."""
    app = Starlette(routes=collect_routes(modules), exception_handlers=EXCEPTION_HANDLERS)
    app.state.broker = broker
    app.state.config = config if config is not None else broker.config
    app.state.server = server
    app.add_middleware(ApiHeaders, broker=broker)
    app.add_middleware(Options)
    app.add_middleware(RawPath)
    return app
