"""Users of the internal authentication backend: names, salted password hashes, tags.

A password hash is RabbitMQ's: four random salt bytes followed by
HASH(salt + UTF-8 password), written base64 in definitions, with the hash
function named by `hashing_algorithm` (rabbit_password_hashing_sha256, the
default, _sha512, or _md5 for users exported by RabbitMQ before 3.6). An empty
hash means the user has no password: it cannot log in with PLAIN or AMQPLAIN,
only with EXTERNAL (a TLS client certificate). Hashes exported by RabbitMQ log
in here unchanged, and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SHA256 = "rabbit_password_hashing_sha256"
SHA512 = "rabbit_password_hashing_sha512"
MD5 = "rabbit_password_hashing_md5"
DEFAULT_HASHING = SHA256
HASHING: dict[str, Callable[[bytes], Any]] = {
    SHA256: hashlib.sha256, SHA512: hashlib.sha512, MD5: hashlib.md5}

# the tags RabbitMQ's management UI knows; any other tag is kept as it is
KNOWN_TAGS = ("administrator", "monitoring", "management", "policymaker", "impersonator")

SALT_BYTES = 4


class DefinitionError(ValueError):
    """A user, vhost, permission or other definition that cannot be applied; the
    message names it."""


class NotFoundError(DefinitionError, LookupError):
    """The user or vhost named does not exist."""


def hash_password(password: str, algorithm: str = DEFAULT_HASHING,
                  salt: bytes | None = None) -> bytes:
    """salt + HASH(salt + password), as rabbit_password:hash/2."""
    digest = HASHING.get(algorithm)
    if digest is None:
        raise DefinitionError(f"unknown hashing algorithm '{algorithm}'")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    hashed: bytes = digest(salt + password.encode("utf-8")).digest()
    return salt + hashed


def hashing_algorithm_for(value: object, version: object = None) -> str:
    """The algorithm of an imported user: its hashing_algorithm field, else by the
    exporting RabbitMQ's version (MD5 before 3.6.0), as rabbit_auth_backend_internal."""
    if value is None:
        if isinstance(version, str) and version != "3.6.0" and version.startswith(
                ("3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5.")):
            return MD5
        return DEFAULT_HASHING
    if not isinstance(value, str) or value not in HASHING:
        raise DefinitionError(f"unknown hashing_algorithm {value!r} (known: "
                              f"{', '.join(sorted(HASHING))})")
    return value


def parse_tags(value: object) -> tuple[str, ...]:
    """Tags as a list or a comma-separated string (both occur in definitions)."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise DefinitionError(f"tags must be a list or a comma-separated string, not {value!r}")
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise DefinitionError(f"a tag must be a string, not {item!r}")
        tag = item.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tuple(tags)


@dataclass
class User:
    name: str
    password_hash: bytes = b""  # salt + digest; empty: no password login
    hashing_algorithm: str = DEFAULT_HASHING
    tags: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_password(cls, name: str, password: str, tags: tuple[str, ...] = (),
                      algorithm: str = DEFAULT_HASHING) -> User:
        return cls(name, hash_password(password, algorithm), algorithm, tags)

    def check_password(self, password: str) -> bool:
        """Constant-time comparison of the salted hash; never true without a hash."""
        stored = self.password_hash
        digest = HASHING.get(self.hashing_algorithm)
        if digest is None or len(stored) <= SALT_BYTES:
            return False
        salt = stored[:SALT_BYTES]
        computed = digest(salt + password.encode("utf-8")).digest()
        return hmac.compare_digest(stored[SALT_BYTES:], computed)

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.tags

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags

    # --- definitions (RabbitMQ's field names) and store records ---------------
    def to_definition(self) -> dict[str, Any]:
        return {"name": self.name,
                "password_hash": base64.b64encode(self.password_hash).decode(),
                "hashing_algorithm": self.hashing_algorithm,
                "tags": list(self.tags),
                "limits": dict(self.limits)}

    @classmethod
    def from_definition(cls, entry: dict[str, Any], version: object = None) -> User:
        """A user from a definitions entry: password_hash (base64) with its
        hashing_algorithm, or a clear-text password (hashed here), or neither (a user
        without a password); tags as a list or a comma-separated string."""
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise DefinitionError("user without a name")
        if "password" in entry and "password_hash" in entry:
            raise DefinitionError(f"user '{name}': both password and password_hash given")
        algorithm = hashing_algorithm_for(entry.get("hashing_algorithm"), version)
        if "tags" in entry:
            tags = parse_tags(entry["tags"])
        elif "administrator" in entry:  # very old exports
            tags = ("administrator",) if str(entry["administrator"]).lower() == "true" else ()
        else:
            raise DefinitionError(f"user '{name}' has no tags field")
        limits = entry.get("limits") or {}
        if not isinstance(limits, dict):
            raise DefinitionError(f"user '{name}': limits must be an object")
        if "password_hash" in entry:
            raw = entry["password_hash"]
            if not isinstance(raw, str):
                raise DefinitionError(f"user '{name}': password_hash must be a base64 string")
            try:
                hashed = base64.b64decode(raw.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise DefinitionError(f"user '{name}': password_hash is not valid base64") \
                    from None
            return cls(name, hashed, algorithm, tags, dict(limits))
        password = entry.get("password")
        if password is None or password == "":
            return cls(name, b"", algorithm, tags, dict(limits))
        if not isinstance(password, str):
            raise DefinitionError(f"user '{name}': password must be a string")
        return cls(name, hash_password(password, algorithm), algorithm, tags, dict(limits))

    def to_record(self) -> dict[str, Any]:
        return {"kind": "user", **self.to_definition()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> User:
        return cls.from_definition(record)
