"""/api/vhosts and /api/vhosts/{vhost}: list, create, update, show, delete."""

from __future__ import annotations

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q, temp_user


def _nodeless(vhost: dict) -> dict:
    """cluster_state names the node: keep its states only."""
    return {**vhost, "cluster_state": sorted(vhost.get("cluster_state", {}).values())}


def show(ctx, label: str, path: str) -> None:
    status, body = ctx.api("GET", path)
    ctx.log(label, status=status, body=_nodeless(body) if isinstance(body, dict) else body)


@scenario(G)
def vhost_lifecycle(ctx):
    """PUT creates (201) with description and tags, PUT again updates (204), GET shows it
    (the creator has full permissions there); bad JSON is 400; DELETE 204 then 404."""
    name = ctx.name("vh")
    path = f"/api/vhosts/{q(name)}"
    ctx.on_cleanup(lambda: ctx.api("DELETE", path))
    call(ctx, "create", "PUT", path, {"description": "made here", "tags": "a,b"})
    show(ctx, "show", path)
    call(ctx, "update", "PUT", path, {"description": "changed", "tags": ["c"]})
    show(ctx, "show_updated", path)
    call(ctx, "creator_permissions", "GET", f"/api/permissions/{q(name)}/{ctx.user}")
    status, listed = ctx.api("GET", "/api/vhosts")
    mine = [v for v in listed if v.get("name") == name]
    ctx.log("listed", status=status, found=len(mine), item=_nodeless(mine[0]) if mine else None)
    call(ctx, "bad_json", "PUT", path, raw=b"{not json")
    call(ctx, "not_an_object", "PUT", path, raw=b"[1]")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    show(ctx, "show_deleted", path)


@scenario(G)
def vhost_default_and_access(ctx):
    """The default vhost as %2F (its fixed fields); a management user lists only vhosts it
    has permissions in and may not read one vhost (administrators only)."""
    _, default = ctx.api("GET", "/api/vhosts/%2F")
    ctx.log("default", name=default.get("name"), tracing=default.get("tracing"),
            cluster_state=sorted(default.get("cluster_state", {}).values()),
            shape={k: shape(default.get(k)) for k in (
                "name", "description", "tags", "default_queue_type", "metadata", "tracing")})
    mgmt = temp_user(ctx, "mgmt", "management")
    status, listed = ctx.api("GET", "/api/vhosts?columns=name", user=mgmt, password="pw")
    ctx.log("management_lists", status=status, body=listed)
    call(ctx, "management_reads_one", "GET", "/api/vhosts/%2F", user=mgmt, password="pw")
    call(ctx, "management_creates", "PUT", f"/api/vhosts/{q(ctx.name('x'))}", {},
         user=mgmt, password="pw")
    # (RabbitMQ 3.10 refuses a name filter on vhosts: "Pagination parameters are invalid")
    status, paged = ctx.api("GET", "/api/vhosts?page=1&page_size=1&columns=name")
    ctx.log("paged", status=status, keys=sorted(paged) if isinstance(paged, dict) else paged,
            page=paged.get("page"), page_size=paged.get("page_size"))
    call(ctx, "bad_page", "GET", "/api/vhosts?page=0")
