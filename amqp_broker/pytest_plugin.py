"""pytest plugin: a broker for the test run, registered through the `pytest11` entry point.

Installing amqp-broker is the whole set-up. Fixtures:

- `amqp_broker` (session): one broker for the whole run, started when first used.
- `amqp_broker_fresh` (function): a broker of the test's own, stopped after it.
- `amqp_broker_vhost` (function): a new virtual host on the session's broker,
  deleted after the test, so tests stay apart without a broker each.

Each gives an object with `url`, `host`, `port`, `vhost` and `management_url`.
Options (command line, or the ini setting of the same name with underscores):
`--amqp-broker-persistent` keeps messages in a temporary data directory instead
of memory; `--amqp-broker-management` serves the management HTTP API.

The broker modules are imported when a fixture is first used, so a run that
does not use them pays nothing.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import Endpoint, RunningBroker

_OPTIONS = {
    # option: (ini name, help)
    "persistent": ("amqp_broker_persistent",
                   "keep the test broker's messages in a temporary data directory (the disk "
                   "store, as in production) instead of memory"),
    "management": ("amqp_broker_management",
                   "serve the management HTTP API on a free port (management_url)"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amqp_broker", "AMQP broker (amqp-broker fixtures)")
    for option, (ini, text) in _OPTIONS.items():
        group.addoption(f"--amqp-broker-{option}", action="store_true", default=None,
                        dest=ini, help=f"{text} [ini: {ini}]")
        parser.addini(ini, type="bool", default=False, help=text)


def _enabled(config: pytest.Config, option: str) -> bool:
    ini = _OPTIONS[option][0]
    flag = config.getoption(ini)
    return bool(config.getini(ini)) if flag is None else bool(flag)


def broker_options(config: pytest.Config) -> dict[str, Any]:
    """running_broker() options from the command line and ini settings."""
    from .testing import _CONFIG_FIELDS
    options: dict[str, Any] = {}
    if _enabled(config, "persistent"):
        options["data_dir"] = True
    if _enabled(config, "management"):
        if "management_port" not in _CONFIG_FIELDS:
            raise pytest.UsageError("--amqp-broker-management: this version of amqp-broker "
                                    "has no management API")
        options["management_port"] = _free_port()
    return options


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def amqp_broker(pytestconfig: pytest.Config) -> Iterator[RunningBroker]:
    """One broker for the whole test run (url, host, port, vhost, management_url)."""
    from .testing import running_broker
    with running_broker(**broker_options(pytestconfig)) as broker:
        yield broker


@pytest.fixture
def amqp_broker_fresh(pytestconfig: pytest.Config) -> Iterator[RunningBroker]:
    """A broker of this test's own, stopped when the test ends."""
    from .testing import running_broker
    with running_broker(**broker_options(pytestconfig)) as broker:
        yield broker


@pytest.fixture
def amqp_broker_vhost(amqp_broker: RunningBroker,
                      request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    """A virtual host of this test's own on the session's broker (its url points there),
    deleted with everything in it when the test ends."""
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in request.node.name[:60])
    name = f"test-{label}-{uuid.uuid4().hex[:8]}"
    try:
        endpoint = amqp_broker.add_vhost(name)
    except NotImplementedError as exc:
        pytest.fail(f"amqp_broker_vhost: {exc}", pytrace=False)
    try:
        yield endpoint
    finally:
        amqp_broker.delete_vhost(name)
