"""amqp_broker.testing: the broker started inside the test process.

Real clients (pika, aio-pika) over loopback; each broker here is stopped by the
context manager, pass or fail. Teardown is checked for threads, descriptors,
the port and the temporary data directory it may leave behind.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import pika
import pytest

from amqp_broker.broker import Broker
from amqp_broker.testing import (
    Endpoint,
    RunningBroker,
    running_broker,
    running_broker_async,
    start_broker,
)

pytestmark = pytest.mark.timeout(60)


def round_trip(url: str, queue: str = "t", body: bytes = b"hello",
               persistent: bool = False) -> bytes:
    """Publish one message to a new queue and get it back over a fresh connection."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=persistent)
        props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
        channel.basic_publish("", queue, body, props)
        method, _props, got = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "the message did not come back"
        return bytes(got)
    finally:
        connection.close()


def port_free(port: int) -> bool:
    """Nothing listens on the port any more: a connection is refused and a server may bind it
    (with SO_REUSEADDR, as servers do: closed connections linger in TIME_WAIT)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def open_fds() -> set[tuple[str, str]]:
    """This process's descriptors, as (number, what it points at)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # the one listdir used, closed already
            pass
    return fds


_before: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _threads_before() -> None:
    """Threads that ran before the test (other tests' leftovers are not this module's)."""
    _before.clear()
    _before.update(threading.enumerate())


def broker_threads() -> list[threading.Thread]:
    """Threads started during this test and still alive."""
    return [t for t in threading.enumerate() if t not in _before]


# --- what it gives ---------------------------------------------------------------------------

def test_url_host_port_vhost_and_a_round_trip() -> None:
    with running_broker() as broker:
        assert broker.host == "127.0.0.1"
        assert broker.port > 0
        assert broker.vhost == "/"
        assert broker.url == f"amqp://guest:guest@127.0.0.1:{broker.port}/%2F"
        assert broker.management_url is None
        assert broker.data_dir is None  # in memory by default
        assert broker.running
        assert round_trip(broker.url) == b"hello"
    assert not broker.running


def test_endpoint_url_quotes_the_vhost_and_brackets_ipv6() -> None:
    assert Endpoint("::1", 5672, "a/b c").url == "amqp://guest:guest@[::1]:5672/a%2Fb%20c"
    assert Endpoint("127.0.0.1", 1, "/", user="u@x", password="p:w").url == \
        "amqp://u%40x:p%3Aw@127.0.0.1:1/%2F"


def test_any_config_field_is_an_option() -> None:
    with running_broker(default_user="alice", default_pass="s3cret", loopback_users=[],
                        vhosts=["other"], heartbeat=5) as broker:
        assert broker.url.startswith("amqp://alice:s3cret@")
        assert broker.server.config.heartbeat == 5
        assert round_trip(broker.in_vhost("other").url) == b"hello"


def test_an_unknown_option_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="data_directory"):
        with running_broker(data_directory="/tmp/x"):
            pass  # pragma: no cover
    assert not broker_threads()


def test_several_brokers_at_once_are_separate() -> None:
    with running_broker() as one, running_broker() as two, running_broker() as three:
        assert len({one.port, two.port, three.port}) == 3
        for broker in (one, two, three):
            assert round_trip(broker.url, queue="only-here") == b"hello"
        connection = pika.BlockingConnection(pika.URLParameters(two.url))
        channel = connection.channel()
        channel.queue_declare("private")
        channel.basic_publish("", "private", b"two")
        connection.close()
        connection = pika.BlockingConnection(pika.URLParameters(three.url))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            connection.channel().queue_declare("private", passive=True)
        assert closed.value.reply_code == 404
        connection.close()
        assert len(broker_threads()) == 3


# --- teardown ----------------------------------------------------------------------------------

def test_teardown_leaves_no_thread_socket_or_temporary_directory() -> None:
    # a first broker pays the one-off costs (imports, the event loop's thread pool) so the
    # second one's count of threads and descriptors can be compared before and after
    with running_broker(data_dir=True) as warm:
        round_trip(warm.url, persistent=True)
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    with running_broker(data_dir=True) as broker:
        data_dir = broker.data_dir
        assert data_dir is not None and os.path.isdir(data_dir)
        assert round_trip(broker.url, persistent=True) == b"hello"
        assert set(threading.enumerate()) - threads_before  # it did run a thread
        assert open_fds() - fds_before  # and held descriptors: the listener, the store
        port = broker.port
    assert set(threading.enumerate()) - threads_before == set()
    assert open_fds() - fds_before == set()
    assert port_free(port)
    assert not os.path.exists(data_dir)


def test_a_body_that_raises_still_stops_the_broker() -> None:
    with pytest.raises(ZeroDivisionError):
        with running_broker(data_dir=True) as broker:
            port, data_dir = broker.port, broker.data_dir
            1 / 0  # noqa: B018
    assert not broker.running
    assert not broker_threads()
    assert port_free(port)
    assert data_dir is not None and not os.path.exists(data_dir)


def test_a_client_left_open_is_closed_by_the_broker() -> None:
    """A test that forgets to close its connection: the broker ends it with 320
    CONNECTION_FORCED, as RabbitMQ at shutdown, and still stops."""
    with running_broker() as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    assert not broker.running
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.channel()
    assert closed.value.reply_code == 320


def test_stop_twice_is_harmless_and_calls_after_stop_refuse() -> None:
    broker = start_broker()
    broker.stop()
    broker.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        broker.call(lambda: None)


def test_a_given_data_dir_is_kept_and_recovered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_broker(data_dir=data_dir) as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("kept", durable=True)
        channel.basic_publish("", "kept", b"on disk", pika.BasicProperties(delivery_mode=2))
        connection.close()
    assert data_dir.is_dir()
    with running_broker(data_dir=str(data_dir)) as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        _method, _props, body = connection.channel().basic_get("kept", auto_ack=True)
        connection.close()
    assert body == b"on disk"


# --- start-up errors ---------------------------------------------------------------------------

def test_a_busy_port_raises_in_the_caller() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as raised:
            with running_broker(port=port, data_dir=True):
                pass  # pragma: no cover
        assert "in use" in str(raised.value).lower() or raised.value.errno is not None
    assert not broker_threads()


def test_a_bad_setting_raises_before_anything_starts() -> None:
    with pytest.raises(Exception, match="log_level|log level"):
        with running_broker(log_level="loud"):
            pass  # pragma: no cover
    assert not broker_threads()


# --- threads and signals -----------------------------------------------------------------------

def test_no_signal_handlers_are_installed() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    with running_broker():
        assert {sig: signal.getsignal(sig) for sig in before} == before
        current = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(current)
        assert current == wakeup
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_started_in_one_thread_used_and_stopped_from_others() -> None:
    started: list[RunningBroker] = []
    errors: list[BaseException] = []

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, args=(lambda: started.append(start_broker()),))
    thread.start()
    thread.join()
    assert not errors and started
    broker = started[0]
    got: list[bytes] = []
    thread = threading.Thread(target=run, args=(lambda: got.append(round_trip(broker.url)),))
    thread.start()
    thread.join()
    assert got == [b"hello"] and not errors
    thread = threading.Thread(target=run, args=(broker.stop,))
    thread.start()
    thread.join()
    assert not errors and not broker.running
    assert not broker_threads()


def test_whole_lifecycle_inside_a_thread() -> None:
    results: list[bytes] = []

    def body() -> None:
        with running_broker() as broker:
            results.append(round_trip(broker.url))

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"hello", b"hello"]
    assert not broker_threads()


def test_stop_from_the_brokers_own_loop_is_refused() -> None:
    with running_broker() as broker:
        with pytest.raises(RuntimeError, match="own event loop"):
            broker.call(broker.stop)
        assert broker.running  # the refused stop left it to the context manager
        port = broker.port
    assert not broker.running
    assert port_free(port)
    assert not broker_threads()


# --- the async variant -------------------------------------------------------------------------

def test_async_variant_inside_a_running_loop() -> None:
    async def main() -> bytes:
        async with running_broker_async() as broker:
            connection = await aio_pika.connect(broker.url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue("", exclusive=True)
                await channel.default_exchange.publish(aio_pika.Message(b"async"),
                                                       routing_key=queue.name)
                message = await queue.get(timeout=5)
                await message.ack()
                return message.body

    assert anyio.run(main) == b"async"


def test_async_variant_stops_when_the_body_raises() -> None:
    ports: list[int] = []

    async def main() -> None:
        async with running_broker_async() as broker:
            ports.append(broker.port)
            raise LookupError("the body failed")

    with pytest.raises(LookupError):
        anyio.run(main)
    assert ports and port_free(ports[0])
    assert not [t for t in broker_threads() if t.name.startswith("amqp-broker")]


# --- virtual hosts at run time -----------------------------------------------------------------

@pytest.mark.skipif(not hasattr(Broker, "add_vhost"), reason="runtime vhosts not available yet")
def test_a_vhost_added_at_run_time_is_isolated_and_deleted() -> None:
    with running_broker() as broker:
        endpoint = broker.add_vhost("isolated")
        assert endpoint.vhost == "isolated" and endpoint.port == broker.port
        assert endpoint.url.endswith("/isolated")
        assert round_trip(endpoint.url, queue="mine") == b"hello"
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            connection.channel().queue_declare("mine", passive=True)
        connection.close()
        broker.delete_vhost("isolated")
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            pika.BlockingConnection(pika.URLParameters(endpoint.url))
