"""Shared steps of the management API scenarios (mgmt_*.py): logging a reply with its status
and body, users and vhosts made for one scenario and removed afterwards."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..ctx import shape

G = "mgmt"


def q(name: str) -> str:
    """A name as one URL path segment ("/" -> "%2F")."""
    return quote(name, safe="")


def call(ctx, label: str, method: str, path: str, body: Any = None, *, as_shape: bool = False,
         **kw: Any) -> Any:
    """Make a request and log its status and body (or the body's shape); the body."""
    status, payload = ctx.api(method, path, body, **kw)
    ctx.log(label, status=status, body=shape(payload) if as_shape else payload)
    return payload


def temp_vhost(ctx, logical: str) -> str:
    name = ctx.name(logical)
    status, _ = ctx.api("PUT", f"/api/vhosts/{q(name)}", {})
    assert status in (201, 204), status
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/vhosts/{q(name)}"))
    return name


def temp_user(ctx, logical: str, tags: str = "", password: str = "pw") -> str:
    name = ctx.name(logical)
    status, _ = ctx.api("PUT", f"/api/users/{q(name)}", {"password": password, "tags": tags})
    assert status in (201, 204), status
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/users/{q(name)}"))
    return name
