"""kombu producer / consumer processes with topic routing (used by the ``apps.kombu`` scenario).

    python -m conformance.apps.kombu_app consume URL EXCHANGE QUEUE_PREFIX EXPECTED
        declares three queues bound with topic patterns, prints "READY", then prints one JSON
        line {queue: [routing keys...]} once EXPECTED messages arrived (or after 10 s idle)
    python -m conformance.apps.kombu_app produce URL EXCHANGE KEY...
        publishes one JSON message per routing key (persistent, confirmed)
"""

from __future__ import annotations

import json
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue

PATTERNS = {"eu": "*.eu.#", "orders": "orders.#", "any_created": "#.created"}


def consume(url, exchange, prefix, expected):
    ex = Exchange(exchange, type="topic", durable=False)
    queues = [Queue(f"{prefix}.{n}", ex, routing_key=p, durable=False) for n, p in PATTERNS.items()]
    got = {n: [] for n in PATTERNS}
    with Connection(url, connect_timeout=5) as conn:
        ch = conn.channel()

        def handler(n):
            def on_message(body, message):
                got[n].append(body["key"])
                message.ack()
            return on_message

        consumers = []
        for n, q in zip(PATTERNS, queues, strict=False):
            c = Consumer(ch, [q], callbacks=[handler(n)], accept=["json"])
            c.consume()
            consumers.append(c)
        print("READY", flush=True)
        while sum(len(v) for v in got.values()) < expected:
            try:
                conn.drain_events(timeout=10)
            except TimeoutError:
                break
        for c in consumers:
            c.cancel()
        for q in queues:
            q(ch).delete()
        ex(ch).delete()
    print(json.dumps({n: sorted(v) for n, v in got.items()}), flush=True)


def produce(url, exchange, keys):
    ex = Exchange(exchange, type="topic", durable=False)
    with Connection(url, connect_timeout=5, transport_options={"confirm_publish": True}) as conn:
        prod = Producer(conn.channel(), ex)
        for k in keys:
            prod.publish({"key": k}, routing_key=k, serializer="json", delivery_mode=2)
    print(json.dumps({"published": len(keys)}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif mode == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(f"unknown mode {mode}")
