"""Policies and operator policies with effect: which one applies to a queue or an
exchange, what they merge to, and what a queue or an exchange then runs with.

The model is RabbitMQ's (rabbit_policy, rabbit_policies, rabbit_queue_type_util):

- A policy is (vhost, name, pattern, apply-to, priority, definition). It matches an
  object of its vhost whose name the pattern finds (an unanchored regex search, as
  re:run), whose kind apply-to names ("all", "queues", "exchanges"; and RabbitMQ
  3.12's "classic_queues", "quorum_queues", "streams", accepted here too), and, for a
  queue, whose type takes every key of the definition (a policy holding a key the
  type lists as unsupported does not match it at all; the next one may). Of the
  matching ones the highest priority wins. RabbitMQ leaves equal priorities in the
  order of its parameter table (a hash order); here the first name in sort order wins.
- Operator policies (runtime parameters of component "operator_policy") match the
  same way, independently. The effective definition merges both: a key only one of
  them sets comes from it; for a key both set, the lower value wins for the numeric
  keys RabbitMQ merges (expires, message-ttl, max-length, max-length-bytes,
  max-in-memory-*, delivery-limit), and the operator's for a boolean.
- A queue argument and the effective definition then resolve per key and queue type,
  as the queue types do: for classic queues the lower of argument and policy wins
  for message-ttl, expires, max-length, max-length-bytes, and the argument wins for
  dead-letter-exchange, dead-letter-routing-key, overflow, queue-mode; quorum queues
  take the lower for max-length, max-length-bytes, message-ttl, delivery-limit, the
  policy for overflow and expires, the argument for the dead-letter keys; streams
  take the policy for max-length-bytes and max-age. consumer-timeout (RabbitMQ 3.12's
  per-queue timeout) takes the lower. delivery-limit is accepted on classic queues
  here (RabbitMQ has it on quorum queues only). The result is the queue's arguments
  with the winners written in as x- arguments, parsed by queue_args.parse into the
  QueueArgs the queue runs with; the declared arguments themselves stay as declared.
- For exchanges, alternate-exchange: the argument wins over the policy.

Setting or clearing a policy or an operator policy re-resolves every queue and
exchange of its vhost (Queue.apply_args re-applies a queue's limits, TTL, expiry and
dead-lettering without losing messages); a declared queue or exchange is resolved
when it is created. Policy values are validated (`check_definition`) with RabbitMQ's
texts before they are stored, wherever they come from.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import queue_args
from .protocol.errors import AMQPError

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue
    from .vhost import Exchange, VHost

OPERATOR_COMPONENT = "operator_policy"
APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")
_QUEUE_TYPE_OF_APPLY_TO = {"classic_queues": "classic", "quorum_queues": "quorum",
                           "streams": "stream"}

# --- validation (rabbit_policies:validate_policy0, 3.10 texts) -------------------------
_NON_NEG, _POS, _TEXT = "non_neg", "pos", "text"
# key: (check, what the error calls a bad value); a tuple check is the allowed values
_VALIDATORS: dict[str, tuple[Any, str]] = {
    "alternate-exchange": (_TEXT, "alternate exchange name"),
    "dead-letter-exchange": (_TEXT, "dead letter exchange name"),
    "dead-letter-routing-key": (_TEXT, "dead letter routing key"),
    "dead-letter-strategy": (("at-most-once", "at-least-once"), "dead letter strategy"),
    "message-ttl": (_NON_NEG, "message TTL"),
    "expires": (_POS, "queue expiry"),
    "max-length": (_NON_NEG, "maximum length"),
    "max-length-bytes": (_NON_NEG, "maximum length in bytes"),
    "max-in-memory-length": (_NON_NEG, "maximum memory in bytes"),
    "max-in-memory-bytes": (_NON_NEG, "maximum memory in bytes"),
    "queue-mode": (("default", "lazy"), "queue-mode value"),
    "queue-version": ((1, 2), "queue-version value"),
    "overflow": (queue_args.OVERFLOW_MODES, "overflow value"),
    "delivery-limit": (_NON_NEG, "delivery limit"),
    "max-age": ("max_age", "max age"),
    "queue-leader-locator": (("client-local", "balanced", "random", "least-leaders"),
                             "queue leader locator value"),
    "initial-cluster-size": (_NON_NEG, "cluster size"),
    "stream-max-segment-size-bytes": ("segment", "segment size"),
    "consumer-timeout": (_NON_NEG, "consumer timeout"),  # RabbitMQ 3.12
    # rabbit_mirror_queue_misc and the federation plugin: kept, no effect here
    "ha-mode": (("all", "exactly", "nodes"), "ha-mode value"),
    "ha-params": (None, "ha-params value"),
    "ha-sync-mode": (("manual", "automatic"), "ha-sync-mode value"),
    "ha-sync-batch-size": (_POS, "ha-sync-batch-size value"),
    "ha-promote-on-shutdown": (("always", "when-synced"), "ha-promote-on-shutdown value"),
    "ha-promote-on-failure": (("always", "when-synced"), "ha-promote-on-failure value"),
    "queue-master-locator": (("min-masters", "client-local", "random"),
                             "queue-master-locator value"),
    "federation-upstream": (_TEXT, "federation-upstream value"),
    "federation-upstream-set": (_TEXT, "federation-upstream-set value"),
}
POLICY_KEYS = tuple(_VALIDATORS)
# rabbit_policies' operator_policy_validator keys (3.10)
OPERATOR_KEYS = ("expires", "message-ttl", "max-length", "max-length-bytes",
                 "max-in-memory-length", "max-in-memory-bytes", "delivery-limit")
# rabbit_policies' policy_merge_strategy keys: the lower value wins
_MERGE_MIN = frozenset(OPERATOR_KEYS)
_MAX_SEGMENT = 3_000_000_000  # ?MAX_STREAM_MAX_SEGMENT_SIZE


class PolicyError(ValueError):
    """A policy RabbitMQ would refuse; the text is RabbitMQ's (without the
    "Validation failed" heading the management API puts before it)."""


def erl(value: Any, escape: bool = True) -> str:
    """A JSON value as RabbitMQ prints it with ~p (binaries <<"...">>); the
    management API HTML-escapes user policy errors, not operator policy ones."""
    if isinstance(value, str):
        text = f'<<"{value}">>'
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list):
        text = "[" + ",".join(erl(v, False) for v in value) + "]"
    elif isinstance(value, dict):
        text = "#{" + ",".join(f"{erl(k, False)} => {erl(v, False)}"
                               for k, v in value.items()) + "}"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return text.replace("<", "&lt;").replace(">", "&gt;") if escape else text


def _valid(check: Any, value: Any) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if check is None:
        return True
    if check == _NON_NEG:
        return is_int and value >= 0
    if check == _POS:
        return is_int and value >= 1
    if check == _TEXT:
        return isinstance(value, str)
    if check == "segment":
        return is_int and 0 <= value <= _MAX_SEGMENT
    if check == "max_age":
        return (isinstance(value, str)
                and re.fullmatch(r"[0-9]+[YMDhms]", value) is not None
                and int(value[:-1]) > 0)
    return not isinstance(value, bool) and value in check


def check_definition(definition: Any, operator: bool = False,
                     escape: bool | None = None) -> None:
    """PolicyError unless RabbitMQ would take this definition (policy_validation /
    operator_policy_validation): an object, not empty, every key known, every value
    acceptable; unknown keys are named together (sorted), after the values are checked.
    Values are HTML-escaped in the text as the management API does for policies (not
    for operator policies) unless escape says otherwise."""
    if escape is None:
        escape = not operator
    if not isinstance(definition, dict):
        raise PolicyError(f"definition must be a dictionary: {erl(definition, escape)}")
    if not definition:
        raise PolicyError("no policy provided")
    known = OPERATOR_KEYS if operator else POLICY_KEYS
    for key in sorted(definition):  # values first: RabbitMQ's validators run before
        if key in known:            # what none of them took is reported
            check, what = _VALIDATORS[key]
            if not _valid(check, definition[key]):
                raise PolicyError(f"{erl(definition[key], escape)} is not a valid {what}")
    unknown = sorted(key for key in definition if key not in known)
    if unknown:
        items = ",".join(f"{{{erl(k, escape)},{erl(definition[k], escape)}}}"
                         for k in unknown)
        raise PolicyError(f"[{items}] are not recognised policy settings")


def check_policy(body: dict[str, Any], operator: bool = False) -> dict[str, Any]:
    """A policy's pattern, definition, priority and apply-to, checked as RabbitMQ's
    policy_validation does; the normalised fields. PolicyError names the first fault."""
    pattern = body["pattern"]
    if not isinstance(pattern, str):
        raise PolicyError(f"pattern should be a string, actually was {erl(pattern)}")
    try:
        compiled(pattern)
    except re.error as exc:
        raise PolicyError("pattern should be regular expression but is invalid: "
                          f'{{"{exc.msg}",{exc.pos or 0}}}') from None
    check_definition(body["definition"], operator)
    priority = body.get("priority", 0)
    if isinstance(priority, str) and priority.strip().lstrip("-").isdigit():
        priority = int(priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise PolicyError(f"priority should be a number, actually was {erl(priority)}")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise PolicyError(f"apply-to '{apply_to}' unrecognised; should be 'queues', "
                          "'exchanges' or 'all'")
    return {"pattern": pattern, "apply-to": apply_to, "definition": body["definition"],
            "priority": priority}


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# --- matching and merging ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Policy:
    vhost: str
    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]

    @classmethod
    def from_entry(cls, vhost: str, name: str, entry: dict[str, Any]) -> Policy | None:
        """A stored policy (or operator policy value); None if it cannot be used."""
        try:
            definition = entry["definition"]
            priority = entry.get("priority", 0)
            if not isinstance(definition, dict) or isinstance(priority, bool) \
                    or not isinstance(priority, int):
                return None
            pattern = entry["pattern"]
            compiled(pattern)
            return cls(vhost, name, pattern, entry.get("apply-to", "all"), priority,
                       definition)
        except (KeyError, TypeError, re.error):
            return None


# the keys RabbitMQ 3.10's queue types list as unsupported_policies (capabilities/0);
# delivery-limit is left out for classic queues, which have it here
UNSUPPORTED: dict[str, frozenset[str]] = {
    "classic": frozenset(("max-age", "stream-max-segment-size-bytes",
                          "queue-leader-locator", "initial-cluster-size",
                          "dead-letter-strategy")),
    "quorum": frozenset(("max-priority", "queue-mode", "single-active-consumer", "ha-mode",
                         "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
                         "ha-promote-on-failure", "queue-master-locator", "max-age",
                         "stream-max-segment-size-bytes", "initial-cluster-size")),
    "stream": frozenset(("expires", "message-ttl", "dead-letter-exchange",
                         "dead-letter-routing-key", "max-length", "max-in-memory-length",
                         "max-in-memory-bytes", "max-priority", "overflow", "queue-mode",
                         "single-active-consumer", "delivery-limit", "ha-mode",
                         "ha-params", "ha-sync-mode", "ha-promote-on-shutdown",
                         "ha-promote-on-failure", "queue-master-locator",
                         "dead-letter-strategy")),
}


def matches(policy: Policy, kind: str, name: str, queue_type: str | None = None) -> bool:
    """Whether policy applies to the exchange or queue (kind) of that name and type."""
    apply_to = policy.apply_to
    if kind == "exchange":
        if apply_to not in ("all", "exchanges"):
            return False
    elif apply_to not in ("all", "queues"):
        if _QUEUE_TYPE_OF_APPLY_TO.get(apply_to) != queue_type:
            return False
    if kind == "queue":
        unsupported = UNSUPPORTED.get(queue_type or "classic", frozenset())
        if any(key in unsupported for key in policy.definition):
            return False
    return compiled(policy.pattern).search(name) is not None


def best(policies: list[Policy], kind: str, name: str,
         queue_type: str | None = None) -> Policy | None:
    """The matching policy of highest priority (policies sorted with `ordered`)."""
    for policy in policies:
        if matches(policy, kind, name, queue_type):
            return policy
    return None


def ordered(policies: list[Policy]) -> list[Policy]:
    """Highest priority first; equal priorities by name."""
    return sorted(policies, key=lambda p: (-p.priority, p.name))


def merge(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """The effective definition (rabbit_policy:merge_operator_definitions), keys sorted."""
    if policy is None and operator is None:
        return {}
    ours = policy.definition if policy is not None else {}
    theirs = operator.definition if operator is not None else {}
    merged: dict[str, Any] = {}
    for key in sorted(set(ours) | set(theirs)):
        if key not in theirs:
            merged[key] = ours[key]
        elif key not in ours:
            merged[key] = theirs[key]
        else:
            merged[key] = _merge_value(key, ours[key], theirs[key])
    return merged


def _merge_value(key: str, value: Any, op_value: Any) -> Any:
    if key in _MERGE_MIN:
        try:
            return min(value, op_value)
        except TypeError:
            return op_value
    return op_value  # rabbit_policies: the operator's value (booleans; none other here)


@dataclass(frozen=True, slots=True)
class Applied:
    """What policies apply to one queue or exchange."""

    policy: Policy | None = None
    operator: Policy | None = None
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def policy_name(self) -> str | None:
        return self.policy.name if self.policy is not None else None

    @property
    def operator_name(self) -> str | None:
        return self.operator.name if self.operator is not None else None


NONE = Applied()

# how a queue argument and a policy value resolve, per queue type and key
MIN, ARG, POLICY = "min", "arg", "policy"
RESOLVE: dict[str, dict[str, str]] = {
    "classic": {"expires": MIN, "dead-letter-exchange": ARG, "dead-letter-routing-key": ARG,
                "message-ttl": MIN, "max-length": MIN, "max-length-bytes": MIN,
                "overflow": ARG, "queue-mode": ARG, "delivery-limit": MIN,
                "consumer-timeout": MIN},
    "quorum": {"max-length": MIN, "overflow": POLICY, "max-length-bytes": MIN,
               "delivery-limit": MIN, "expires": POLICY, "message-ttl": MIN,
               "dead-letter-exchange": ARG, "dead-letter-routing-key": ARG,
               "consumer-timeout": MIN},
    "stream": {"max-length-bytes": POLICY, "max-age": POLICY,
               "stream-max-segment-size-bytes": POLICY, "consumer-timeout": MIN},
}


def resolve(arg: Any, policy_value: Any, rule: str) -> Any:
    if arg is None:
        return policy_value
    if policy_value is None or rule == ARG:
        return arg
    if rule == POLICY:
        return policy_value
    try:
        return min(arg, policy_value)
    except TypeError:
        return arg


def effective_arguments(arguments: dict[str, Any], definition: dict[str, Any],
                        queue_type: str) -> dict[str, Any]:
    """The queue's arguments with each policy key resolved against its x- argument."""
    if not definition:
        return arguments
    rules = RESOLVE.get(queue_type, RESOLVE["classic"])
    merged = dict(arguments)
    for key, rule in rules.items():
        if key in definition:
            name = "x-" + key
            merged[name] = resolve(arguments.get(name), definition[key], rule)
    return merged


def effective_value(arguments: dict[str, Any], definition: dict[str, Any], queue_type: str,
                    key: str) -> Any:
    """One key as the queue runs with it (None when neither argument nor policy sets it)."""
    return effective_arguments(arguments, definition, queue_type).get("x-" + key)


# --- the broker's side ------------------------------------------------------------------
def vhost_policies(broker: Broker, vhost: str) -> tuple[list[Policy], list[Policy]]:
    """The vhost's (policies, operator policies), each highest priority first."""
    runtime = broker.runtime
    users = [p for (v, name), entry in runtime.policies.items() if v == vhost
             if (p := Policy.from_entry(v, name, entry)) is not None]
    operators = []
    for (v, component, name), param in runtime.parameters.items():
        if v == vhost and component == OPERATOR_COMPONENT:
            value = param.get("value")
            found = Policy.from_entry(v, name, value) if isinstance(value, dict) else None
            if found is not None:
                operators.append(found)
    return ordered(users), ordered(operators)


def applied_to(policies: tuple[list[Policy], list[Policy]], kind: str, name: str,
               queue_type: str | None = None) -> Applied:
    users, operators = policies
    policy = best(users, kind, name, queue_type)
    operator = best(operators, kind, name, queue_type)
    if policy is None and operator is None:
        return NONE
    return Applied(policy, operator, merge(policy, operator))


def for_queue(vhost: VHost, name: str, arguments: dict[str, Any]) -> Applied:
    """What applies to a queue being declared in vhost."""
    policies = vhost_policies(vhost.broker, vhost.name)
    if not policies[0] and not policies[1]:
        return NONE
    return applied_to(policies, "queue", name, queue_args.queue_type(arguments))


def for_exchange(vhost: VHost, name: str) -> Applied:
    policies = vhost_policies(vhost.broker, vhost.name)
    if not policies[0] and not policies[1]:
        return NONE
    return applied_to(policies, "exchange", name)


def queue_args_for(q_name: str, vhost: str, arguments: dict[str, Any],
                   applied: Applied) -> queue_args.QueueArgs:
    """The QueueArgs a queue runs with under applied. A policy value the queue's parser
    refuses (one stored before validation existed) is left out, never fatal."""
    kind = queue_args.queue_type(arguments)
    merged = effective_arguments(arguments, applied.definition, kind)
    if merged is not arguments:
        try:
            return queue_args.parse(merged, q_name, vhost)
        except AMQPError:
            pass
    return queue_args.parse(arguments, q_name, vhost)


def alternate_of(arguments: dict[str, Any], applied: Applied) -> str | None:
    """An exchange's alternate exchange: its argument, else its policy's."""
    name = arguments.get("alternate-exchange")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    if isinstance(name, str):
        return name
    value = applied.definition.get("alternate-exchange")
    return value if isinstance(value, str) else None


def reapply(broker: Broker, vhost_name: str) -> None:
    """A policy or operator policy of vhost_name changed: resolve every queue and
    exchange of it again, and re-apply what changed."""
    vhost = broker.vhosts.get(vhost_name)
    if vhost is None:
        return
    policies = vhost_policies(broker, vhost_name)
    for ex in list(vhost.exchanges.values()):
        apply_exchange(ex, applied_to(policies, "exchange", ex.name))
    for q in list(vhost.queues.values()):
        applied = applied_to(policies, "queue", q.name, queue_args.queue_type(q.arguments))
        if applied != q.applied:
            apply_queue(q, applied)


def apply_exchange(ex: Exchange, applied: Applied) -> None:
    ex.applied = applied
    ex.alternate = alternate_of(ex.arguments, applied)


def apply_queue(q: Queue, applied: Applied) -> None:
    q.applied = applied
    args = queue_args_for(q.name, q.vhost.name, q.arguments, applied)
    if args != q.args:
        q.apply_args(args)
