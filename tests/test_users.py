"""Users: RabbitMQ's salted password hashes (checked against hashes RabbitMQ 3.10
exported), tags, and user entries of definitions files."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from amqp_broker.users import (
    DEFAULT_HASHING,
    MD5,
    SHA256,
    SHA512,
    DefinitionError,
    User,
    hash_password,
    hashing_algorithm_for,
    parse_tags,
)

FIXTURE = Path(__file__).parent / "fixtures" / "rabbitmq-definitions.json"
# the passwords the users of the fixture were created with (rabbitmqctl add_user)
PASSWORDS = {"guest": "guest", "alice": "alice-secret", "bob": "b0b pässword",
             "limited": "limited", "tuser": "tuser-pw", "nopw": ""}


def _fixture_users() -> dict[str, User]:
    doc = json.loads(FIXTURE.read_text("utf-8"))
    return {e["name"]: User.from_definition(e, doc["rabbitmq_version"]) for e in doc["users"]}


@pytest.mark.parametrize("name", sorted(PASSWORDS))
def test_hashes_exported_by_rabbitmq_verify(name: str) -> None:
    user = _fixture_users()[name]
    assert user.hashing_algorithm == SHA256
    assert user.check_password(PASSWORDS[name])
    assert not user.check_password(PASSWORDS[name] + "x")
    assert not user.check_password("wrong")


def test_user_without_a_password_hash_never_matches() -> None:
    certuser = _fixture_users()["certuser"]
    assert certuser.password_hash == b""
    assert not certuser.check_password("")
    assert not certuser.check_password("placeholder")


@pytest.mark.parametrize("algorithm,digest", [(SHA256, hashlib.sha256),
                                              (SHA512, hashlib.sha512), (MD5, hashlib.md5)])
def test_hash_format_is_salt_then_digest_of_salt_and_password(algorithm: str,
                                                               digest: object) -> None:
    salt = bytes.fromhex("908dc60a")
    hashed = hash_password("test12", algorithm, salt)
    assert hashed == salt + digest(salt + b"test12").digest()  # type: ignore[operator]
    user = User("u", hashed, algorithm)
    assert user.check_password("test12") and not user.check_password("test13")


def test_hash_salt_is_random_and_four_bytes() -> None:
    a, b = hash_password("same"), hash_password("same")
    assert len(a) == 4 + 32 and a != b
    assert User("u", a).check_password("same") and User("u", b).check_password("same")


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(DefinitionError, match="unknown hashing algorithm"):
        hash_password("x", "rabbit_password_hashing_rot13")
    assert not User("u", b"abcdefgh", "nope").check_password("x")


def test_tags_as_list_or_comma_separated_string() -> None:
    assert parse_tags(["administrator", " monitoring ", "administrator"]) == (
        "administrator", "monitoring")
    assert parse_tags("management, policymaker,,custom") == ("management", "policymaker",
                                                              "custom")
    assert parse_tags("") == () and parse_tags(None) == ()
    with pytest.raises(DefinitionError, match="tags"):
        parse_tags(7)
    with pytest.raises(DefinitionError, match="a tag must be a string"):
        parse_tags(["ok", 3])


def test_definition_round_trip() -> None:
    user = User.with_password("carol", "s3cret", ("management", "impersonator"))
    entry = user.to_definition()
    assert entry["hashing_algorithm"] == DEFAULT_HASHING
    assert base64.b64decode(entry["password_hash"]) == user.password_hash
    again = User.from_definition(json.loads(json.dumps(entry)))
    assert again == user and again.check_password("s3cret")
    assert User.from_record(user.to_record()) == user


def test_definition_with_clear_text_password_or_none() -> None:
    user = User.from_definition({"name": "dave", "password": "pw", "tags": "administrator"})
    assert user.check_password("pw") and user.is_administrator
    nopass = User.from_definition({"name": "erin", "tags": []})
    assert nopass.password_hash == b"" and not nopass.check_password("")
    old = User.from_definition({"name": "frank", "password_hash": "", "administrator": "true"})
    assert old.tags == ("administrator",)


@pytest.mark.parametrize("entry,message", [
    ({"tags": []}, "user without a name"),
    ({"name": "x", "password": "a", "password_hash": "", "tags": []}, "both password"),
    ({"name": "x", "password_hash": "not base64!", "tags": []}, "not valid base64"),
    ({"name": "x", "password_hash": "", "hashing_algorithm": "sha1", "tags": []},
     "unknown hashing_algorithm"),
    ({"name": "x", "password_hash": ""}, "has no tags field"),
    ({"name": "x", "tags": [], "limits": [1]}, "limits must be an object"),
])
def test_bad_user_entries_name_the_problem(entry: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        User.from_definition(entry)


def test_algorithm_of_old_exports_follows_the_version() -> None:
    assert hashing_algorithm_for(None, "3.5.7") == MD5
    assert hashing_algorithm_for(None, "3.6.0") == SHA256
    assert hashing_algorithm_for(None, "3.12.1") == SHA256
    assert hashing_algorithm_for(None, None) == SHA256
    assert hashing_algorithm_for(SHA512, "3.5.7") == SHA512
    salt = b"\x00\x01\x02\x03"
    legacy = base64.b64encode(salt + hashlib.md5(salt + b"old").digest()).decode()
    user = User.from_definition({"name": "o", "password_hash": legacy, "tags": ""}, "3.4.1")
    assert user.hashing_algorithm == MD5 and user.check_password("old")
