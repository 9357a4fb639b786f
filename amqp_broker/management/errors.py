"""The management API's error replies, in RabbitMQ's shape: `{"error": ..., "reason": ...}`.

Raise `ApiError(status, error, reason)` anywhere in a handler (or the helpers it calls);
create_app installs `exception_handlers` once, so every error reaches the client the same
way. The common ones have constructors named after RabbitMQ's replies (the texts are
those of the reference RabbitMQ 3.10's management plugin).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

AUTH_REALM = 'Basic realm="RabbitMQ Management"'


class ApiError(Exception):
    """An HTTP error reply: status, RabbitMQ's `error` word and a `reason` (a text, or
    the JSON list RabbitMQ sends for some, e.g. ["no_such_user", "bob"])."""

    def __init__(self, status: int, error: str, reason: Any,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}


def bad_request(reason: str) -> ApiError:
    """400 `bad_request` (invalid JSON, a missing or invalid argument)."""
    return ApiError(400, "bad_request", reason)


def not_found() -> ApiError:
    """404 for an unknown vhost, user, policy, ... (RabbitMQ's resource_exists false)."""
    return ApiError(404, "Object Not Found", "Not Found")


def not_authorised(reason: str) -> ApiError:
    """401 for a logged-in user whose tags or permissions do not allow the request
    ("Not administrator user", "Not monitor user", "Not management user", ...)."""
    return ApiError(401, "not_authorised", reason)


def login_failed() -> ApiError:
    """401 for wrong credentials (the client is asked to log in again)."""
    return ApiError(401, "not_authorized", "Login failed",
                    headers={"www-authenticate": AUTH_REALM})


def no_credentials() -> ApiError:
    """401 for a request without credentials: no body, only the login challenge."""
    return ApiError(401, "", "", headers={"www-authenticate": AUTH_REALM})


def vhost_not_visible() -> ApiError:
    """401 for a vhost the user has no permissions in (RabbitMQ 3.10's reply)."""
    return ApiError(401, "not_authorised", "User not authorised to access virtual host")


def json_error(status: int, error: str, reason: Any,
               headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason}, status_code=status,
                        headers=headers)


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if not exc.error:  # no credentials at all: RabbitMQ answers 401 without a body
        return Response(status_code=exc.status, headers=exc.headers)
    return json_error(exc.status, exc.error, exc.reason, exc.headers)


async def _http_exception(_request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route: 404, a method the route lacks: 405) as RabbitMQ
    answers them."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return json_error(404, "Object Not Found", "Not Found")
    if exc.status_code == 405:
        # RabbitMQ (cowboy) sends 405 with an allow header and no body
        allowed = allowed_methods(_request, _request.scope["path"])
        headers = {"allow": ", ".join(allowed)} if allowed else dict(exc.headers or {})
        return Response(status_code=405, headers=headers)
    return json_error(exc.status_code, _ERROR_WORDS.get(exc.status_code, "error"),
                      str(exc.detail))


_METHOD_ORDER = ("HEAD", "GET", "PUT", "POST", "DELETE", "OPTIONS")


def allowed_methods(request: Request, path: str) -> list[str]:
    """The methods the app's routes serve on path (raw, percent-encoded), in cowboy's
    order, OPTIONS included: every route module gives one Route per method."""
    from starlette.routing import Route
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    if not methods:
        return []
    methods.add("OPTIONS")
    return [m for m in _METHOD_ORDER if m in methods] + sorted(methods - set(_METHOD_ORDER))


_ERROR_WORDS = {400: "bad_request", 401: "not_authorised", 403: "not_authorised",
                413: "bad_request", 415: "bad_request"}

EXCEPTION_HANDLERS: dict[Any, Any] = {ApiError: _api_error, HTTPException: _http_exception}


MAX_BODY = 20_000_000  # bytes: RabbitMQ's management.http.max_body_size default


def body_too_large() -> ApiError:
    return bad_request("Exceeded HTTP request body size limit")


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The request body, refused (400, RabbitMQ's text) past limit bytes (MAX_BODY)
    before it is all read."""
    limit = MAX_BODY if limit is None else limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, empty: Any = None) -> Any:
    """The request's JSON body, parsed: 400 `not_json` (RabbitMQ's reply) when it is not
    JSON; an empty body is `empty` (an empty object unless given)."""
    raw = await read_body(request)
    if not raw.strip():
        return {} if empty is None else empty
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("not_json") from None


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON body, which must be an object (400 otherwise)."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_request("not_json")
    return body
