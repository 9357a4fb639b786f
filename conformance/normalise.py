"""Named normalisation rules, applied to both observations before comparing them.

Each rule is a function ``(value, token) -> value`` over one observation (a list of events).
``token`` is the run-unique token that side used in its queue/exchange names.
Only fields that legitimately differ between two correct brokers (or two runs) are touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Rule = Callable[[Any, str], Any]


def _walk(value: Any, fn_str=None, fn_item=None) -> Any:
    """Rebuild ``value``; ``fn_str(s)`` rewrites strings, ``fn_item(key, v)`` rewrites dict
    items."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _walk(v, fn_str, fn_item)
            if fn_item is not None:
                v = fn_item(k, v)
            out[k] = v
        return out
    if isinstance(value, list):
        return [_walk(v, fn_str, fn_item) for v in value]
    if isinstance(value, str) and fn_str is not None:
        return fn_str(value)
    return value


def run_token(value: Any, token: str) -> Any:
    """Queue/exchange names carry a per-run token (``cf.<token>.name``): replace it by ``<run>``."""
    if not token:
        return value
    return _walk(value, fn_str=lambda s: s.replace(token, "<run>"))


_GEN = re.compile(r"amq\.gen-[A-Za-z0-9_\-]+")


def server_named_queue(value: Any, token: str) -> Any:
    """Server-generated queue names ``amq.gen-XXXX`` -> ``amq.gen-*``."""
    return _walk(value, fn_str=lambda s: _GEN.sub("amq.gen-*", s))


_CTAG = re.compile(r"(amq\.ctag-[A-Za-z0-9_\-]+|ctag\d+\.[0-9a-f]+)")


def consumer_tag(value: Any, token: str) -> Any:
    """Consumer tags chosen by the server (``amq.ctag-*``) or by pika (``ctagN.<hex>``) ->
    ``<ctag>``."""
    return _walk(value, fn_str=lambda s: _CTAG.sub("<ctag>", s))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuids(value: Any, token: str) -> Any:
    """Client-generated UUIDs (kombu/celery ids, reply queues) -> ``<uuid>``."""
    return _walk(value, fn_str=lambda s: _UUID.sub("<uuid>", s))


def reply_text_detail(value: Any, token: str) -> Any:
    """Reply texts: keep only the symbolic constant before `` - `` (``NOT_FOUND - no queue 'q'...``
    becomes ``NOT_FOUND``); the human-readable detail is broker-specific."""

    def item(k, v):
        if k == "reply_text" and isinstance(v, str):
            return v.split(" - ", 1)[0].strip()
        return v

    return _walk(value, fn_item=item)


_IDENTITY_KEYS = {"product", "version", "platform", "copyright", "information", "cluster_name"}


def server_identity(value: Any, token: str) -> Any:
    """Server properties product/version/platform/copyright/information/cluster_name -> ``<str>``
    (their presence is kept, their text is not compared)."""

    def item(k, v):
        if k == "server_properties" and isinstance(v, dict):
            return {kk: ("<str>" if kk in _IDENTITY_KEYS else vv) for kk, vv in v.items()}
        return v

    return _walk(value, fn_item=item)


_TIME_KEYS = {"time", "timestamp_observed", "elapsed"}


def timestamps(value: Any, token: str) -> Any:
    """Times set by the broker or the clock (``x-death`` ``time``, measured durations) ->
    ``<time>``."""

    def item(k, v):
        return "<time>" if k in _TIME_KEYS else v

    return _walk(value, fn_item=item)


RULES: list[tuple[str, Rule]] = [
    ("run_token", run_token),
    ("server_named_queue", server_named_queue),
    ("consumer_tag", consumer_tag),
    ("uuids", uuids),
    ("reply_text_detail", reply_text_detail),
    ("server_identity", server_identity),
    ("timestamps", timestamps),
]


def normalise(events: Any, token: str) -> Any:
    for _name, rule in RULES:
        events = rule(events, token)
    return events
