"""The broker inside a test suite: started in the calling process, no Docker, no Erlang.

    from amqp_broker.testing import running_broker

    with running_broker() as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))

running_broker() starts a Server on 127.0.0.1, on a port the kernel picks, in a
background thread that runs its own event loop (uvloop when installed, as the CLI).
It keeps everything in memory unless asked for a data directory, installs no
signal handlers, and on exit (also when the body raises) stops the server, ends
the thread and removes a temporary data directory. Several brokers may run at
once, each from any thread.

running_broker_async() is the same inside a running event loop (`async with`):
the broker still runs in a thread of its own, so a test that blocks its own loop
(a blocking client, a slow fixture) cannot stall the broker, and the broker
outlives any one test's loop (pytest-asyncio closes them between tests).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import config as config_module
from .config import Config
from .server import Server

__all__ = ["Endpoint", "RunningBroker", "running_broker", "running_broker_async",
           "start_broker"]

# what an embedded broker differs in from the command line's defaults: loopback only, a
# port of its own, nothing on disk, no metrics port (two brokers would both want 15692), and
# warnings only in the test run's output (log_level="info" shows each connection)
EMBEDDED_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "data_dir": None,
                                     "metrics_port": 0, "management_port": 0,
                                     "log_level": "warning"}
STOP_TIMEOUT = 30.0  # seconds the server gets to close its connections and store
# seconds connections still open at the end get to answer connection.close: a test that
# left a client open (not reading) must not cost its teardown the server's 2 s
SHUTDOWN_GRACE = 0.1
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(Config))


@dataclass(frozen=True)
class Endpoint:
    """Where clients connect: one virtual host of a running broker."""

    host: str
    port: int
    vhost: str
    user: str = "guest"
    password: str = "guest"
    management_url: str | None = None

    @property
    def url(self) -> str:
        """amqp://guest:guest@127.0.0.1:PORT/%2F (the vhost percent-encoded, as pika and
        aio-pika read it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{host}:{self.port}/{quote(self.vhost, safe='')}")


class RunningBroker:
    """A broker started by start_broker() / running_broker(); stop() ends it.

    url, host, port, vhost (the default one) and management_url (None unless the
    management API is enabled) say where to connect; server is the Server itself
    (server.broker is the model), for tests that look inside."""

    def __init__(self, server: Server, portal: BlockingPortal,
                 portal_cm: AbstractContextManager[BlockingPortal],
                 done: Future[Any], temp_dir: str | None) -> None:
        self.server = server
        self._portal = portal
        self._portal_cm = portal_cm
        self._done = done
        self._temp_dir = temp_dir
        self._loop_thread: threading.Thread | None = None
        self._loop: object | None = None  # the broker thread's event loop
        self._stopped = False
        self._lock = threading.Lock()
        config = server.config
        self.endpoint = Endpoint(host=config.host, port=server.port,
                                 vhost=config.default_vhost, user=config.default_user,
                                 password=config.default_pass,
                                 management_url=_management_url(server))

    # --- where to connect ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def vhost(self) -> str:
        return self.endpoint.vhost

    @property
    def management_url(self) -> str | None:
        return self.endpoint.management_url

    @property
    def data_dir(self) -> str | None:
        return self.server.config.data_dir

    def in_vhost(self, vhost: str) -> Endpoint:
        """The endpoint of another virtual host of this broker."""
        return dataclasses.replace(self.endpoint, vhost=vhost)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<RunningBroker {self.url} {state}>"

    # --- acting inside the broker's event loop -------------------------------------------
    def call(self, func: Any, *args: Any) -> Any:
        """Run func(*args) in the broker's event loop thread (awaited if it is a
        coroutine function) and return its result: the model is not thread-safe."""
        if self._stopped:
            raise RuntimeError("the broker is stopped")
        return self._portal.call(func, *args)

    def add_vhost(self, name: str) -> Endpoint:
        """Create a virtual host on the running broker, the default user given full
        permissions on it (as the management API does for the user creating one); its
        endpoint."""
        if not hasattr(self.server.broker, "add_vhost"):
            raise NotImplementedError("this amqp-broker cannot add virtual hosts at run time")
        self.call(_add_vhost, self.server.broker, name, self.endpoint.user)
        return self.in_vhost(name)

    def delete_vhost(self, name: str) -> None:
        """Delete a virtual host (its queues, exchanges and connections) from the broker."""
        broker = self.server.broker
        if not hasattr(broker, "delete_vhost"):
            raise NotImplementedError("this amqp-broker cannot delete virtual hosts at run time")
        self.call(broker.delete_vhost, name)

    # --- the end -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._stopped and not self._done.done()

    def stop(self) -> None:
        """Stop the server, end its thread (and the worker threads of its loop) and
        remove a temporary data directory; a second call does nothing. Raises what
        made the server fail, if it did."""
        if threading.current_thread() is self._loop_thread:  # it would wait for itself
            raise RuntimeError("stop() called from the broker's own event loop thread")
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        failed: BaseException | None = None
        try:
            if not self._done.done():
                try:
                    self._portal.call(self.server.stop)
                except RuntimeError:
                    pass  # the loop already ended
            try:
                self._done.result(timeout=STOP_TIMEOUT)
            except TimeoutError as exc:  # the shutdown hangs: cancel what is left
                failed = TimeoutError(f"the broker did not stop within {STOP_TIMEOUT}s")
                failed.__cause__ = exc
            except BaseException as exc:  # the server failed while running
                failed = exc
            loop = self._loop
            if failed is not None:
                self._portal_cm.__exit__(type(failed), failed, failed.__traceback__)
            else:
                self._portal_cm.__exit__(None, None, None)
            _join_worker_threads(loop)
        finally:
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
        if failed is not None:
            raise failed

    def __enter__(self) -> RunningBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def config_for(**options: Any) -> tuple[Config, str | None]:
    """The Config for an embedded broker and the temporary data directory made for it
    (data_dir=True), if any. Any Config field is an option; others raise TypeError."""
    unknown = sorted(set(options) - _CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"unknown broker option{'s' if len(unknown) > 1 else ''}: "
                        f"{', '.join(unknown)} (known: {', '.join(sorted(_CONFIG_FIELDS))})")
    values = {**{k: v for k, v in EMBEDDED_DEFAULTS.items() if k in _CONFIG_FIELDS},
              **options}
    if isinstance(values.get("vhosts"), list):
        values["vhosts"] = tuple(values["vhosts"])
    if isinstance(values.get("loopback_users"), list):
        values["loopback_users"] = tuple(values["loopback_users"])
    temp_dir = None
    data_dir = values["data_dir"]
    if data_dir is True:
        temp_dir = tempfile.mkdtemp(prefix="amqp-broker-")
        values["data_dir"] = temp_dir
    elif data_dir is False or data_dir is None:
        values["data_dir"] = None
    else:
        values["data_dir"] = os.fspath(data_dir)
        os.makedirs(values["data_dir"], exist_ok=True)
    config = Config(**values)
    check = getattr(config_module, "check", None)  # the start-up validation, where present
    try:
        if check is not None:
            check(config)
    except Exception:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return config, temp_dir


def start_broker(**options: Any) -> RunningBroker:
    """Start a broker in a background thread and return once it accepts connections;
    the caller must stop() it (running_broker() does). Options: any Config field
    (host, port, data_dir, vhosts, default_user, heartbeat, ...); data_dir=True makes a
    temporary data directory, removed by stop(). A start that fails (a busy port, an
    unusable data directory) raises here, after cleaning up."""
    config, temp_dir = config_for(**options)
    try:
        portal_cm = start_blocking_portal(**_backend(), name="amqp-broker")
        portal = portal_cm.__enter__()
        try:
            done, server = portal.start_task(_serve, config, name="amqp-broker")
        except BaseException as exc:
            loop = _loop_of_portal(portal)
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            _join_worker_threads(loop)
            raise
        running = RunningBroker(server, portal, portal_cm, done, temp_dir)
        running._loop_thread, running._loop = portal.call(_name_thread, server.port)
        return running
    except BaseException:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise


@contextmanager
def running_broker(**options: Any) -> Iterator[RunningBroker]:
    """`with running_broker(**options) as broker:` a broker for the body of the block,
    stopped at its end, also when the body raises. See start_broker for the options."""
    broker = start_broker(**options)
    try:
        yield broker
    finally:
        broker.stop()


@asynccontextmanager
async def running_broker_async(**options: Any) -> AsyncIterator[RunningBroker]:
    """`async with running_broker_async(**options) as broker:` the same inside a running
    event loop (asyncio; it makes only anyio calls, so trio should do too). The broker runs
    in a thread of its own: starting and stopping it waits in a worker thread, so the
    caller's loop keeps running."""
    broker = await anyio.to_thread.run_sync(lambda: start_broker(**options))
    try:
        yield broker
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(broker.stop)


# --- inside the broker's thread -----------------------------------------------------------

async def _serve(config: Config, *, task_status: TaskStatus[Server]) -> None:
    server = Server(config, handle_signals=False)
    server.shutdown_grace = SHUTDOWN_GRACE
    # the host program owns structlog's configuration; only the level is this broker's
    server.log = server.broker.log = _logger(config.log_level)
    await server.run(ready=lambda s: task_status.started(s))


def _add_vhost(broker: Any, name: str, user: str) -> None:
    broker.add_vhost(name)
    access = getattr(broker, "access", None)  # users and permissions, where the broker has them
    if access is not None and hasattr(access, "set_permissions"):
        access.set_permissions(user, name, ".*", ".*", ".*")


async def _name_thread(port: int) -> tuple[threading.Thread, object]:
    """Name the broker's thread after its port; the thread and its event loop."""
    import asyncio
    thread = threading.current_thread()
    thread.name = f"amqp-broker-{port}"
    return thread, asyncio.get_running_loop()


def _logger(level: str) -> Any:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning or error)")
    return structlog.wrap_logger(None, logger_factory_args=("amqp_broker",),
                                 wrapper_class=structlog.make_filtering_bound_logger(numeric))


def _backend() -> dict[str, Any]:
    """The event loop the command line uses too: asyncio, on uvloop when installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {"backend": "asyncio"}
    return {"backend": "asyncio", "backend_options": {"use_uvloop": True}}


def _management_url(server: Server) -> str | None:
    """The management API's base URL, when the broker serves one."""
    port = getattr(server, "management_port", None) or getattr(server.config,
                                                               "management_port", 0)
    if not port:
        return None
    host = server.config.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


# --- no thread left behind ----------------------------------------------------------------

def _loop_of_portal(portal: BlockingPortal) -> object | None:
    try:
        return portal.call(_current_loop)
    except BaseException:
        return None


async def _current_loop() -> object:
    import asyncio
    return asyncio.get_running_loop()


def _join_worker_threads(loop: object | None, timeout: float = 5.0) -> None:
    """Wait for the worker threads (anyio.to_thread: the disk store's writes) of a loop
    that has ended: anyio tells them to stop when the loop's main task ends but does not
    wait for them, and a test suite checks that nothing is left running."""
    if loop is None:
        return
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and getattr(thread, "loop", None) is loop:
            thread.join(timeout)
