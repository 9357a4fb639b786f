import pika


def test_publish_and_get(amqp_broker):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_broker.url))
    channel = connection.channel()
    channel.queue_declare("orders")
    channel.basic_publish(exchange="", routing_key="orders", body=b"order 1")
    method, properties, body = channel.basic_get("orders", auto_ack=True)
    assert body == b"order 1"
    connection.close()


def test_with_a_broker_of_its_own(amqp_broker_fresh):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_broker_fresh.url))
    channel = connection.channel()
    declared = channel.queue_declare("orders")
    assert declared.method.message_count == 0  # nothing left by other tests
    connection.close()
