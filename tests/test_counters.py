"""amqp_broker.counters: the counters' home objects, and why they exist."""

from __future__ import annotations

from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.counters import SIZE_BOUNDS, BrokerCounters, channel_counts
from tests.inproc import Client, make_broker

# CPython keeps an instance's attributes in its compact, specialisable layout only up to
# this many; past it every attribute access on the object gets slower
SHARED_KEYS_MAX = 30


def test_broker_and_channel_stay_within_the_fast_attribute_layout() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    ch = c.conn.channels[1]
    assert len(vars(broker)) <= SHARED_KEYS_MAX, sorted(vars(broker))
    assert len(vars(ch)) <= SHARED_KEYS_MAX, sorted(vars(ch))


def test_broker_attributes_read_and_write_the_counters() -> None:
    broker = make_broker()
    assert isinstance(broker.counters, BrokerCounters)
    broker.published += 2
    broker.channel_errors += 1
    assert broker.counters.received == 2 and broker.published == 2
    assert broker.counters.channel_errors == 1
    assert isinstance(Broker.published, object)  # class access does not raise


def test_channel_counts_and_retirement() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="q"), 1)
    c.publish(1, "", "q", b"x")
    c.send(commands.Basic.Get(queue="q"), 1)
    ch = c.conn.channels[1]
    counts = channel_counts(ch)
    assert counts["published"] == 1 and counts["get_manual"] == 1 and counts["next_tag"] == 1
    c.send(commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0), 1)
    assert broker.counters.channels_opened == broker.counters.channels_closed == 1
    assert broker.counters.retired["published"] == 1
    assert broker.counters.retired["manual_delivered"] == 1


def test_publish_path_small_message_bound_is_the_first_bucket() -> None:
    # Channel.publish compares with the literal 100 (cheaper than indexing SIZE_BOUNDS)
    import inspect

    from amqp_broker.channel import Channel
    assert SIZE_BOUNDS[0] == 100
    assert "if size > 100:" in inspect.getsource(Channel.publish)


def test_connection_attributes_are_slots() -> None:
    """Connection keeps every attribute it sets in __slots__ (it has more than 30): one
    set outside them would land in the instance dict, the slow layout, unnoticed."""
    from pamqp import commands

    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="q"), 1)
    c.publish(1, "", "q", b"x")
    c.frames()
    assert vars(c.conn) == {}
    c.conn.force_close()
    c.conn.connection_lost()
    assert vars(c.conn) == {}
