"""The management HTTP API client of `amqp-broker ctl`, and the errors the command reports.

Only the standard library talks HTTP (urllib.request), so the command works in a minimal
install. A failure is a CtlError, printed as one line starting `amqp-broker ctl:`.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROG = "amqp-broker ctl"
DEFAULT_TIMEOUT = 10.0


class CtlError(Exception):
    """A failure reported as one line; exit status 1."""


class UsageError(CtlError):
    """A bad command line; exit status 2."""


class HttpError(CtlError):
    """The API answered with an error status."""

    def __init__(self, method: str, path: str, status: int, error: str, reason: str) -> None:
        super().__init__(f"{method} /api{path}: {status} {error}" + (f": {reason}" if reason
                                                                      else ""))
        self.method = method
        self.path = path
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the JSON answer, or None when there was none


def quote(name: str) -> str:
    """A name as one path segment: RabbitMQ's paths encode the vhost `/` as %2F."""
    return urllib.parse.quote(name, safe="")


class Api:
    """The management API of one broker, reached with HTTP basic auth."""

    def __init__(self, url: str, user: str, password: str,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {token}"

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        """Any answer the server gives; CtlError when there is none (or it is not JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/api" + path, data=data, method=method)
        request.add_header("Authorization", self._auth)
        # no Accept header: RabbitMQ answers 406 to Accept: application/json on a purge
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, _read_error_body(exc)
        except urllib.error.URLError as exc:
            raise CtlError(f"cannot reach {self.url}: {_why(exc.reason, self.timeout)}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise CtlError(f"cannot reach {self.url}: {_why(exc, self.timeout)}") from None
        return Reply(status, self._json(raw, status, method, path))

    def _json(self, raw: bytes, status: int, method: str, path: str) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            if status >= 400:  # a proxy's or a plain web server's error page
                return None
            raise CtlError(f"{method} {self.url}/api{path}: the answer is not JSON "
                           f"(is {self.url} a management API?)") from None

    def call(self, method: str, path: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> Any:
        """The JSON of a successful answer; HttpError for an error status."""
        reply = self.request(method, path, body, headers)
        if reply.status >= 400:
            raise self.error(method, path, reply)
        return reply.body

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def error(self, method: str, path: str, reply: Reply) -> HttpError:
        body = reply.body if isinstance(reply.body, Mapping) else {}
        error = str(body.get("error") or http.client.responses.get(reply.status, "error"))
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            reason = json.dumps(reason)
        return HttpError(method, path, reply.status, error, reason)


def _read_error_body(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _why(reason: object, timeout: float) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message})"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the server (not an HTTP port?)"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering (not an HTTP port?)"
    if isinstance(reason, http.client.BadStatusLine):
        return "the server does not speak HTTP (wrong port?)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[0].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__
