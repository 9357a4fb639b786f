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

This module is the command line (options, parsing, dispatch, error reporting); the API
client is amqp_broker.ctl_api, the verbs amqp_broker.ctl_verbs, the tables ctl_format.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any, NoReturn

from .ctl_api import DEFAULT_TIMEOUT, PROG, Api, CtlError, HttpError, UsageError
from .ctl_verbs import LISTINGS, VERBS, Context

DEFAULT_URL = "http://127.0.0.1:15672"
DEFAULT_USER = "guest"
DEFAULT_PASSWORD = "guest"  # noqa: S105 (RabbitMQ's well-known default)
ENV_URL = "AMQP_BROKER_CTL_URL"
ENV_USER = "AMQP_BROKER_CTL_USER"
ENV_PASSWORD = "AMQP_BROKER_CTL_PASSWORD"  # noqa: S105
# the broker's own variables, read when the AMQP_BROKER_CTL_* ones are unset, so
# `amqp-broker ctl ping` run inside the broker's container (a HEALTHCHECK) logs in as the
# default user the container was started with, on its management port; the first set wins
BROKER_USER_VARIABLES = ("AMQP_BROKER_DEFAULT_USER", "RABBITMQ_DEFAULT_USER")
BROKER_PASSWORD_VARIABLES = ("AMQP_BROKER_DEFAULT_PASS", "RABBITMQ_DEFAULT_PASS")
BROKER_PORT_VARIABLE = "AMQP_BROKER_MANAGEMENT_PORT"

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
                     "users, vhosts, permissions, policies or operator-policies")
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

    for kind, what in (("policy", "a policy"), ("operator-policy", "an operator policy")):
        v = verb(f"set-{kind}", f"set {what} in a vhost (rabbitmqctl set_{kind.replace('-', '_')})")
        v.add_argument("name", metavar="NAME")
        v.add_argument("pattern", metavar="PATTERN",
                       help="regular expression the queue or exchange names must match")
        v.add_argument("definition", metavar="DEFINITION",
                       help='JSON object of policy keys, e.g. \'{"max-length": 1000}\'')
        v.add_argument("--priority", type=int, default=0, metavar="N",
                       help="the highest matching priority applies (default 0)")
        v.add_argument("--apply-to", default="all", metavar="KIND",
                       help="queues, exchanges or all (default), or classic_queues, "
                            "quorum_queues, streams")
        v = verb(f"clear-{kind}", f"remove {what} from a vhost")
        v.add_argument("name", metavar="NAME")

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
