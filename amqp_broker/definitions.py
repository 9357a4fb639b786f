"""RabbitMQ's definitions JSON: import, export, and the runtime parameters it carries.

The format is RabbitMQ's (rabbit_definitions, the management plugin's
/api/definitions): users, vhosts, permissions, topic_permissions, parameters,
global_parameters, policies, queues, exchanges, bindings, plus rabbit_version /
rabbitmq_version / product_name / product_version. A file exported by RabbitMQ imports
as it is (password hashes included) and the other way round.

Import order is RabbitMQ's: users, vhosts, permissions, topic permissions, exchanges,
global parameters, policies, parameters, queues, bindings. Existing exchanges and
queues are left as they are; names starting with "amq." are skipped with a warning, as
there. Every entry is checked before anything is applied; a bad entry (or one that
fails to apply) raises DefinitionsError naming it. Policies and operator policies are
validated as RabbitMQ validates them and take effect (amqp_broker/policies.py); other
parameters are kept and exported again.

`amqp-broker export-definitions FILE [--data-dir DIR]` (`export_main`) writes the
definitions of a stopped broker's data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import decimal
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__, policies, queue_args
from .protocol.errors import AMQPError
from .users import DefinitionError, User, parse_tags

if TYPE_CHECKING:
    from .broker import Broker

PRODUCT_NAME = "amqp-broker"
SECTIONS = ("users", "vhosts", "permissions", "topic_permissions", "parameters",
            "global_parameters", "policies", "queues", "exchanges", "bindings")


class DefinitionsError(Exception):
    """Definitions that cannot be read or applied; the message names the entry."""


@dataclass
class VHostInfo:
    """What a vhost is besides its contents (RabbitMQ's vhost metadata)."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    default_queue_type: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {"kind": "vhost", "name": self.name, "description": self.description,
                "tags": list(self.tags), "default_queue_type": self.default_queue_type}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> VHostInfo:
        return cls(record["name"], record.get("description") or "",
                   parse_tags(record.get("tags")), record.get("default_queue_type"))

    def to_definition(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"description": self.description, "tags": list(self.tags)}
        if self.default_queue_type:
            metadata["default_queue_type"] = self.default_queue_type
        return {"name": self.name, **metadata, "metadata": metadata}


def vhost_key(name: str) -> str:
    return f"vhost\x00{name}"


def _no_change(vhost: str) -> None:
    return None


class RuntimeParameters:
    """Policies, vhost-scoped parameters and global parameters, kept verbatim and
    written through `save` (the broker's durable definitions). Whenever a policy or an
    operator policy of a vhost is set, cleared or restored, `changed(vhost)` runs (the
    broker re-applies policies there: policies.reapply)."""

    def __init__(self, save: Callable[[str, dict[str, Any] | None], None]) -> None:
        self.save = save
        self.changed: Callable[[str], None] = _no_change
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.parameters: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.global_parameters: dict[str, dict[str, Any]] = {}

    def set_policy(self, policy: dict[str, Any]) -> None:
        key = (policy["vhost"], policy["name"])
        self.policies[key] = policy
        self.save(f"policy\x00{key[0]}\x00{key[1]}", {"kind": "policy", "entry": policy})
        self.changed(key[0])

    def clear_policy(self, vhost: str, name: str) -> None:
        if self.policies.pop((vhost, name), None) is not None:
            self.save(f"policy\x00{vhost}\x00{name}", None)
            self.changed(vhost)

    def set_parameter(self, param: dict[str, Any]) -> None:
        key = (param["vhost"], param["component"], param["name"])
        self.parameters[key] = param
        self.save("param\x00" + "\x00".join(key), {"kind": "parameter", "entry": param})
        if key[1] == policies.OPERATOR_COMPONENT:
            self.changed(key[0])

    def clear_parameter(self, vhost: str, component: str, name: str) -> None:
        if self.parameters.pop((vhost, component, name), None) is not None:
            self.save(f"param\x00{vhost}\x00{component}\x00{name}", None)
            if component == policies.OPERATOR_COMPONENT:
                self.changed(vhost)

    def set_global_parameter(self, param: dict[str, Any]) -> None:
        self.global_parameters[param["name"]] = param
        self.save(f"gparam\x00{param['name']}", {"kind": "global_parameter", "entry": param})

    def clear_global_parameter(self, name: str) -> None:
        if self.global_parameters.pop(name, None) is not None:
            self.save(f"gparam\x00{name}", None)

    def forget_vhost(self, vhost: str) -> None:
        for v, name in [k for k in self.policies if k[0] == vhost]:
            self.clear_policy(v, name)
        for v, component, name in [k for k in self.parameters if k[0] == vhost]:
            self.clear_parameter(v, component, name)

    def restore(self, record: dict[str, Any]) -> None:
        entry = record["entry"]
        kind = record["kind"]
        if kind == "policy":
            self.policies[(entry["vhost"], entry["name"])] = entry
            self.changed(entry["vhost"])
        elif kind == "parameter":
            self.parameters[(entry["vhost"], entry["component"], entry["name"])] = entry
            if entry["component"] == policies.OPERATOR_COMPONENT:
                self.changed(entry["vhost"])
        elif kind == "global_parameter":
            self.global_parameters[entry["name"]] = entry


# --- reading ---------------------------------------------------------------------
def _label(section: str, index: int, entry: Any) -> str:
    """How an error names an entry: its kind and name, and where it is in the file."""
    singular = {"users": "user", "vhosts": "vhost", "permissions": "permission",
                "topic_permissions": "topic permission", "parameters": "parameter",
                "global_parameters": "global parameter", "policies": "policy",
                "queues": "queue", "exchanges": "exchange", "bindings": "binding"}[section]
    where = f"{section}[{index}]"
    if not isinstance(entry, dict):
        return f"{singular} {where}"
    if section == "bindings":
        what = (f"binding of {entry.get('destination_type', '?')} "
                f"'{entry.get('destination', '?')}' to exchange '{entry.get('source', '?')}'")
    elif section in ("permissions", "topic_permissions"):
        what = f"{singular} of user '{entry.get('user', '?')}'"
    else:
        what = f"{singular} '{entry.get('name', '?')}'"
    if section not in ("users", "vhosts", "global_parameters") and "vhost" in entry:
        what += f" in vhost '{entry['vhost']}'"
    return f"{what} ({where})"


def _str(entry: dict[str, Any], field: str, default: str | None = None) -> str:
    value = entry.get(field, default)
    if not isinstance(value, str):
        raise DefinitionError(f"'{field}' must be a string" if field in entry
                              else f"'{field}' is missing")
    return value


def _bool(entry: dict[str, Any], field: str, default: bool | None = None) -> bool:
    value = entry.get(field, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise DefinitionError(f"'{field}' must be true or false" if field in entry
                              else f"'{field}' is missing")
    return value


def _arguments(entry: dict[str, Any]) -> dict[str, Any]:
    value = entry.get("arguments")
    if value is None or value == []:
        return {}
    if not isinstance(value, dict):
        raise DefinitionError("'arguments' must be an object")
    return dict(value)


def load_file(path: str) -> list[tuple[str, dict[str, Any]]]:
    """The documents in a definitions file, or in each *.json file of a directory
    (in name order, as RabbitMQ's load_definitions does), with where each came from."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
        return [doc for n in names for doc in load_file(os.path.join(path, n))]
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DefinitionsError(f"cannot read definitions file {path}: "
                               f"{exc.strerror or exc}") from None
    return [(path, parse(raw, path))]


def parse(raw: bytes | str, source: str = "definitions") -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DefinitionsError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DefinitionsError(f"{source} must hold a JSON object, not "
                               f"{type(doc).__name__}")
    return doc


class _Plan:
    """A definitions document checked entry by entry, ready to apply."""

    def __init__(self, doc: dict[str, Any], source: str) -> None:
        self.source = source
        version = doc.get("rabbitmq_version", doc.get("rabbit_version"))
        self.users: list[tuple[str, User]] = []
        self.vhosts: list[tuple[str, VHostInfo]] = []
        self.permissions: list[tuple[str, dict[str, str]]] = []
        self.topic_permissions: list[tuple[str, dict[str, str]]] = []
        self.exchanges: list[tuple[str, dict[str, Any]]] = []
        self.queues: list[tuple[str, dict[str, Any]]] = []
        self.bindings: list[tuple[str, dict[str, Any]]] = []
        self.policies: list[tuple[str, dict[str, Any]]] = []
        self.parameters: list[tuple[str, dict[str, Any]]] = []
        self.global_parameters: list[tuple[str, dict[str, Any]]] = []
        for section in SECTIONS:
            entries = doc.get(section)
            if entries is None:
                continue
            if not isinstance(entries, list):
                raise DefinitionsError(f"{source}: '{section}' must be a list")
            for index, entry in enumerate(entries):
                label = _label(section, index, entry)
                try:
                    if not isinstance(entry, dict):
                        raise DefinitionError("must be an object")
                    self._read(section, entry, label, version)
                except (DefinitionError, KeyError, TypeError, ValueError) as exc:
                    raise DefinitionsError(f"{source}: {label}: {_reason(exc)}") from None

    def _read(self, section: str, e: dict[str, Any], label: str, version: object) -> None:
        if section == "users":
            self.users.append((label, User.from_definition(e, version)))
        elif section == "vhosts":
            meta = e.get("metadata") or {}
            if not isinstance(meta, dict):
                raise DefinitionError("'metadata' must be an object")
            dqt = e.get("default_queue_type", meta.get("default_queue_type"))
            if dqt is not None and dqt not in queue_args.TYPE_MODULES:
                raise DefinitionError(f"unknown default_queue_type {dqt!r}")
            self.vhosts.append((label, VHostInfo(
                _str(e, "name"), str(e.get("description", meta.get("description")) or ""),
                parse_tags(e.get("tags", meta.get("tags"))), dqt)))
        elif section == "permissions":
            self.permissions.append((label, {f: _str(e, f) for f in (
                "user", "vhost", "configure", "write", "read")}))
        elif section == "topic_permissions":
            self.topic_permissions.append((label, {f: _str(e, f) for f in (
                "user", "vhost", "exchange", "write", "read")}))
        elif section == "exchanges":
            self.exchanges.append((label, {
                "vhost": _str(e, "vhost"), "name": _str(e, "name"), "type": _str(e, "type"),
                "durable": _bool(e, "durable", True),
                "auto_delete": _bool(e, "auto_delete", False),
                "internal": _bool(e, "internal", False), "arguments": _arguments(e)}))
        elif section == "queues":
            args = _arguments(e)
            qtype = e.get("type")
            if isinstance(qtype, str) and qtype != "classic" and "x-queue-type" not in args:
                args["x-queue-type"] = qtype
            self.queues.append((label, {
                "vhost": _str(e, "vhost"), "name": _str(e, "name"),
                "durable": _bool(e, "durable", True),
                "auto_delete": _bool(e, "auto_delete", False), "arguments": args}))
        elif section == "bindings":
            dest_type = _str(e, "destination_type")
            if dest_type not in ("queue", "exchange"):
                raise DefinitionError("'destination_type' must be queue or exchange")
            self.bindings.append((label, {
                "vhost": _str(e, "vhost"), "source": _str(e, "source"),
                "destination": _str(e, "destination"), "destination_type": dest_type,
                "routing_key": _str(e, "routing_key", ""), "arguments": _arguments(e)}))
        elif section == "policies":
            definition = e.get("definition")
            if not isinstance(definition, dict):
                raise DefinitionError("'definition' must be an object")
            priority = e.get("priority", 0)
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise DefinitionError("'priority' must be an integer")
            apply_to = _str(e, "apply-to", "all")
            if apply_to not in policies.APPLY_TO:
                raise DefinitionError(f"unknown apply-to '{apply_to}'")
            pattern = _str(e, "pattern")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise DefinitionError(f"invalid pattern '{pattern}': {exc}") from None
            _check_policy_definition(definition, operator=False)
            self.policies.append((label, {
                "vhost": _str(e, "vhost"), "name": _str(e, "name"), "pattern": pattern,
                "apply-to": apply_to, "definition": definition, "priority": priority}))
        elif section == "parameters":
            if "value" not in e:
                raise DefinitionError("'value' is missing")
            value = e["value"]
            if (e.get("component") == "operator_policy" and isinstance(value, dict)
                    and _pairs(value.get("definition"))):
                # rabbitmqctl 3.10 exports an operator policy's definition as a list of
                # [key, value] pairs, which its own import refuses: keep it as an object
                value = {**value, "definition": dict(value["definition"])}
            if e.get("component") == policies.OPERATOR_COMPONENT:
                if not isinstance(value, dict):
                    raise DefinitionError("an operator policy's 'value' must be an object")
                _check_policy_definition(value.get("definition"), operator=True)
            self.parameters.append((label, {
                "vhost": _str(e, "vhost"), "component": _str(e, "component"),
                "name": _str(e, "name"), "value": value}))
        elif section == "global_parameters":
            if "value" not in e:
                raise DefinitionError("'value' is missing")
            self.global_parameters.append((label, {"name": _str(e, "name"),
                                                   "value": e["value"]}))


def _check_policy_definition(definition: Any, operator: bool) -> None:
    """DefinitionError with RabbitMQ's validation text for a definition it refuses."""
    try:
        policies.check_definition(definition, operator, escape=False)
    except policies.PolicyError as exc:
        raise DefinitionError(f"invalid definition: {exc}") from None


def _pairs(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AMQPError):
        return exc.text
    if isinstance(exc, KeyError):
        return f"'{exc.args[0]}' is missing"
    return str(exc)


# --- applying ----------------------------------------------------------------------
def import_definitions(broker: Broker, doc: dict[str, Any],
                       source: str = "definitions") -> dict[str, int]:
    """Apply a definitions document to the broker; returns how many entries of each
    section were applied (skipped ones not counted). DefinitionsError names the first
    bad entry; entries before it stay applied, as in RabbitMQ."""
    plan = _Plan(doc, source)
    counts = dict.fromkeys(SECTIONS, 0)
    log = broker.log

    def apply(section: str, entries: list[tuple[str, Any]],
              fn: Callable[[Any], object]) -> None:
        for label, entry in entries:
            try:
                if fn(entry) is not False:
                    counts[section] += 1
            except (AMQPError, DefinitionError, KeyError, TypeError, ValueError) as exc:
                raise DefinitionsError(f"{source}: {label}: {_reason(exc)}") from None

    access, runtime = broker.access, broker.runtime
    apply("users", plan.users, access.put_user)
    apply("vhosts", plan.vhosts, lambda i: broker.add_vhost(
        i.name, i.description, i.tags, i.default_queue_type))
    apply("permissions", plan.permissions, lambda p: access.set_permissions(
        p["user"], p["vhost"], p["configure"], p["write"], p["read"]))
    apply("topic_permissions", plan.topic_permissions, lambda p: access.set_topic_permissions(
        p["user"], p["vhost"], p["exchange"], p["write"], p["read"]))
    apply("exchanges", plan.exchanges, lambda x: _add_exchange(broker, x))
    apply("global_parameters", plan.global_parameters, runtime.set_global_parameter)
    apply("policies", plan.policies, lambda p: _in_vhost(broker, p, runtime.set_policy))
    apply("parameters", plan.parameters, lambda p: _in_vhost(broker, p, runtime.set_parameter))
    apply("queues", plan.queues, lambda q: _add_queue(broker, q))
    apply("bindings", plan.bindings, lambda b: _add_binding(broker, b))
    log.info("definitions imported", source=source,
             **{k: v for k, v in counts.items() if v})
    return counts


def _vhost(broker: Broker, name: str) -> Any:
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise DefinitionError(f"vhost '{name}' does not exist and is not defined in "
                              "the definitions")
    return vhost


def _in_vhost(broker: Broker, entry: dict[str, Any],
              apply: Callable[[dict[str, Any]], None]) -> None:
    _vhost(broker, entry["vhost"])
    apply(entry)


def _add_exchange(broker: Broker, x: dict[str, Any]) -> bool:
    vhost = _vhost(broker, x["vhost"])
    name = x["name"]
    if name == "" or name.startswith("amq."):
        broker.log.warning("definitions: skipping an exchange whose name is reserved",
                           exchange=name, vhost=vhost.name)
        return False
    if name in vhost.exchanges:
        return False
    vhost.declare_exchange(name, x["type"], False, x["durable"], x["auto_delete"],
                           x["internal"], x["arguments"])
    return True


def _add_queue(broker: Broker, q: dict[str, Any]) -> bool:
    vhost = _vhost(broker, q["vhost"])
    name = q["name"]
    if name.startswith("amq."):
        broker.log.warning("definitions: skipping a queue whose name begins with 'amq.'",
                           queue=name, vhost=vhost.name)
        return False
    if name == "":
        raise DefinitionError("a queue needs a name")
    if name in vhost.queues:
        return False
    queue_args.check_declare(q["arguments"], name, vhost.name, q["durable"], False,
                             q["auto_delete"])
    vhost.declare_queue(name, False, q["durable"], False, q["auto_delete"], q["arguments"],
                        None)
    return True


def _add_binding(broker: Broker, b: dict[str, Any]) -> None:
    vhost = _vhost(broker, b["vhost"])
    source = vhost.exchanges.get(b["source"])
    if source is None:
        raise DefinitionError(f"no exchange '{b['source']}' in vhost '{vhost.name}'")
    table = vhost.queues if b["destination_type"] == "queue" else vhost.exchanges
    dest = table.get(b["destination"])
    if dest is None:
        raise DefinitionError(f"no {b['destination_type']} '{b['destination']}' in vhost "
                              f"'{vhost.name}'")
    vhost.bind(source, dest, b["routing_key"], b["arguments"])


# --- exporting ---------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A field-table value as plain JSON, as RabbitMQ's rabbit_misc:amqp_table."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return str(value)


def export_definitions(broker: Broker) -> dict[str, Any]:
    """The broker's definitions in RabbitMQ's shape (as the management API's
    GET /api/definitions): exclusive queues, the default exchange and amq.* exchanges
    are left out, as there."""
    from .queue import Queue

    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in broker.vhosts.values():
        for ex in vhost.exchanges.values():
            if ex.name and not ex.name.startswith("amq."):
                exchanges.append({"name": ex.name, "vhost": vhost.name, "type": ex.type_name,
                                  "durable": ex.durable, "auto_delete": ex.auto_delete,
                                  "internal": ex.internal, "arguments": plain(ex.arguments)})
        for q in vhost.queues.values():
            if q.exclusive_owner is None:
                queues.append({"name": q.name, "vhost": vhost.name, "durable": q.durable,
                               "auto_delete": q.auto_delete, "arguments": plain(q.arguments)})
        for ex in vhost.exchanges.values():
            if ex is vhost.default_exchange:
                continue
            for dest, key, args in ex.table.bindings():
                is_queue = isinstance(dest, Queue)
                if isinstance(dest, Queue) and dest.exclusive_owner is not None:
                    continue
                assert isinstance(dest, (Queue, type(ex)))
                bindings.append({"source": ex.name, "vhost": vhost.name,
                                 "destination": dest.name,
                                 "destination_type": "queue" if is_queue else "exchange",
                                 "routing_key": key, "arguments": plain(args)})
    return {
        "rabbit_version": __version__,
        "rabbitmq_version": __version__,
        "product_name": PRODUCT_NAME,
        "product_version": __version__,
        "users": [u.to_definition() for u in broker.access.users.values()],
        "vhosts": [broker.vhost_info[name].to_definition() for name in broker.vhosts
                   if name in broker.vhost_info],
        "permissions": [p.to_definition() for p in broker.access.list_permissions()],
        "topic_permissions": [p.to_definition()
                              for p in broker.access.list_topic_permissions()],
        "parameters": list(broker.runtime.parameters.values()),
        "global_parameters": list(broker.runtime.global_parameters.values()),
        "policies": list(broker.runtime.policies.values()),
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


# --- amqp-broker export-definitions ----------------------------------------------------
def export_main(argv: Sequence[str] | None = None) -> int:
    """`amqp-broker export-definitions FILE [--data-dir DIR]`: the definitions of a
    stopped broker's data directory as JSON (FILE "-" is standard output)."""
    p = argparse.ArgumentParser(
        prog="amqp-broker export-definitions",
        description="Write the definitions (users, vhosts, permissions, queues, exchanges, "
                    "bindings, policies, parameters) kept in a stopped broker's data "
                    "directory as RabbitMQ's definitions JSON.")
    p.add_argument("file", help="where to write the JSON; - for standard output")
    p.add_argument("--data-dir", default=os.environ.get("AMQP_BROKER_DATA_DIR", "data"),
                   help="the broker's data directory [AMQP_BROKER_DATA_DIR] (default: ./data)")
    args = p.parse_args(argv)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # log lines never mix with the JSON
            doc = read_data_dir(args.data_dir)
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if args.file == "-":
            sys.stdout.write(text)
        else:
            with open(args.file, "w", encoding="utf-8") as f:
                f.write(text)
    except (OSError, DefinitionsError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f": {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        print(f"amqp-broker export-definitions: {detail}{where}", file=sys.stderr)
        return 1
    return 0


def read_data_dir(data_dir: str) -> dict[str, Any]:
    """Open a data directory's store read-only in spirit (nothing is added to it),
    recover, export and close it."""
    from .broker import Broker
    from .config import Config
    from .storage import StoreError
    from .storage.disk import DiskStore

    if not os.path.isdir(data_dir):
        raise DefinitionsError(f"no data directory at {data_dir}")
    store = DiskStore(data_dir)
    broker = Broker(Config(data_dir=data_dir), store)
    try:
        broker.recover(startup=False)
    except StoreError as exc:
        raise DefinitionsError(f"cannot read {data_dir}: {exc} (is a broker running on "
                               "it? stop it first)") from None
    try:
        return export_definitions(broker)
    finally:
        store.close()
