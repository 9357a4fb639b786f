import aio_pika
import pytest


@pytest.mark.asyncio
async def test_publish_and_consume(amqp_broker):
    connection = await aio_pika.connect_robust(amqp_broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("events", auto_delete=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"user signed up"), routing_key="events"
        )
        message = await queue.get(timeout=5)
        await message.ack()
        assert message.body == b"user signed up"
