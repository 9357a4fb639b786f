"""RabbitMQ's rabbitmq.conf (the cuttlefish `key = value` format) read into a settings Layer.

Only the keys this broker has a setting for are read (see README, "Configuration");
other keys of RabbitMQ or its plugins are warnings naming them (the broker runs without
them), and anything else stops start-up, naming the key, the file and the line.
Values follow RabbitMQ's schema: ports, IP:port listeners, information units for
memory and disk limits, milliseconds for consumer_timeout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .config import ConfigError
from .settings import (
    Layer,
    OfRam,
    boolean,
    bytesize,
    cert_login_from,
    integer,
    listener,
    log_level,
    mechanisms,
    number,
    port,
    size,
    text,
    verify,
)

# one-value keys: rabbitmq.conf key -> (Config field, parser)
SIMPLE = {
    "ssl_options.cacertfile": ("tls_cacertfile", text),
    "ssl_options.certfile": ("tls_certfile", text),
    "ssl_options.keyfile": ("tls_keyfile", text),
    "ssl_options.verify": ("tls_verify_peer", verify),
    "ssl_options.fail_if_no_peer_cert": ("tls_fail_if_no_peer_cert", boolean),
    "ssl_cert_login_from": ("ssl_cert_login_from", cert_login_from),
    "load_definitions": ("load_definitions", text),
    "definitions.local.path": ("load_definitions", text),
    "management.load_definitions": ("load_definitions", text),
    "default_user": ("default_user", text),
    "default_vhost": ("default_vhost", text),
    "heartbeat": ("heartbeat", integer),
    "frame_max": ("frame_max", bytesize),
    "channel_max": ("channel_max", integer),
    "max_channels_per_connection": ("channel_max", integer),
    "max_message_size": ("max_message_size", integer),
    "total_memory_available_override_value": ("total_memory", size),
    "management.tcp.port": ("management_port", port),
    "management.tcp.ip": ("management_host", text),
    "prometheus.tcp.port": ("metrics_port", port),
    "prometheus.tcp.ip": ("metrics_host", text),
    "log.console.level": ("log_level", log_level),
}

# RabbitMQ keys (rabbit.schema and the plugins' schemas) this broker has no use for:
# a warning names them and start-up goes on
UNSUPPORTED = frozenset("""
    num_acceptors.tcp num_acceptors.ssl socket_writer.gc_threshold handshake_timeout
    reverse_dns_lookups ssl_allow_poodle_attack ssl_options ssl_cert_login_san_type
    ssl_cert_login_san_index ssl_handshake_timeout cluster_name default_worker_pool_size
    password_hashing_module anonymous_login_user anonymous_login_pass initial_frame_max
    channel_max_per_node consumer_max_per_channel session_max_per_connection
    link_max_per_session max_connections ranch_connection_max vhost_max
    cluster_exchange_limit vm_memory_high_watermark_paging_ratio memory_monitor_interval
    vm_memory_calculation_strategy cluster_partition_handling delegate_count
    mirroring_sync_batch_size mirroring_sync_max_throughput cluster_queue_limit
    cluster_keepalive_interval queue_master_locator queue_leader_locator collect_statistics
    collect_statistics_interval hipe_compile mnesia_table_loading_retry_timeout
    mnesia_table_loading_retry_limit message_store_shutdown_timeout
    queue_index_embed_msgs_below background_gc_enabled background_gc_target_interval
    proxy_protocol vhost_restart_strategy consumer_disconnected_timeout motd_file
    prevent_startup_if_node_was_reset net_ticktime default_queue_type
""".split())
UNSUPPORTED_FAMILIES = tuple("""
    erlang. definitions. ssl_options. metadata_store. auth_backends. credential_validator.
    default_permissions. default_users. default_policies. default_limits. default_user_tags.
    cluster_partition_handling. cluster_formation. product. log. distribution.
    sysmon_handler. raft. exchange_types. queue_types. classic_queue. quorum_queue.
    runtime_parameters. channel_interceptor. message_interceptors. cluster_tags. node_tags.
    amqp10_client. amqp_client. tcp_listen_options. management. management_agent. prometheus.
    stream. mqtt. stomp. web_mqtt. web_stomp. auth_ldap. auth_http. auth_cache. auth_oauth2.
    trust_store. federation. shovel. tracing. event_exchange. aws. http_dispatch.
    web_dispatch.
""".split())

_KEY = re.compile(r"[A-Za-z0-9_.$@-]+")


@dataclass
class _State:
    """Keys that combine several lines, resolved at the end of the file."""
    tcp: list[tuple[str, str, tuple[str, int]]] = field(default_factory=list)
    ssl: list[tuple[str, str, tuple[str, int]]] = field(default_factory=list)
    mechanisms: dict[str, tuple[str, str]] = field(default_factory=dict)
    loopback: dict[str, tuple[bool, str]] = field(default_factory=dict)
    loopback_none: str | None = None
    limits: dict[str, tuple[object, str]] = field(default_factory=dict)


def read_rabbitmq_conf(content: str, path: str) -> Layer:
    layer = Layer()
    state = _State()
    for lineno, raw in enumerate(content.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()  # cuttlefish: a value ends at '#'
        if not line:
            continue
        where = f"{path}:{lineno}"
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not _KEY.fullmatch(key):
            raise ConfigError(f"{where}: expected 'key = value', found {line!r}")
        if not value:
            raise ConfigError(f"{where}: {key}: no value")
        try:
            _setting(layer, state, key, value, where)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    _finish(layer, state)
    return layer


def _setting(layer: Layer, state: _State, key: str, value: str, where: str) -> None:
    origin = f"{where}: {key}"
    if key in SIMPLE:
        name, parse = SIMPLE[key]
        layer.set(name, parse(value), origin)
        return
    parts = key.split(".")
    if key in ("listeners.tcp", "listeners.ssl"):
        if value != "none":
            raise ValueError(f"not 'none' (give a listener as {key}.default = PORT)")
        if key == "listeners.tcp":
            raise ValueError("none (no AMQP listener without TLS) is not supported")
        layer.set("tls_enabled", False, origin)
    elif len(parts) == 3 and parts[0] == "listeners" and parts[1] in ("tcp", "ssl"):
        found = state.tcp if parts[1] == "tcp" else state.ssl
        found.append((key, origin, listener(value)))
    elif key == "default_pass":
        if value.startswith("encrypted:"):
            raise ValueError("encrypted values are not supported")
        layer.set("default_pass", value, origin)
    elif len(parts) == 2 and parts[0] == "auth_mechanisms":
        state.mechanisms[parts[1]] = (mechanisms(value)[0], origin)
    elif key == "loopback_users":
        if value != "none":
            raise ValueError(f"not 'none' (give users as loopback_users.NAME = true): "
                             f"{value!r}")
        state.loopback_none = origin
    elif len(parts) >= 2 and parts[0] == "loopback_users":
        state.loopback[key.split(".", 1)[1]] = (boolean(_true_false(value)), origin)
    elif key in ("vm_memory_high_watermark.relative", "disk_free_limit.relative"):
        state.limits[key] = (OfRam(number(value)), origin)
    elif key in ("vm_memory_high_watermark.absolute", "disk_free_limit.absolute"):
        state.limits[key] = (size(value), origin)
    elif key == "consumer_timeout":
        milliseconds = integer(value)
        if milliseconds <= 0:
            raise ValueError(f"not a positive number of milliseconds: {value!r}")
        layer.set("consumer_timeout", milliseconds / 1000, origin)
    elif key == "definitions.import_backend":
        if value not in ("local_filesystem", "rabbit_definitions_import_local_filesystem"):
            raise ValueError(f"{value!r} is not supported (local_filesystem)")
    elif key in UNSUPPORTED or key.startswith(UNSUPPORTED_FAMILIES):
        layer.warnings.append(f"{where}: {key} is a RabbitMQ setting this broker does not "
                              "support; ignored")
    else:
        raise ValueError("unknown setting")


def _true_false(value: str) -> str:
    if value not in ("true", "false"):
        raise ValueError(f"not true or false: {value!r}")
    return value


def _finish(layer: Layer, state: _State) -> None:
    for found, host, port_, kind in ((state.tcp, "host", "port", "TCP"),
                                     (state.ssl, "tls_host", "tls_port", "TLS")):
        if len(found) > 1:
            first, second = found[0][1], found[1][1]
            raise ConfigError(f"{second}: only one {kind} listener is supported "
                              f"(also given by {first})")
        if found:
            _, origin, (address, number_) = found[0]
            layer.set(host, address, origin)
            layer.set(port_, number_, origin)
    if state.mechanisms:
        # RabbitMQ offers them in the order of their keys
        ordered = [state.mechanisms[k] for k in sorted(state.mechanisms)]
        layer.set("auth_mechanisms", tuple(dict.fromkeys(m for m, _ in ordered)),
                  ordered[0][1])
    if state.loopback_none is not None:
        layer.set("loopback_users", (), state.loopback_none)
    elif state.loopback:
        # as RabbitMQ: once loopback_users.* is given, exactly the users set to true
        users = tuple(u for u, (on, _) in state.loopback.items() if on)
        layer.set("loopback_users", users, next(iter(state.loopback.values()))[1])
    for setting, name in (("vm_memory_high_watermark", "memory_high_water"),
                          ("disk_free_limit", "disk_free_limit")):
        absolute = state.limits.get(setting + ".absolute")
        relative = state.limits.get(setting + ".relative")
        chosen = absolute or relative
        if absolute and relative:
            # RabbitMQ's rule: absolute wins, with a warning
            layer.warnings.append(f"{absolute[1]} and {setting}.relative are both set; "
                                  f"{setting}.absolute is used")
        if chosen:
            layer.set(name, chosen[0], chosen[1])
