"""AMQP 0-9-1 conformance suite: the same client scenarios against RabbitMQ and our broker."""
