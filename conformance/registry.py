"""Scenario registry: scenarios register themselves with the ``@scenario`` decorator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

SCENARIOS: dict[str, Scenario] = {}


@dataclasses.dataclass
class Scenario:
    name: str  # "<group>.<short name>", unique
    group: str
    func: Callable
    timeout: float
    doc: str


def scenario(group: str, name: str | None = None, timeout: float = 20.0):
    """Register ``func(ctx)`` as scenario ``group.name``.

    The function drives one or more clients against ``ctx.host``/``ctx.port`` and records what it
    observes with ``ctx.log(...)`` (plain JSON-able data). It must not assume anything about which
    broker it talks to.
    """

    def deco(func: Callable) -> Callable:
        short = name or func.__name__
        full = f"{group}.{short}"
        if full in SCENARIOS:
            raise ValueError(f"duplicate scenario {full}")
        SCENARIOS[full] = Scenario(full, group, func, timeout, (func.__doc__ or "").strip())
        return func

    return deco


def load_all() -> dict[str, Scenario]:
    from . import scenarios  # noqa: F401  (imports every scenario module)

    return SCENARIOS
