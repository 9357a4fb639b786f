"""GET /api/whoami and the login rules every endpoint shares (basic auth, management tags)."""

from __future__ import annotations

from ..registry import scenario
from ._mgmt import G, call, temp_user


@scenario(G)
def whoami_and_login(ctx):
    """whoami for the default user and a management user; no credentials, a wrong password,
    a user without management tags and an unknown user are 401 with RabbitMQ's bodies."""
    call(ctx, "guest", "GET", "/api/whoami")
    mgmt = temp_user(ctx, "mgmt", "management")
    call(ctx, "management", "GET", "/api/whoami", user=mgmt, password="pw")
    plain = temp_user(ctx, "plain", "")
    call(ctx, "no_tags", "GET", "/api/whoami", user=plain, password="pw")
    call(ctx, "no_credentials", "GET", "/api/whoami", user="")
    call(ctx, "wrong_password", "GET", "/api/whoami", password="wrong")
    call(ctx, "unknown_user", "GET", "/api/whoami", user=ctx.name("nobody"), password="x")
    tagged = temp_user(ctx, "tags", "monitoring,policymaker")
    call(ctx, "two_tags", "GET", "/api/whoami", user=tagged, password="pw")
