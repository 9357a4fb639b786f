"""Login responses, alone: PLAIN and AMQPLAIN as RabbitMQ reads them."""

from __future__ import annotations

import pytest
from pamqp import encode

from amqp_broker.protocol import sasl


def amqplain(table: dict[str, object]) -> bytes:
    return encode.field_table(table)[4:]  # the response is the table without its length


def test_plain_and_amqplain_logins() -> None:
    assert sasl.login("PLAIN", b"\x00guest\x00secret") == (b"guest", b"secret")
    assert sasl.login("AMQPLAIN", amqplain({"LOGIN": "guest", "PASSWORD": "secret"})) == (
        b"guest", b"secret")


@pytest.mark.parametrize("mechanism, response, reason", [
    ("PLAIN", b"guest\x00secret", "expected"),
    ("PLAIN", b"admin\x00guest\x00secret", "authorization identity"),
    ("PLAIN", b"guest\x00guest\x00secret", "authorization identity"),
    ("AMQPLAIN", b"\x05LOGINSguest", "not a field table"),
    ("AMQPLAIN", amqplain({"LOGIN": "guest"}), "missing LOGIN or PASSWORD"),
    ("AMQPLAIN", amqplain({"LOGIN": 1, "PASSWORD": "x"}), "missing LOGIN or PASSWORD"),
    ("CRAM-MD5", b"", "unknown authentication mechanism"),
])
def test_responses_rabbitmq_refuses(mechanism: str, response: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sasl.login(mechanism, response)
