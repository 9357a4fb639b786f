"""/api/permissions and /api/topic-permissions, and their per-vhost and per-user lists."""

from __future__ import annotations

from ..registry import scenario
from ._mgmt import G, call, q, temp_user, temp_vhost


@scenario(G)
def permissions(ctx):
    """PUT (201, then 204), GET, lists by vhost and user; missing keys, an invalid regex
    and an unknown vhost or user are 400; DELETE 204 then 404."""
    vhost = temp_vhost(ctx, "vh")
    user = temp_user(ctx, "u", "management")
    path = f"/api/permissions/{q(vhost)}/{q(user)}"
    call(ctx, "set", "PUT", path, {"configure": "^x", "write": ".*", "read": ""})
    call(ctx, "set_again", "PUT", path, {"configure": ".*", "write": ".*", "read": ".*"})
    call(ctx, "show", "GET", path)
    call(ctx, "by_vhost", "GET", f"/api/vhosts/{q(vhost)}/permissions")
    call(ctx, "by_user", "GET", f"/api/users/{q(user)}/permissions")
    call(ctx, "missing_keys", "PUT", path, {"configure": ".*"})
    call(ctx, "unknown_vhost", "PUT", f"/api/permissions/{q(ctx.name('no'))}/{q(user)}",
         {"configure": ".*", "write": ".*", "read": ".*"})
    call(ctx, "unknown_user", "PUT", f"/api/permissions/{q(vhost)}/{q(ctx.name('no'))}",
         {"configure": ".*", "write": ".*", "read": ".*"})
    call(ctx, "management_user_lists", "GET", "/api/permissions", user=user, password="pw")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    call(ctx, "show_deleted", "GET", path)
    call(ctx, "unknown_vhost_list", "GET", f"/api/vhosts/{q(ctx.name('no'))}/permissions")


@scenario(G)
def topic_permissions(ctx):
    """Topic permissions per exchange: PUT 201/204, GET lists the user's in the vhost,
    missing keys are 400, DELETE clears them all (204), then 404."""
    vhost = temp_vhost(ctx, "vh")
    user = temp_user(ctx, "u")
    path = f"/api/topic-permissions/{q(vhost)}/{q(user)}"
    call(ctx, "set", "PUT", path, {"exchange": "amq.topic", "write": "^a", "read": "^b"})
    call(ctx, "set_again", "PUT", path, {"exchange": "amq.topic", "write": "^c", "read": ""})
    call(ctx, "set_other", "PUT", path, {"exchange": "x.other", "write": ".*", "read": ".*"})
    for label, where in (("show", path), ("by_vhost", f"/api/vhosts/{q(vhost)}/topic-permissions"),
                         ("by_user", f"/api/users/{q(user)}/topic-permissions")):
        status, listed = ctx.api("GET", where)  # RabbitMQ's order is its table's: sorted here
        ctx.log(label, status=status, body=sorted(listed, key=lambda p: p["exchange"]))
    call(ctx, "missing_keys", "PUT", path, {"write": ".*", "read": ".*"})
    call(ctx, "delete", "DELETE", path)
    call(ctx, "show_deleted", "GET", path)
    call(ctx, "delete_again", "DELETE", path)
