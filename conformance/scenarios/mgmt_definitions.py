"""/api/definitions and /api/definitions/{vhost}: export and import."""

from __future__ import annotations

import json
import uuid

from ..ctx import shape
from ..registry import scenario
from ._mgmt import G, call, q, temp_vhost


@scenario(G)
def definitions(ctx):
    """Export's sections; a vhost's export (a durable queue, an exchange, a binding, a
    policy); import of a document into a new vhost as JSON, per vhost, and as the web UI's
    multipart upload with a redirect (303); bad JSON and an unknown vhost."""
    vhost = temp_vhost(ctx, "vh")
    conn = ctx.connect(virtual_host=vhost)
    ch = conn.channel()
    ch.queue_declare("dq", durable=True, arguments={"x-max-length": 10})
    ch.exchange_declare("dx", "topic", durable=True)
    ch.queue_bind("dq", "dx", "a.#")
    conn.close()
    ctx.api("PUT", f"/api/policies/{q(vhost)}/p", {"pattern": "^d", "definition":
                                                    {"max-length": 3}})
    status, everything = ctx.api("GET", "/api/definitions")
    ctx.log("export", status=status, keys=sorted(everything))
    status, one = ctx.api("GET", f"/api/definitions/{q(vhost)}")
    ctx.log("vhost_export", status=status, keys=sorted(one),
            queues=one.get("queues"), exchanges=one.get("exchanges"),
            bindings=one.get("bindings"), policies=one.get("policies"),
            version=shape(one.get("rabbit_version")))
    call(ctx, "unknown_vhost_export", "GET", f"/api/definitions/{q(ctx.name('no'))}")
    target = ctx.name("imported")
    doc = {"vhosts": [{"name": target}],
           "permissions": [{"user": ctx.user, "vhost": target, "configure": ".*",
                            "write": ".*", "read": ".*"}],
           "queues": [{"name": "iq", "vhost": target, "durable": True, "auto_delete": False,
                       "arguments": {}}]}
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/vhosts/{q(target)}"))
    call(ctx, "import", "POST", "/api/definitions", doc)
    status, got = ctx.api("GET", f"/api/definitions/{q(target)}")
    ctx.log("imported", status=status, queues=got.get("queues"))
    call(ctx, "import_vhost", "POST", f"/api/definitions/{q(target)}",
         {"queues": [{"name": "iq2", "durable": True, "auto_delete": False,
                      "arguments": {}}]})
    status, got = ctx.api("GET", f"/api/definitions/{q(target)}")
    ctx.log("imported_vhost", status=status, queues=sorted(x["name"] for x in got["queues"]))
    boundary = uuid.uuid4().hex
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"defs.json\"\r\nContent-Type: application/json\r\n\r\n"
            f"{json.dumps({'vhosts': [{'name': target}]})}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"redirect\"\r\n\r\n"
            f"../../#/\r\n--{boundary}--\r\n").encode()
    call(ctx, "upload", "POST", "/api/definitions", raw=form,
         content_type=f"multipart/form-data; boundary={boundary}")
    call(ctx, "bad_json", "POST", "/api/definitions", raw=b"{nope")
