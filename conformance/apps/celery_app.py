"""A small Celery application used end to end by the ``apps.celery`` conformance scenario.

The worker is started as a subprocess:

    CONF_BROKER_URL=amqp://guest:guest@127.0.0.1:5673// CONF_QUEUE=myqueue \
    python -m celery -A conformance.apps.celery_app:app worker --pool threads --concurrency 2

Configuration comes from the environment so the same module serves any broker:
  CONF_BROKER_URL   broker URL (amqp://...)
  CONF_BACKEND      result backend (default rpc://)
  CONF_QUEUE        task queue / exchange name (unique per run)
  CONF_DLQ          queue that rejected messages are dead-lettered to (optional)

The client side (``drive``) sends tasks by name, so it needs no import of the task functions.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.exceptions import Reject
from kombu import Exchange, Queue


def make_app(broker_url: str, backend: str, queue: str, dlq: str | None = None) -> Celery:
    app = Celery("conformance", broker=broker_url, backend=backend)
    args = {}
    if dlq:
        args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    ex = Exchange(queue, type="direct", durable=False)
    app.conf.update(
        task_queues=[Queue(queue, ex, routing_key=queue, durable=False, queue_arguments=args)],
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_create_missing_queues=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_prefetch_multiplier=8,
        task_acks_late=True,
        result_expires=None,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=3,
        worker_hijack_root_logger=False,
        result_persistent=False,
    )
    return app


app = make_app(
    os.environ.get("CONF_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get("CONF_BACKEND", "rpc://"),
    os.environ.get("CONF_QUEUE", "conformance-celery"),
    os.environ.get("CONF_DLQ") or None,
)


@app.task(name="conf.add")
def add(x, y):
    return x + y


@app.task(name="conf.tsum")
def tsum(values):
    return sum(values)


@app.task(name="conf.flaky", bind=True, autoretry_for=(ValueError,),
          retry_kwargs={"max_retries": 5, "countdown": 0})
def flaky(self, fail_times):
    """Fails ``fail_times`` times with ValueError (auto-retried), then returns the attempt count."""
    if self.request.retries < fail_times:
        raise ValueError(f"attempt {self.request.retries}")
    return {"retries": self.request.retries}


@app.task(name="conf.manual_retry", bind=True, max_retries=3)
def manual_retry(self, fail_times):
    """Uses self.retry() explicitly."""
    if self.request.retries < fail_times:
        raise self.retry(countdown=0, exc=RuntimeError("again"))
    return {"retries": self.request.retries}


@app.task(name="conf.reject", bind=True, acks_late=True)
def reject(self, payload):
    """Rejects its message without requeue: the broker dead-letters it (when CONF_DLQ is set)."""
    raise Reject("rejected on purpose", requeue=False)
