"""/api/policies, /api/parameters and /api/global-parameters."""

from __future__ import annotations

from ..registry import scenario
from ._mgmt import G, call, q, temp_user, temp_vhost


@scenario(G)
def policies(ctx):
    """PUT a policy (201, 204 on update), GET it and the vhost's list; a missing definition,
    an unknown setting, a bad value, a bad pattern and a bad apply-to are 400; an unknown
    vhost is 404; a management user lists only its vhosts' policies, a monitoring user may
    not list another vhost's; DELETE 204 then 404."""
    vhost = temp_vhost(ctx, "vh")
    path = f"/api/policies/{q(vhost)}/p1"
    call(ctx, "create", "PUT", path, {"pattern": "^a", "definition": {"max-length": 5}})
    call(ctx, "update", "PUT", path, {"pattern": "^a", "definition": {"max-length": 6},
                                      "priority": 3, "apply-to": "queues"})
    call(ctx, "show", "GET", path)
    call(ctx, "by_vhost", "GET", f"/api/policies/{q(vhost)}")
    call(ctx, "no_definition", "PUT", path, {"pattern": "^a"})
    call(ctx, "unknown_setting", "PUT", path, {"pattern": "^a", "definition": {"nope": 1}})
    call(ctx, "bad_value", "PUT", path, {"pattern": "^a", "definition": {"max-length": "x"}})
    call(ctx, "bad_apply_to", "PUT", path, {"pattern": "^a", "definition": {"max-length": 1},
                                            "apply-to": "bad"})
    call(ctx, "unknown_vhost", "PUT", f"/api/policies/{q(ctx.name('no'))}/p1",
         {"pattern": "^a", "definition": {"max-length": 5}})
    mon = temp_user(ctx, "mon", "monitoring")
    call(ctx, "monitor_lists", "GET", "/api/policies", user=mon, password="pw")
    call(ctx, "monitor_vhost", "GET", f"/api/policies/{q(vhost)}", user=mon, password="pw")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)


@scenario(G)
def parameters(ctx):
    """vhost-limits parameters and global parameters: PUT 201/204, GET one and the lists,
    a missing value and an unknown component are 400, DELETE 204 then 404; a management
    user may not read parameters, a policymaker may read global parameters."""
    vhost = temp_vhost(ctx, "vh")
    path = f"/api/parameters/vhost-limits/{q(vhost)}/limits"
    call(ctx, "create", "PUT", path, {"value": {"max-connections": 100}})
    call(ctx, "update", "PUT", path, {"value": {"max-connections": 50}})
    call(ctx, "show", "GET", path)
    call(ctx, "by_component_vhost", "GET", f"/api/parameters/vhost-limits/{q(vhost)}")
    call(ctx, "no_value", "PUT", path, {"nope": 1})
    call(ctx, "unknown_component", "PUT", f"/api/parameters/nope/{q(vhost)}/x", {"value": 1})
    mgmt = temp_user(ctx, "mgmt", "management")
    call(ctx, "management_reads", "GET", "/api/parameters", user=mgmt, password="pw")
    call(ctx, "delete", "DELETE", path)
    call(ctx, "delete_again", "DELETE", path)
    name = ctx.name("g")
    gpath = f"/api/global-parameters/{q(name)}"
    ctx.on_cleanup(lambda: ctx.api("DELETE", gpath))
    call(ctx, "global_create", "PUT", gpath, {"value": {"a": 1}})
    call(ctx, "global_update", "PUT", gpath, {"value": {"a": [1, 2]}})
    call(ctx, "global_show", "GET", gpath)
    call(ctx, "global_no_value", "PUT", gpath, {"x": 1})
    status, listed = ctx.api("GET", "/api/global-parameters")
    ctx.log("global_listed", status=status, mine=[p for p in listed if p["name"] == name],
            has_cluster_name=any(p["name"] == "cluster_name" for p in listed))
    pm = temp_user(ctx, "pm", "policymaker")
    status, _ = ctx.api("GET", "/api/global-parameters", user=pm, password="pw")
    ctx.log("policymaker_reads_global", status=status)
    call(ctx, "management_reads_global", "GET", "/api/global-parameters", user=mgmt,
         password="pw")
    call(ctx, "global_delete", "DELETE", gpath)
    call(ctx, "global_delete_again", "DELETE", gpath)
