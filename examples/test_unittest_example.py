import unittest

import pika

from amqp_broker.testing import start_broker


class OrdersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = start_broker()  # any Config field as a keyword: heartbeat=5, ...
        cls.addClassCleanup(cls.broker.stop)

    def test_publish_and_get(self):
        connection = pika.BlockingConnection(pika.URLParameters(self.broker.url))
        channel = connection.channel()
        channel.queue_declare("orders")
        channel.basic_publish(exchange="", routing_key="orders", body=b"order 1")
        method, properties, body = channel.basic_get("orders", auto_ack=True)
        self.assertEqual(body, b"order 1")
        connection.close()


if __name__ == "__main__":
    unittest.main()
