"""identity: what connection.start announces and how peers and clients are named."""

from __future__ import annotations

from amqp_broker import __version__
from amqp_broker.identity import CAPABILITIES, client_name, peer_name, server_properties


def test_server_properties_announce_rabbitmqs_capabilities() -> None:
    props = server_properties("c1")
    assert props["product"] == "amqp-broker" and props["version"] == __version__
    assert props["cluster_name"] == "c1"
    assert props["capabilities"] is CAPABILITIES
    assert CAPABILITIES["authentication_failure_close"] and CAPABILITIES["basic.nack"]


def test_peer_names_are_host_colon_port() -> None:
    assert peer_name(("127.0.0.1", 5672)) == "127.0.0.1:5672"
    assert peer_name(("::1", 5672)) == "[::1]:5672"
    assert peer_name(None) == "-"


def test_client_names_from_bytes_or_text() -> None:
    assert client_name({"product": b"pika", "version": "1.3.2"}) == "pika 1.3.2"
    assert client_name({}) == ""
