"""The verbs of `amqp-broker ctl`: one function each, from a parsed command line (a Context)
to an exit status, through the management API (amqp_broker.ctl_api).

amqp_broker.ctl parses the command line and reports the errors these raise.
"""

from __future__ import annotations

import argparse
import getpass
import html
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import ctl_format as fmt
from .ctl_api import PROG, Api, CtlError, HttpError, UsageError, quote


@dataclass(frozen=True)
class Listing:
    """One `list KIND`: its path (and the path within one vhost) and default columns."""

    path: str
    vhost_path: str | None  # with {vhost}; None: not per vhost
    columns: tuple[tuple[str, str], ...]  # (header, dotted path into the JSON)


def _same(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names)


LISTINGS: dict[str, Listing] = {
    "queues": Listing("/queues", "/queues/{vhost}", _same(
        "vhost", "name", "type", "durable", "auto_delete", "messages", "messages_ready",
        "messages_unacknowledged", "consumers", "state")),
    "exchanges": Listing("/exchanges", "/exchanges/{vhost}", _same(
        "vhost", "name", "type", "durable", "auto_delete", "internal")),
    "bindings": Listing("/bindings", "/bindings/{vhost}", _same(
        "vhost", "source", "destination", "destination_type", "routing_key", "arguments")),
    "connections": Listing("/connections", "/vhosts/{vhost}/connections", (
        *_same("name", "user", "vhost", "state", "channels", "protocol"),
        ("client", "client_properties.product"))),
    "channels": Listing("/channels", "/vhosts/{vhost}/channels", _same(
        "name", "user", "vhost", "number", "consumer_count", "messages_unacknowledged",
        "prefetch_count", "state")),
    "consumers": Listing("/consumers", "/consumers/{vhost}", (
        ("vhost", "queue.vhost"), ("queue", "queue.name"),
        ("channel", "channel_details.name"),
        *_same("consumer_tag", "ack_required", "prefetch_count", "exclusive", "active"))),
    "users": Listing("/users", None, _same("name", "tags")),
    "vhosts": Listing("/vhosts", None, _same("name", "description", "tags", "messages")),
    "permissions": Listing("/permissions", "/vhosts/{vhost}/permissions", _same(
        "user", "vhost", "configure", "write", "read")),
    "policies": Listing("/policies", "/policies/{vhost}", _same(
        "vhost", "name", "pattern", "apply-to", "definition", "priority")),
    "operator-policies": Listing("/operator-policies", "/operator-policies/{vhost}", _same(
        "vhost", "name", "pattern", "apply-to", "definition", "priority")),
}


@dataclass(frozen=True)
class Context:
    api: Api
    args: argparse.Namespace
    vhost: str | None  # None when --vhost was not given
    json: bool
    quiet: bool

    def say(self, text: str) -> None:
        """A confirmation for people (not with --json or --quiet)."""
        if not (self.json or self.quiet):
            print(text)

    def print_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False))


def _not_found(exc: HttpError, what: str) -> CtlError:
    if exc.status == 404:
        return CtlError(f"{what} not found")
    return exc


# --- verbs --------------------------------------------------------------------------------

def do_list(ctx: Context) -> int:
    listing = LISTINGS[ctx.args.kind]
    path = listing.path
    if ctx.vhost is not None:
        if listing.vhost_path is None:
            raise UsageError(f"--vhost does not apply to list {ctx.args.kind}")
        path = listing.vhost_path.format(vhost=quote(ctx.vhost))
    try:
        rows = ctx.api.get(path)
    except HttpError as exc:
        if exc.status == 404 and ctx.vhost is not None:
            raise CtlError(f"vhost {ctx.vhost!r} not found") from None
        raise
    if isinstance(rows, Mapping) and isinstance(rows.get("items"), list):
        rows = rows["items"]  # a paginated answer
    if not isinstance(rows, list):
        raise CtlError(f"GET /api{path}: expected a list, got {type(rows).__name__}")
    columns = (tuple((name, name) for name in ctx.args.columns) if ctx.args.columns
               else listing.columns)
    if ctx.json:
        if ctx.args.columns:
            rows = [{name: (None if (value := fmt.pick(row, path_)) is fmt.MISSING else value)
                     for name, path_ in columns} for row in rows]
        ctx.print_json(rows)
    else:
        sys.stdout.write(fmt.table(rows, columns))
    return 0


def _read_secret(value: str) -> str:
    if value != "-":
        return value
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    line = sys.stdin.readline()
    if not line:
        raise UsageError("PASSWORD is -, but standard input is empty")
    return line.rstrip("\r\n")


def do_add_user(ctx: Context) -> int:
    a = ctx.args
    if (a.new_password is None) == (a.password_hash is None):
        raise UsageError("add-user takes a PASSWORD or --password-hash (one of them)")
    body: dict[str, Any] = {"tags": a.tags}
    if a.password_hash is not None:
        body["password_hash"] = a.password_hash
    else:
        body["password"] = _read_secret(a.new_password)
    ctx.api.call("PUT", f"/users/{quote(a.name)}", body)
    ctx.say(f"user {a.name!r} added" + (f" with tags {a.tags}" if a.tags else ""))
    return 0


def _delete(ctx: Context, path: str, what: str, done: str,
            headers: Mapping[str, str] | None = None) -> int:
    """DELETE path; a 404 is `WHAT not found`, success says `WHAT DONE`."""
    try:
        ctx.api.call("DELETE", path, headers=headers)
    except HttpError as exc:
        raise _not_found(exc, what) from None
    ctx.say(f"{what} {done}")
    return 0


def do_delete_user(ctx: Context) -> int:
    name = ctx.args.name
    return _delete(ctx, f"/users/{quote(name)}", f"user {name!r}", "deleted")


def do_add_vhost(ctx: Context) -> int:
    a = ctx.args
    body = {key: value for key, value in (("description", a.description), ("tags", a.tags),
                                          ("default_queue_type", a.default_queue_type))
            if value is not None}
    ctx.api.call("PUT", f"/vhosts/{quote(a.name)}", body)
    ctx.say(f"vhost {a.name!r} added")
    return 0


def do_delete_vhost(ctx: Context) -> int:
    name = ctx.args.name
    return _delete(ctx, f"/vhosts/{quote(name)}", f"vhost {name!r}", "deleted")


def do_set_permissions(ctx: Context) -> int:
    a, vhost = ctx.args, ctx.vhost or "/"
    body = {"configure": a.configure, "write": a.write, "read": a.read}
    try:
        ctx.api.call("PUT", f"/permissions/{quote(vhost)}/{quote(a.user)}", body)
    except HttpError as exc:
        if exc.status == 404:  # RabbitMQ: the vhost; a missing user is a 400
            raise CtlError(f"vhost {vhost!r} not found") from None
        raise
    ctx.say(f"permissions of user {a.user!r} in vhost {vhost!r} set")
    return 0


def do_clear_permissions(ctx: Context) -> int:
    user, vhost = ctx.args.user, ctx.vhost or "/"
    return _delete(ctx, f"/permissions/{quote(vhost)}/{quote(user)}",
                   f"permissions of user {user!r} in vhost {vhost!r}", "cleared")


def _set_policy(ctx: Context, path: str, what: str) -> int:
    a, vhost = ctx.args, ctx.vhost or "/"
    try:
        definition = json.loads(a.definition)
    except ValueError as exc:
        raise UsageError(f"DEFINITION is not JSON: {exc}") from None
    body = {"pattern": a.pattern, "definition": definition, "priority": a.priority,
            "apply-to": a.apply_to}
    try:
        ctx.api.call("PUT", f"{path}/{quote(vhost)}/{quote(a.name)}", body)
    except HttpError as exc:
        if exc.status == 404:
            raise CtlError(f"vhost {vhost!r} not found") from None
        if exc.status == 400:  # RabbitMQ's validation text, without its heading
            reason = exc.reason.replace("Validation failed", "").strip()
            raise CtlError(f"{what} {a.name!r} refused: "
                           + html.unescape(reason or exc.error)) from None
        raise
    ctx.say(f"{what} {a.name!r} set in vhost {vhost!r}")
    return 0


def do_set_policy(ctx: Context) -> int:
    return _set_policy(ctx, "/policies", "policy")


def do_set_operator_policy(ctx: Context) -> int:
    return _set_policy(ctx, "/operator-policies", "operator policy")


def do_clear_policy(ctx: Context) -> int:
    name, vhost = ctx.args.name, ctx.vhost or "/"
    return _delete(ctx, f"/policies/{quote(vhost)}/{quote(name)}",
                   f"policy {name!r} in vhost {vhost!r}", "cleared")


def do_clear_operator_policy(ctx: Context) -> int:
    name, vhost = ctx.args.name, ctx.vhost or "/"
    return _delete(ctx, f"/operator-policies/{quote(vhost)}/{quote(name)}",
                   f"operator policy {name!r} in vhost {vhost!r}", "cleared")


def do_purge_queue(ctx: Context) -> int:
    name, vhost = ctx.args.name, ctx.vhost or "/"
    return _delete(ctx, f"/queues/{quote(vhost)}/{quote(name)}/contents",
                   f"queue {name!r} in vhost {vhost!r}", "purged")


def do_delete_queue(ctx: Context) -> int:
    a, vhost = ctx.args, ctx.vhost or "/"
    query = "&".join(flag + "=true" for flag, on in (("if-empty", a.if_empty),
                                                     ("if-unused", a.if_unused)) if on)
    path = f"/queues/{quote(vhost)}/{quote(a.name)}" + (f"?{query}" if query else "")
    return _delete(ctx, path, f"queue {a.name!r} in vhost {vhost!r}", "deleted")


def do_close_connection(ctx: Context) -> int:
    name, reason = ctx.args.name, ctx.args.reason
    if reason and not reason.isprintable():
        raise UsageError("--reason must be one line of printable text")
    # an HTTP header carries bytes: the reason's UTF-8, which RabbitMQ reads as such
    headers = {"X-Reason": reason.encode().decode("latin-1")} if reason else {}
    return _delete(ctx, f"/connections/{quote(name)}", f"connection {name!r}", "closed",
                   headers)


def _definitions_path(ctx: Context) -> str:
    return "/definitions" if ctx.vhost is None else f"/definitions/{quote(ctx.vhost)}"


def do_export_definitions(ctx: Context) -> int:
    path = _definitions_path(ctx)
    try:
        definitions = ctx.api.get(path)
    except HttpError as exc:
        raise _not_found(exc, f"vhost {ctx.vhost!r}") from None
    text = json.dumps(definitions, indent=2, ensure_ascii=False) + "\n"
    file = ctx.args.file
    if file == "-":
        sys.stdout.write(text)
        return 0
    _write_atomically(file, text)
    ctx.say(f"definitions exported to {file}")
    return 0


def _write_atomically(file: str, text: str) -> None:
    """The whole file or, on failure, the old one: a full disk leaves no half export."""
    directory = os.path.dirname(os.path.abspath(file))
    try:
        fd, temp = tempfile.mkstemp(prefix=".definitions-", dir=directory)
    except OSError as exc:
        raise CtlError(f"cannot write {file}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, file)
    except OSError as exc:
        os.unlink(temp)
        raise CtlError(f"cannot write {file}: {exc.strerror}") from None


def do_import_definitions(ctx: Context) -> int:
    file = ctx.args.file
    source = "standard input" if file == "-" else file
    try:
        if file == "-":
            text = sys.stdin.read()
        else:
            with open(file, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CtlError(f"cannot read {source}: {why}") from None
    try:
        definitions = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CtlError(f"{source} is not JSON: {exc.msg} at line {exc.lineno} "
                       f"column {exc.colno}") from None
    if not isinstance(definitions, dict):
        raise CtlError(f"{source}: definitions are a JSON object, not "
                       f"{type(definitions).__name__}")
    try:
        ctx.api.call("POST", _definitions_path(ctx), definitions)
    except HttpError as exc:
        raise _not_found(exc, f"vhost {ctx.vhost!r}") from None
    ctx.say(f"definitions imported from {source}")
    return 0


def do_ping(ctx: Context) -> int:
    path = ("/health/checks/virtual-hosts" if ctx.vhost is None
            else f"/aliveness-test/{quote(ctx.vhost)}")
    reply = ctx.api.request("GET", path)
    body = reply.body if isinstance(reply.body, Mapping) else {}
    if reply.status == 404 and ctx.vhost is not None:
        raise CtlError(f"vhost {ctx.vhost!r} not found")
    if reply.status >= 400 and reply.status != 503:
        raise ctx.api.error("GET", path, reply)
    if ctx.json:
        ctx.print_json(reply.body)
    if reply.status == 200 and body.get("status") == "ok":
        ctx.say("ok")
        return 0
    reason = body.get("reason") or f"status {body.get('status', reply.status)}"
    if body.get("virtual-hosts"):  # RabbitMQ names the vhosts that are down
        reason = f"{reason}: {', '.join(map(str, body['virtual-hosts']))}"
    print(f"{PROG}: health check failed: {reason}", file=sys.stderr)
    return 1


def _alarms(ctx: Context, nodes: list[Any] | None) -> list[dict[str, Any]]:
    """Active resource alarms, as RabbitMQ's /api/health/checks/alarms lists them."""
    reply = ctx.api.request("GET", "/health/checks/alarms")
    if reply.status == 200:
        return []
    if reply.status == 503 and isinstance(reply.body, Mapping):
        return [dict(alarm) for alarm in reply.body.get("alarms", [])
                if isinstance(alarm, Mapping)]
    if reply.status == 404 and nodes is not None:  # no such check: the nodes' flags
        return [{"resource": resource, "node": node.get("name")} for node in nodes
                for resource, flag in (("memory", "mem_alarm"), ("disk space", "disk_free_alarm"))
                if node.get(flag)]
    raise ctx.api.error("GET", "/health/checks/alarms", reply)


NODE_FIELDS = ("name", "uptime", "mem_used", "mem_limit", "mem_alarm", "disk_free",
               "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total", "proc_used",
               "proc_total", "running")


def do_status(ctx: Context) -> int:
    overview = ctx.api.get("/overview")
    if not isinstance(overview, Mapping):
        raise CtlError("GET /api/overview: expected an object")
    try:
        nodes = ctx.api.get("/nodes")  # needs the monitoring tag: optional
    except HttpError:
        nodes = None
    nodes = [node for node in nodes if isinstance(node, Mapping)] if isinstance(nodes, list) \
        else None
    alarms = _alarms(ctx, nodes)
    if ctx.json:
        ctx.print_json({"ok": not alarms, "alarms": alarms, "overview": overview,
                        "nodes": None if nodes is None else
                        [{key: node[key] for key in NODE_FIELDS if key in node}
                         for node in nodes]})
    else:
        sys.stdout.write(fmt.pairs(_status_lines(overview, nodes or [], alarms)))
    return 1 if alarms else 0


def _status_lines(overview: Mapping[str, Any], nodes: list[Any],
                  alarms: list[dict[str, Any]]) -> list[tuple[str, str]]:
    product = f"{overview.get('product_name', '?')} {overview.get('product_version', '?')}"
    rabbitmq = overview.get("rabbitmq_version")
    if rabbitmq and rabbitmq != overview.get("product_version"):
        product += f" (RabbitMQ {rabbitmq} API)"
    lines = [("product", product), ("node", fmt.cell(overview.get("node")))]
    listeners = [f"{item.get('protocol')} {_address(item)}"
                 for item in overview.get("listeners") or [] if isinstance(item, Mapping)]
    lines.append(("listeners", ", ".join(listeners) or "none"))
    totals = overview.get("object_totals") or {}
    for name in ("connections", "channels", "exchanges", "queues", "consumers"):
        lines.append((name, fmt.cell(totals.get(name, "?"))))
    queued = overview.get("queue_totals") or {}
    lines.append(("messages", f"{queued.get('messages', 0)} ({queued.get('messages_ready', 0)} "
                              f"ready, {queued.get('messages_unacknowledged', 0)} "
                              "unacknowledged)"))
    stats = overview.get("message_stats") or {}
    rates = [f"{label} {rate:.1f}/s" for label, key in (("publish", "publish_details"),
                                                          ("deliver", "deliver_get_details"),
                                                          ("ack", "ack_details"))
             if isinstance(rate := fmt.pick(stats, key + ".rate"), (int, float))]
    if rates:
        lines.append(("rates", ", ".join(rates)))
    for node in nodes:
        prefix = "" if len(nodes) == 1 else f"{node.get('name')} "
        if "uptime" in node:
            lines.append((prefix + "uptime", fmt.duration(node["uptime"])))
        if "mem_used" in node:
            lines.append((prefix + "memory", f"{fmt.size(node['mem_used'])} used, alarm at "
                                             f"{fmt.size(node.get('mem_limit'))}"))
        if "disk_free" in node:
            lines.append((prefix + "disk free", f"{fmt.size(node['disk_free'])}, alarm below "
                                                f"{fmt.size(node.get('disk_free_limit'))}"))
    lines.append(("alarms", "; ".join(f"{a.get('resource')} alarm on {a.get('node')}"
                                      for a in alarms) or "none"))
    return lines


def _address(listener: Mapping[str, Any]) -> str:
    ip = str(listener.get("ip_address", ""))
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{listener.get('port')}"


VERBS: dict[str, Callable[[Context], int]] = {
    "list": do_list,
    "add-user": do_add_user,
    "delete-user": do_delete_user,
    "add-vhost": do_add_vhost,
    "delete-vhost": do_delete_vhost,
    "set-permissions": do_set_permissions,
    "clear-permissions": do_clear_permissions,
    "set-policy": do_set_policy,
    "clear-policy": do_clear_policy,
    "set-operator-policy": do_set_operator_policy,
    "clear-operator-policy": do_clear_operator_policy,
    "purge-queue": do_purge_queue,
    "delete-queue": do_delete_queue,
    "close-connection": do_close_connection,
    "export-definitions": do_export_definitions,
    "import-definitions": do_import_definitions,
    "ping": do_ping,
    "status": do_status,
}
