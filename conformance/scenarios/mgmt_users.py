"""/api/users: list, create with a password or a hash, update, delete, bulk delete."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q


@scenario(G)
def user_lifecycle(ctx):
    """PUT with password and tags (201, logs in), with tags only (204, no password now),
    with a password hash made by RabbitMQ's algorithm (logs in); errors: no tags, both
    password and hash, a hash that is not base64; DELETE, and bulk-delete stopping at an
    unknown user."""
    name = ctx.name("u")
    path = f"/api/users/{q(name)}"
    ctx.on_cleanup(lambda: ctx.api("DELETE", path))
    call(ctx, "create", "PUT", path, {"password": "s3cret", "tags": "management"})
    _, shown = ctx.api("GET", path)
    ctx.log("show", shape=shape(shown), tags=shown.get("tags"), limits=shown.get("limits"),
            hashing_algorithm=shown.get("hashing_algorithm"))
    call(ctx, "login", "GET", "/api/whoami", user=name, password="s3cret")
    call(ctx, "no_tags", "PUT", path, {"password": "x"})
    call(ctx, "both", "PUT", path, {"password": "x", "password_hash": "abc", "tags": ""})
    call(ctx, "not_base64", "PUT", path, {"password_hash": "not b64!", "tags": ""})
    call(ctx, "tags_only", "PUT", path, {"tags": "monitoring,management"})
    _, shown = ctx.api("GET", path)
    ctx.log("after_tags_only", password_hash=shown.get("password_hash"), tags=shown.get("tags"))
    call(ctx, "login_without_password", "GET", "/api/whoami", user=name, password="s3cret")
    # "test12" hashed by SHA-256 with a salt, the example of RabbitMQ's password docs
    call(ctx, "with_hash", "PUT", path,
         {"password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
          "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "management"})
    call(ctx, "login_with_hash", "GET", "/api/whoami", user=name, password="test12")
    status, listed = ctx.api("GET", "/api/users")
    ctx.log("listed", status=status, found=len([u for u in listed if u.get("name") == name]))
    status, without = ctx.api("GET", "/api/users/without-permissions")
    ctx.log("without_permissions", status=status,
            listed=[u["name"] for u in without if u.get("name") == name])
    other = ctx.name("u2")
    ctx.api("PUT", f"/api/users/{q(other)}", {"password": "x", "tags": ""})
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/users/{q(other)}"))
    call(ctx, "bulk_delete", "POST", "/api/users/bulk-delete",
         {"users": [other, ctx.name("nobody")]})
    call(ctx, "deleted_by_bulk", "GET", f"/api/users/{q(other)}")
    call(ctx, "bulk_without_users", "POST", "/api/users/bulk-delete", {"names": []})
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    call(ctx, "unknown_permissions", "GET", f"/api/users/{q(name)}/permissions")
