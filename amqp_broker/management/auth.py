"""Who is asking: HTTP basic auth against the broker's users, and what their tags allow.

RabbitMQ's rules (rabbit_web_dispatch_access_control): a request without credentials gets
401 with `WWW-Authenticate` and no body; wrong credentials 401 "Login failed"; a user
with none of the management tags (administrator, monitoring, policymaker, management)
401 "Not management user". Then, per endpoint: administrator may do everything;
monitoring may read everything; policymaker may manage policies and parameters of the
vhosts it has permissions in; management sees only the vhosts it has permissions in
(another vhost is 404, as if it did not exist).

Handlers call `login(request)` (or one of the `require_*` helpers, which call it), which
authenticates once per request and caches the result on `request.state`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from ..broker import Broker, is_loopback
from .errors import login_failed, no_credentials, not_authorised, not_found, vhost_not_visible

MANAGEMENT_TAGS = ("administrator", "monitoring", "policymaker", "management")


@dataclass(frozen=True)
class Login:
    """The authenticated user of a request and its tags."""

    name: str
    tags: tuple[str, ...]
    password: str = ""

    @property
    def is_admin(self) -> bool:
        return "administrator" in self.tags

    @property
    def is_monitor(self) -> bool:
        return "administrator" in self.tags or "monitoring" in self.tags

    @property
    def is_policymaker(self) -> bool:
        return "administrator" in self.tags or "policymaker" in self.tags

    @property
    def is_mgmt_user(self) -> bool:
        return any(tag in self.tags for tag in MANAGEMENT_TAGS)


def broker_of(request: HTTPConnection) -> Broker:
    """The broker the app serves (create_app keeps it in app.state)."""
    broker: Broker = request.app.state.broker
    return broker


def _credentials(request: HTTPConnection) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise login_failed() from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise login_failed()
    return user, password


def login(request: HTTPConnection) -> Login:
    """The request's user: 401 (RabbitMQ's replies) unless the credentials are right and
    the user has a management tag. Authenticated once per request."""
    cached: Login | None = getattr(request.state, "login", None)
    if cached is not None:
        return cached
    credentials = _credentials(request)
    if credentials is None:
        raise no_credentials()
    name, password = credentials
    broker = broker_of(request)
    refusal = broker.access.authenticate(name, password)
    if refusal is not None:
        broker.log.warning("HTTP access denied", user=name, reason=refusal)
        raise login_failed()
    peer = request.client.host if request.client is not None else ""
    if name in broker.config.loopback_users and not is_loopback(peer):
        raise not_authorised("User can only log in via localhost")
    user = broker.access.users[name]
    found = Login(name, tuple(user.tags), password)
    if not found.is_mgmt_user:
        raise not_authorised("Not management user")
    request.state.login = found
    return found


def require_tag(request: HTTPConnection, *tags: str) -> Login:
    """The user, who must have one of tags (administrator always passes); 401 with
    RabbitMQ's reason otherwise ("Not administrator user", "Not monitor user", ...)."""
    user = login(request)
    if user.is_admin or any(tag in user.tags for tag in tags):
        return user
    if not tags or tags == ("administrator",):
        raise not_authorised("Not administrator user")
    if "monitoring" in tags:
        raise not_authorised("Not monitor user")
    raise not_authorised("User not authorised to access object")


def require_admin(request: HTTPConnection) -> Login:
    return require_tag(request, "administrator")


def require_monitor(request: HTTPConnection) -> Login:
    return require_tag(request, "monitoring")


def vhost_exists(request: HTTPConnection, vhost: str) -> bool:
    return vhost in broker_of(request).vhosts


def has_vhost_access(request: HTTPConnection, user: Login, vhost: str) -> bool:
    """True when the user has a permission entry in the vhost (may connect there)."""
    return (user.name, vhost) in broker_of(request).access.permissions


def require_vhost_access(request: HTTPConnection, vhost: str, *,
                         monitor_reads: bool = False, must_exist: bool = True) -> Login:
    """The user, who may act in vhost: administrators anywhere, others where they have
    permissions (with monitor_reads, monitoring users anywhere: for GET of per-vhost
    lists and objects). A vhost that does not exist is 404 "Object Not Found" (unless
    must_exist is false); one the user has no permissions in is 401 "User not
    authorised to access virtual host", as RabbitMQ 3.10 answers."""
    user = login(request)
    exists = vhost_exists(request, vhost)
    if not exists:
        if must_exist:
            raise not_found()
        return user
    if user.is_admin or (monitor_reads and user.is_monitor):
        return user
    if not has_vhost_access(request, user, vhost):
        raise vhost_not_visible()
    return user


def require_policy_access(request: HTTPConnection, vhost: str | None) -> Login:
    """Policies and parameters: administrators, or policymakers in vhosts they have
    permissions in (RabbitMQ's is_authorized_policies)."""
    user = login(request)
    if user.is_admin:
        return user
    if not user.is_policymaker:
        raise not_authorised("User not authorised to access object")
    if vhost is not None and vhost_exists(request, vhost) and not has_vhost_access(
            request, user, vhost):
        raise not_authorised("User not authorised to access object")
    return user


def visible_vhosts(request: HTTPConnection, *, monitor_sees_all: bool = True) -> list[str]:
    """Names of the vhosts the user may see: all for administrators (and monitoring
    users, unless monitor_sees_all is false), else those it has permissions in."""
    user = login(request)
    broker = broker_of(request)
    if user.is_admin or (monitor_sees_all and user.is_monitor):
        return list(broker.vhosts)
    return [v for v in broker.vhosts if (user.name, v) in broker.access.permissions]


def filter_by_vhost(request: HTTPConnection, items: Iterable[dict[str, Any]],
                    monitor_sees_all: bool = True) -> list[dict[str, Any]]:
    """The items (each with a "vhost" field) of the vhosts the user may see."""
    visible = set(visible_vhosts(request, monitor_sees_all=monitor_sees_all))
    return [item for item in items if item.get("vhost") in visible]
