"""Integration tests with aio-pika (asyncio; each test runs its own event loop
with an overall asyncio timeout, so nothing waits forever)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest
from pamqp import commands

from helpers import BrokerProcess


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)
    return asyncio.run(bounded())


async def connect(broker: BrokerProcess) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/", timeout=10)


def test_publish_consume_ack(broker: BrokerProcess, uid: str) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue("aio-" + uid)
            for i in range(10):
                await ch.default_exchange.publish(
                    aio_pika.Message(str(i).encode(), headers={"i": i}, content_type="text/plain"),
                    routing_key=q.name)
            got: list[int] = []
            async with q.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        assert message.headers["i"] == int(message.body)
                        assert message.content_type == "text/plain"
                        got.append(int(message.body))
                    if len(got) == 10:
                        break
            assert got == list(range(10))
            declared = await ch.declare_queue("aio-" + uid, passive=True)
            assert declared.declaration_result.message_count == 0
            await q.delete()
    run(scenario)


def test_publisher_confirms_return_ack(broker: BrokerProcess, uid: str) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue(exclusive=True)
            for _i in range(20):
                confirmation = await ch.default_exchange.publish(
                    aio_pika.Message(b"x", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=q.name)
                assert isinstance(confirmation, commands.Basic.Ack)
            # many in flight at once
            confirmations = await asyncio.gather(*(
                ch.default_exchange.publish(aio_pika.Message(b"y"), routing_key=q.name)
                for _ in range(200)))
            assert all(isinstance(c, commands.Basic.Ack) for c in confirmations)
            declared = await ch.declare_queue(q.name, passive=True)
            assert declared.declaration_result.message_count == 220
    run(scenario)


def test_confirm_mandatory_unroutable_raises(broker: BrokerProcess, uid: str) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            with pytest.raises(aio_pika.exceptions.DeliveryError) as info:
                await ch.default_exchange.publish(aio_pika.Message(b"lost"),
                                                  routing_key="nobody-" + uid, mandatory=True)
            assert info.value.message.body == b"lost"
    run(scenario)


def test_consumer_with_prefetch(broker: BrokerProcess, uid: str) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=3)
            q = await ch.declare_queue(exclusive=True)
            for i in range(10):
                await ch.default_exchange.publish(aio_pika.Message(str(i).encode()),
                                                  routing_key=q.name)
            held: list[aio_pika.abc.AbstractIncomingMessage] = []
            three = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                held.append(message)
                if len(held) >= 3:
                    three.set()

            tag = await q.consume(on_message)
            await three.wait()
            await asyncio.sleep(0.3)
            assert len(held) == 3  # the fourth waits for an ack
            await held[0].ack()
            await asyncio.sleep(0.3)
            assert len(held) == 4
            for m in held[1:]:
                await m.ack()
            deadline = asyncio.get_running_loop().time() + 5
            while len(held) < 10:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
                for m in held:
                    if not m.processed:
                        await m.ack()
            assert [int(m.body) for m in held] == list(range(10))
            await q.cancel(tag)
    run(scenario)


def test_missing_queue_passive_404(broker: BrokerProcess, uid: str) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await ch.declare_queue("missing-" + uid, passive=True)
            ch2 = await conn.channel()  # the connection survives a channel error
            await ch2.declare_queue(exclusive=True)
    run(scenario)


def test_reject_requeue_redelivered(broker: BrokerProcess) -> None:
    async def scenario() -> None:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(exclusive=True)
            await ch.default_exchange.publish(aio_pika.Message(b"again"), routing_key=q.name)
            first = await q.get(timeout=5)
            assert not first.redelivered
            await first.reject(requeue=True)
            second = await q.get(timeout=5)
            assert second.body == b"again" and second.redelivered
            await second.ack()
            assert await q.get(fail=False, timeout=5) is None
    run(scenario)


@pytest.mark.time_limit(90)
def test_100_concurrent_connections(broker: BrokerProcess, uid: str) -> None:
    per_connection = 50

    async def one(n: int) -> list[bytes]:
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue(f"conc-{uid}-{n}", exclusive=True)
            await asyncio.gather(*(
                ch.default_exchange.publish(aio_pika.Message(f"{n}:{i}".encode()),
                                            routing_key=q.name)
                for i in range(per_connection)))
            got: list[bytes] = []
            async with q.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    got.append(message.body)
                    if len(got) == per_connection:
                        break
            return got

    async def scenario() -> list[list[bytes]]:
        return await asyncio.gather(*(one(n) for n in range(100)))

    results = run(scenario, timeout=75)
    for n, got in enumerate(results):
        assert got == [f"{n}:{i}".encode() for i in range(per_connection)]
