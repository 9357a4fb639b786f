"""Permission checks as functions: the configure/write/read matrix, topic permissions with
{username}/{vhost}, vhost access and user_id. Every expected reply text was read from
RabbitMQ 3.10.8 (the reference broker) with pika, for the same users and permissions
(the users of tests/fixtures/rabbitmq-definitions.json)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from amqp_broker.permissions import (
    AccessControl,
    Permission,
    TopicPermission,
    UserContext,
    can_access_vhost,
    check_resource,
    check_topic,
    check_user_id,
    check_vhost_access,
)
from amqp_broker.protocol.errors import (
    ACCESS_REFUSED,
    NOT_ALLOWED,
    PRECONDITION_FAILED,
    AMQPError,
)
from amqp_broker.users import DefinitionError, NotFoundError, User


@dataclass
class X:
    name: str
    type_name: str = "topic"


def _access() -> AccessControl:
    saved: dict[str, object] = {}
    access = AccessControl({"/", "app"}, lambda k, r: saved.__setitem__(k, r))
    for name in ("guest", "limited", "tuser", "bob", "certuser", "imp"):
        access.put_user(User.with_password(name, name, ("impersonator",) if name == "imp"
                                           else ()))
    access.set_permissions("guest", "/", ".*", ".*", ".*")
    access.set_permissions("limited", "/", "^$", "ex-w.*", "q-r.*")
    access.set_permissions("tuser", "/", "^(tq.*|amq\\.gen.*|tx.*)$", ".*",
                           "^(tq.*|amq\\.topic|orders)$")
    access.set_permissions("bob", "app", "^bob-.*", "^(bob-.*|amq\\.default)$", "")
    access.set_permissions("certuser", "/", "", "", "")
    access.set_permissions("imp", "/", ".*", ".*", ".*")
    access.set_topic_permissions("tuser", "/", "amq.topic", "^{username}\\.{vhost}",
                                 "^r\\.{username}\\.")
    access.set_topic_permissions("bob", "app", "amq.topic", "^{username}\\..*",
                                 "^(public|{username})\\..*")
    return access


def _refused(fn: object, *args: object) -> AMQPError:
    with pytest.raises(AMQPError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


# (user, vhost, kind, name, perm, allowed)
MATRIX = [
    ("guest", "/", "queue", "anything", "configure", True),
    ("guest", "/", "exchange", "", "write", True),
    ("limited", "/", "queue", "x", "configure", False),
    ("limited", "/", "queue", "", "configure", True),  # "^$" matches only the empty name
    ("limited", "/", "exchange", "ex-w1", "write", True),
    ("limited", "/", "exchange", "my-ex-w1", "write", True),  # searched, not anchored
    ("limited", "/", "exchange", "", "write", False),  # checked as amq.default
    ("limited", "/", "queue", "q-r", "read", True),
    ("limited", "/", "queue", "work", "read", False),
    ("limited", "/", "queue", "q-r", "write", False),
    ("tuser", "/", "queue", "tq1", "configure", True),
    ("tuser", "/", "queue", "xtq1", "configure", False),  # anchored by the expression
    ("tuser", "/", "queue", "amq.gen-abc", "configure", True),
    ("tuser", "/", "exchange", "amq.topic", "read", True),
    ("tuser", "/", "exchange", "amq.topicx", "read", False),
    ("bob", "app", "exchange", "", "write", True),  # amq.default matches the expression
    ("bob", "app", "queue", "bob-inbox", "read", False),  # "" permits nothing
    ("bob", "app", "exchange", "amq.topic", "write", False),
    ("bob", "/", "queue", "bob-inbox", "configure", False),  # no permissions in that vhost
    ("certuser", "/", "queue", "q", "read", False),
    ("nobody", "/", "queue", "q", "read", False),
]


@pytest.mark.parametrize("user,vhost,kind,name,perm,allowed", MATRIX)
def test_resource_matrix(user: str, vhost: str, kind: str, name: str, perm: str,
                         allowed: bool) -> None:
    ctx = _access().context(user)
    if allowed:
        check_resource(ctx, vhost, kind, name, perm)
        check_resource(ctx, vhost, kind, name, perm)  # and again, remembered
    else:
        exc = _refused(check_resource, ctx, vhost, kind, name, perm)
        assert exc.reply_code == ACCESS_REFUSED


@pytest.mark.parametrize("user,vhost,kind,name,perm,text", [
    ("limited", "/", "queue", "x", "configure",
     "ACCESS_REFUSED - access to queue 'x' in vhost '/' refused for user 'limited'"),
    ("limited", "/", "exchange", "", "write",
     "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user "
     "'limited'"),
    ("limited", "/", "queue", "amq.gen-op0GHlUR11-69BgvXorNnA", "configure",
     "ACCESS_REFUSED - access to queue 'amq.gen-op0GHlUR11-69BgvXorNnA' in vhost '/' "
     "refused for user 'limited'"),
    ("limited", "/", "exchange", "orders", "configure",
     "ACCESS_REFUSED - access to exchange 'orders' in vhost '/' refused for user 'limited'"),
    ("tuser", "/", "queue", "tx-dlx", "read",
     "ACCESS_REFUSED - access to queue 'tx-dlx' in vhost '/' refused for user 'tuser'"),
    ("bob", "app", "exchange", "amq.topic", "write",
     "ACCESS_REFUSED - access to exchange 'amq.topic' in vhost 'app' refused for user 'bob'"),
])
def test_reply_texts_as_rabbitmq(user: str, vhost: str, kind: str, name: str, perm: str,
                                 text: str) -> None:
    exc = _refused(check_resource, _access().context(user), vhost, kind, name, perm)
    assert (exc.reply_code, exc.reply_text) == (403, text)


def test_topic_permissions_expand_username_and_vhost() -> None:
    access = _access()
    tuser = access.context("tuser")
    topic = X("amq.topic")
    check_topic(tuser, "/", topic, "tuser./", "write")
    check_topic(tuser, "/", topic, "tuser./.more", "write")
    check_topic(tuser, "/", topic, "r.tuser.x", "read")
    exc = _refused(check_topic, tuser, "/", topic, "other.x", "write")
    assert exc.reply_text == ("ACCESS_REFUSED - access to topic 'other.x' in exchange "
                              "'amq.topic' in vhost '/' refused for user 'tuser'")
    exc = _refused(check_topic, tuser, "/", topic, "r.other.x", "read")
    assert exc.reply_text == ("ACCESS_REFUSED - access to topic 'r.other.x' in exchange "
                              "'amq.topic' in vhost '/' refused for user 'tuser'")
    exc = _refused(check_topic, tuser, "/", topic, "", "write")
    assert exc.reply_text == ("ACCESS_REFUSED - access to topic '' in exchange 'amq.topic' "
                              "in vhost '/' refused for user 'tuser'")
    bob = access.context("bob")
    check_topic(bob, "app", topic, "public.news", "read")
    check_topic(bob, "app", topic, "bob.news", "write")
    _refused(check_topic, bob, "app", topic, "public.news", "write")


def test_topic_permissions_apply_to_topic_exchanges_they_name_only() -> None:
    tuser = _access().context("tuser")
    check_topic(tuser, "/", X("orders"), "zzz", "write")  # a topic exchange without any
    check_topic(tuser, "/", X("amq.direct", "direct"), "zzz", "write")  # not a topic one
    check_topic(_access().context("guest"), "/", X("amq.topic"), "zzz", "write")  # none


def test_empty_topic_expression_permits_nothing() -> None:
    access = _access()
    access.set_topic_permissions("limited", "/", "amq.topic", "^orders\\.", "")
    ctx = access.context("limited")
    check_topic(ctx, "/", X("amq.topic"), "orders.eu", "write")
    _refused(check_topic, ctx, "/", X("amq.topic"), "orders.eu", "read")


def test_vhost_access_needs_a_permission_entry() -> None:
    access = _access()
    assert can_access_vhost(access, "guest", "/")
    assert can_access_vhost(access, "certuser", "/")  # empty expressions still count
    assert not can_access_vhost(access, "bob", "/")
    assert not can_access_vhost(access, "guest", "nope")
    exc = _refused(check_vhost_access, access, "bob", "/")
    assert (exc.reply_code, exc.reply_text) == (
        NOT_ALLOWED, "NOT_ALLOWED - access to vhost '/' refused for user 'bob'")


def test_user_id_must_be_the_users_own_unless_impersonator() -> None:
    access = _access()
    check_user_id(access.context("tuser"), None)
    check_user_id(access.context("tuser"), "tuser")
    exc = _refused(check_user_id, access.context("tuser"), "other")
    assert (exc.reply_code, exc.reply_text) == (
        PRECONDITION_FAILED,
        "PRECONDITION_FAILED - user_id property set to 'other' but authenticated user was "
        "'tuser'")
    check_user_id(access.context("imp"), "other")


def test_changed_permissions_take_effect_for_open_contexts() -> None:
    access = _access()
    ctx: UserContext = access.context("limited")
    check_resource(ctx, "/", "exchange", "ex-w1", "write")
    access.set_permissions("limited", "/", "", "", "")
    _refused(check_resource, ctx, "/", "exchange", "ex-w1", "write")
    access.set_permissions("limited", "/", ".*", ".*", ".*")
    check_resource(ctx, "/", "queue", "x", "configure")
    access.clear_permissions("limited", "/")
    _refused(check_resource, ctx, "/", "queue", "x", "configure")
    guest = access.context("guest")
    check_resource(guest, "/", "queue", "x", "configure")
    access.delete_user("guest")
    _refused(check_resource, guest, "/", "queue", "x", "configure")
    assert ("guest", "/") not in access.permissions


def test_tags_follow_the_user() -> None:
    access = _access()
    ctx = access.context("tuser")
    _refused(check_user_id, ctx, "other")
    access.put_user(User.with_password("tuser", "x", ("impersonator",)))
    check_user_id(ctx, "other")


def test_names_are_matched_as_bytes_like_erlang() -> None:
    access = AccessControl({"/"})
    access.put_user(User("u"))
    access.set_permissions("u", "/", "^.$", "^..$", "^é")
    ctx = access.context("u")
    _refused(check_resource, ctx, "/", "queue", "é", "configure")  # two bytes
    check_resource(ctx, "/", "queue", "é", "write")
    check_resource(ctx, "/", "queue", "été", "read")


def test_set_permissions_refuses_unknown_users_vhosts_and_bad_expressions() -> None:
    access = _access()
    with pytest.raises(NotFoundError, match="no user 'ghost'"):
        access.set_permissions("ghost", "/", ".*", ".*", ".*")
    with pytest.raises(NotFoundError, match="no vhost 'nope'"):
        access.set_permissions("guest", "nope", ".*", ".*", ".*")
    with pytest.raises(DefinitionError, match="invalid regular expression '\\('"):
        access.set_permissions("guest", "/", "(", ".*", ".*")
    with pytest.raises(DefinitionError, match="invalid regular expression"):
        access.set_topic_permissions("guest", "/", "amq.topic", "[", ".*")
    assert access.permissions[("guest", "/")].configure == ".*"  # unchanged


def test_every_change_is_saved_and_forgotten_with_its_vhost() -> None:
    saved: dict[str, object] = {}
    access = AccessControl({"/", "app"}, lambda k, r: saved.__setitem__(k, r))
    access.put_user(User("u"))
    access.set_permissions("u", "app", ".*", "", "")
    access.set_topic_permissions("u", "app", "amq.topic", ".*", ".*")
    assert saved["user\x00u"] is not None
    assert saved["perm\x00app\x00u"] == {"kind": "permission", "user": "u", "vhost": "app",
                                         "configure": ".*", "write": "", "read": ""}
    assert saved["topicperm\x00app\x00u\x00amq.topic"] is not None
    access.forget_vhost("app")
    assert saved["perm\x00app\x00u"] is None
    assert saved["topicperm\x00app\x00u\x00amq.topic"] is None
    assert not access.permissions and not access.topic_permissions
    other = AccessControl({"/", "app"})
    for record in (r for r in saved.values() if r is not None):
        other.restore(record)  # type: ignore[arg-type]
    assert list(other.users) == ["u"]


def test_permission_objects_compare_by_their_expressions() -> None:
    assert Permission("u", "/", ".*", "", "") == Permission("u", "/", ".*", "", "")
    assert TopicPermission("u", "/", "t", "{username}", "").expanded("write") == "u"
    assert TopicPermission("u", "/", "t", "", "").expanded("read") == "^$"


def test_authenticate_reasons() -> None:
    access = _access()
    assert access.authenticate("guest", "guest") is None
    assert access.authenticate("guest", "nope") == "user 'guest' - invalid credentials"
    assert access.authenticate("ghost", "x") == "user 'ghost' - invalid credentials"
    assert "blank password" in (access.authenticate("guest", "") or "")
