import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

app = Celery("tasks")


@app.task
def add(x, y):
    return x + y


@pytest.fixture
def celery_worker(amqp_broker):
    # broker_heartbeat=0: no heartbeat timer, so the worker thread stops within a second
    app.conf.update(broker_url=amqp_broker.url, result_backend="rpc://", broker_heartbeat=0)
    with start_worker(app, perform_ping_check=False):  # a worker thread
        yield


def test_task_runs_on_the_worker(celery_worker):
    result = add.delay(2, 3)
    assert result.get(timeout=10) == 5
