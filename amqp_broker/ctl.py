"""`amqp-broker ctl VERB ...`: operate a running broker through its management HTTP API.

The API has RabbitMQ's paths and JSON, so this works against RabbitMQ too. Only the
standard library talks HTTP (urllib.request): the command works in a minimal install.

Where and who: --url (default http://127.0.0.1:15672), --user and --password (default
guest/guest); variables AMQP_BROKER_CTL_URL, _USER and _PASSWORD when the flags are
absent (a password in a variable stays out of `ps`); without those, the broker's own
AMQP_BROKER_DEFAULT_USER/_PASS (or RABBITMQ_DEFAULT_USER/_PASS) and
AMQP_BROKER_MANAGEMENT_PORT, so it works unconfigured inside the broker's container.
Output is an aligned table for people, or the API's JSON with --json. Exit status: 0
done, 1 failed (unreachable, refused, not found, a failed health check, an active
alarm), 2 bad usage. Every failure is one line on stderr starting `amqp-broker ctl:`.

`ping` is a liveness probe (the API answers and every virtual host runs; with --vhost,
RabbitMQ's aliveness test in that vhost); `status` also fails while a resource alarm
(memory, disk) blocks publishers, so it suits a readiness probe.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from . import ctl_format as fmt

PROG = "amqp-broker ctl"
DEFAULT_URL = "http://127.0.0.1:15672"
DEFAULT_USER = "guest"
DEFAULT_PASSWORD = "guest"  # noqa: S105 (RabbitMQ's well-known default)
DEFAULT_TIMEOUT = 10.0
ENV_URL = "AMQP_BROKER_CTL_URL"
ENV_USER = "AMQP_BROKER_CTL_USER"
ENV_PASSWORD = "AMQP_BROKER_CTL_PASSWORD"  # noqa: S105
# the broker's own variables, read when the AMQP_BROKER_CTL_* ones are unset, so
# `amqp-broker ctl ping` run inside the broker's container (a HEALTHCHECK) logs in as the
# default user the container was started with, on its management port; the first set wins
BROKER_USER_VARIABLES = ("AMQP_BROKER_DEFAULT_USER", "RABBITMQ_DEFAULT_USER")
BROKER_PASSWORD_VARIABLES = ("AMQP_BROKER_DEFAULT_PASS", "RABBITMQ_DEFAULT_PASS")
BROKER_PORT_VARIABLE = "AMQP_BROKER_MANAGEMENT_PORT"


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


# --- the command line ---------------------------------------------------------------------

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
}

# options every verb takes, before or after the verb: (flags, argparse keywords); their
# dests start with opt_ so a verb's positional (set-permissions USER) cannot overwrite one
COMMON: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--url",), {
        "dest": "opt_url", "metavar": "URL",
        "help": f"management API base URL [{ENV_URL}] (default {DEFAULT_URL}, or the "
                f"port in {BROKER_PORT_VARIABLE})"}),
    (("-u", "--user"), {
        "dest": "opt_user", "metavar": "USER",
        "help": f"user to log in as [{ENV_USER}] (default: the broker's default user "
                f"from {' or '.join(BROKER_USER_VARIABLES)}, else guest)"}),
    (("--password",), {
        "dest": "opt_password", "metavar": "PASSWORD",
        "help": f"its password [{ENV_PASSWORD}] (default: "
                f"{' or '.join(BROKER_PASSWORD_VARIABLES)}, else guest); the variable keeps "
                "it out of the process list"}),
    (("-p", "--vhost"), {
        "dest": "opt_vhost", "metavar": "VHOST",
        "help": "virtual host (default: every vhost for list and the definitions, / for "
                "the others)"}),
    (("--json",), {
        "dest": "opt_json", "action": "store_true",
        "help": "print the API's JSON instead of a table"}),
    (("-q", "--quiet"), {
        "dest": "opt_quiet", "action": "store_true",
        "help": "print nothing on success except requested data"}),
    (("--timeout",), {
        "dest": "opt_timeout", "type": float, "metavar": "SECONDS",
        "help": f"give up on an answer after this long (default {DEFAULT_TIMEOUT:g})"}),
)
VALUE_FLAGS = frozenset(flag for flags, kw in COMMON if "action" not in kw for flag in flags)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    for flags, keywords in COMMON:
        # suppressed defaults: a flag given before the verb is not reset by the verb's parser
        common.add_argument(*flags, default=argparse.SUPPRESS, **keywords)
    p = _Parser(prog=PROG, parents=[common],
                description="Operate a running broker (or RabbitMQ) through its management "
                            "HTTP API.",
                epilog="Exit status: 0 done, 1 failed (also a failed health check or an "
                       "active alarm), 2 bad usage. rabbitmqctl's spellings (list_queues, "
                       "add_user) work too.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help, description=help, parents=[common])

    v = verb("list", "list queues, exchanges, bindings, connections, channels, consumers, "
                     "users, vhosts or permissions")
    v.add_argument("kind", choices=sorted(LISTINGS), metavar="KIND",
                   help="one of: " + ", ".join(LISTINGS))
    v.add_argument("columns", nargs="*", metavar="COLUMN",
                   help="fields to show instead of the default ones (dotted for nested "
                        "ones, e.g. message_stats.publish)")

    v = verb("add-user", "create a user, or update its password and tags")
    v.add_argument("name", metavar="NAME")
    v.add_argument("new_password", nargs="?", metavar="PASSWORD",
                   help="the user's password; - reads it from standard input")
    v.add_argument("--tags", default="", metavar="TAGS",
                   help="comma-separated tags, e.g. administrator or monitoring")
    v.add_argument("--password-hash", metavar="HASH",
                   help="a RabbitMQ password hash instead of a password")
    v = verb("delete-user", "delete a user")
    v.add_argument("name", metavar="NAME")

    v = verb("add-vhost", "create a virtual host")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--description", metavar="TEXT")
    v.add_argument("--tags", metavar="TAGS", help="comma-separated tags")
    v.add_argument("--default-queue-type", metavar="TYPE", help="classic, quorum or stream")
    v = verb("delete-vhost", "delete a virtual host and everything in it")
    v.add_argument("name", metavar="NAME")

    v = verb("set-permissions", "grant a user permissions in a vhost (regular expressions)")
    v.add_argument("user", metavar="USER")
    v.add_argument("configure", metavar="CONFIGURE")
    v.add_argument("write", metavar="WRITE")
    v.add_argument("read", metavar="READ")
    v = verb("clear-permissions", "revoke a user's permissions in a vhost")
    v.add_argument("user", metavar="USER")

    v = verb("purge-queue", "delete every ready message of a queue")
    v.add_argument("name", metavar="NAME")
    v = verb("delete-queue", "delete a queue")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--if-empty", action="store_true", help="only if it holds no messages")
    v.add_argument("--if-unused", action="store_true", help="only if it has no consumers")

    v = verb("close-connection", "close a client connection (names from list connections)")
    v.add_argument("name", metavar="NAME")
    v.add_argument("--reason", metavar="TEXT", help="text sent to the client in connection.close")

    v = verb("export-definitions", "save users, vhosts, permissions, queues, exchanges, "
                                   "bindings and policies as JSON")
    v.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="where to write them (default, or -: standard output)")
    v = verb("import-definitions", "load definitions JSON into the broker")
    v.add_argument("file", nargs="?", default="-", metavar="FILE",
                   help="where to read them (default, or -: standard input)")

    verb("ping", "exit 0 if the API answers and every vhost runs (with --vhost: RabbitMQ's "
                 "aliveness test there); for liveness probes")
    verb("status", "version, listeners, totals and alarms; exit 1 while an alarm is active "
                   "(for readiness probes)")
    return p


def _parse(arguments: list[str]) -> argparse.Namespace:
    """The arguments; column names after `list KIND`'s options are columns too (argparse
    would not take positionals again after an option)."""
    p = parser()
    args, extra = p.parse_known_args(arguments)
    if extra:
        if args.verb == "list" and not any(arg.startswith("-") for arg in extra):
            args.columns = [*args.columns, *extra]
        else:
            p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def normalize(argv: Sequence[str]) -> list[str]:
    """rabbitmqctl's spellings: list_queues -> list queues, add_user -> add-user."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv
        if arg.startswith("-"):
            i += 2 if arg in VALUE_FLAGS else 1
            continue
        word = arg.replace("_", "-")
        if word.startswith("list-") and word[5:] in LISTINGS:
            argv[i:i + 1] = ["list", word[5:]]
        elif "_" in arg and word in VERBS:
            argv[i] = word
        return argv
    return argv


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


def _setting(args: argparse.Namespace, name: str, env: str, default: str) -> str:
    value = getattr(args, name, None)
    if value is None:
        value = os.environ.get(env) or default
    return str(value)


def _first_variable(names: Sequence[str]) -> str:
    return next((os.environ[name] for name in names if os.environ.get(name)), "")


def _default_url() -> str:
    port = os.environ.get(BROKER_PORT_VARIABLE, "").strip()
    if port.isdigit() and 0 < int(port) < 65536:
        return f"http://127.0.0.1:{int(port)}"
    return DEFAULT_URL


def _context(args: argparse.Namespace) -> Context:
    url = _setting(args, "opt_url", ENV_URL, _default_url())
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be http://HOST[:PORT] or https://..., not {url!r}")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        raise UsageError(f"--url has a bad port: {url!r}") from None
    user = _setting(args, "opt_user", ENV_USER, "")
    password = _setting(args, "opt_password", ENV_PASSWORD, "")
    if parts.username is not None:  # http://user:pass@host: flags and variables still win
        user = user or urllib.parse.unquote(parts.username)
        password = password or urllib.parse.unquote(parts.password or "")
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    user = user or _first_variable(BROKER_USER_VARIABLES)
    password = password or _first_variable(BROKER_PASSWORD_VARIABLES)
    timeout = getattr(args, "opt_timeout", None)
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    api = Api(url, user or DEFAULT_USER, password or DEFAULT_PASSWORD, timeout)
    return Context(api, args, getattr(args, "opt_vhost", None),
                   bool(getattr(args, "opt_json", False)), bool(getattr(args, "opt_quiet", False)))


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


def do_delete_user(ctx: Context) -> int:
    try:
        ctx.api.call("DELETE", f"/users/{quote(ctx.args.name)}")
    except HttpError as exc:
        raise _not_found(exc, f"user {ctx.args.name!r}") from None
    ctx.say(f"user {ctx.args.name!r} deleted")
    return 0


def do_add_vhost(ctx: Context) -> int:
    a = ctx.args
    body = {key: value for key, value in (("description", a.description), ("tags", a.tags),
                                          ("default_queue_type", a.default_queue_type))
            if value is not None}
    ctx.api.call("PUT", f"/vhosts/{quote(a.name)}", body)
    ctx.say(f"vhost {a.name!r} added")
    return 0


def do_delete_vhost(ctx: Context) -> int:
    try:
        ctx.api.call("DELETE", f"/vhosts/{quote(ctx.args.name)}")
    except HttpError as exc:
        raise _not_found(exc, f"vhost {ctx.args.name!r}") from None
    ctx.say(f"vhost {ctx.args.name!r} deleted")
    return 0


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
    try:
        ctx.api.call("DELETE", f"/permissions/{quote(vhost)}/{quote(user)}")
    except HttpError as exc:
        raise _not_found(exc, f"permissions of user {user!r} in vhost {vhost!r}") from None
    ctx.say(f"permissions of user {user!r} in vhost {vhost!r} cleared")
    return 0


def do_purge_queue(ctx: Context) -> int:
    name, vhost = ctx.args.name, ctx.vhost or "/"
    try:
        ctx.api.call("DELETE", f"/queues/{quote(vhost)}/{quote(name)}/contents")
    except HttpError as exc:
        raise _not_found(exc, f"queue {name!r} in vhost {vhost!r}") from None
    ctx.say(f"queue {name!r} in vhost {vhost!r} purged")
    return 0


def do_delete_queue(ctx: Context) -> int:
    a, vhost = ctx.args, ctx.vhost or "/"
    query = "&".join(flag + "=true" for flag, on in (("if-empty", a.if_empty),
                                                     ("if-unused", a.if_unused)) if on)
    path = f"/queues/{quote(vhost)}/{quote(a.name)}" + (f"?{query}" if query else "")
    try:
        ctx.api.call("DELETE", path)
    except HttpError as exc:
        raise _not_found(exc, f"queue {a.name!r} in vhost {vhost!r}") from None
    ctx.say(f"queue {a.name!r} in vhost {vhost!r} deleted")
    return 0


def do_close_connection(ctx: Context) -> int:
    name, reason = ctx.args.name, ctx.args.reason
    if reason and not reason.isprintable():
        raise UsageError("--reason must be one line of printable text")
    # an HTTP header carries bytes: the reason's UTF-8, which RabbitMQ reads as such
    headers = {"X-Reason": reason.encode().decode("latin-1")} if reason else {}
    try:
        ctx.api.call("DELETE", f"/connections/{quote(name)}", headers=headers)
    except HttpError as exc:
        raise _not_found(exc, f"connection {name!r}") from None
    ctx.say(f"connection {name!r} closed")
    return 0


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
    "purge-queue": do_purge_queue,
    "delete-queue": do_delete_queue,
    "close-connection": do_close_connection,
    "export-definitions": do_export_definitions,
    "import-definitions": do_import_definitions,
    "ping": do_ping,
    "status": do_status,
}


def _message(exc: CtlError, ctx: Context) -> str:
    if isinstance(exc, HttpError):
        if exc.status == 401:
            return (f"{ctx.api.url}: user {ctx.api.user!r} refused ({exc.reason or exc.error}); "
                    f"check --user/--password or {ENV_USER}/{ENV_PASSWORD}")
        if exc.status == 404:
            return (f"{exc.method} /api{exc.path}: not found"
                    + (f" ({exc.reason})" if exc.reason and exc.reason != "Not Found" else ""))
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """`amqp-broker ctl ARGS`: the arguments after `ctl`; returns the exit status."""
    arguments = normalize(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(arguments)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    if args.verb is None:
        parser().print_usage(sys.stderr)
        print(f"{PROG}: error: a VERB is required (see {PROG} --help)", file=sys.stderr)
        return 2
    try:
        ctx = _context(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return VERBS[args.verb](ctx)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except CtlError as exc:
        print(f"{PROG}: {_message(exc, ctx)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ctl list queues | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
