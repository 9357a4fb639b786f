"""Users: GET /api/users, /api/users/without-permissions, GET/PUT/DELETE
/api/users/{user}, POST /api/users/bulk-delete (rabbit_mgmt_wm_users, _user,
_users_bulk_delete); administrators only.

PUT takes `tags` (required: RabbitMQ's "tags_not_present") and `password`, or
`password_hash` with an optional `hashing_algorithm`, or neither (a user without a
password, which cannot log in with one); 201 for a new user, 204 for an existing one,
whose permissions stay. Deleting a user closes its connections (Broker.delete_user).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..users import DefinitionError, User
from .auth import broker_of, require_admin
from .errors import ApiError, bad_request, json_object, not_found
from .listing import reply_item, reply_list


def user_json(user: User) -> dict[str, Any]:
    return user.to_definition()


async def list_users(request: Request) -> JSONResponse:
    require_admin(request)
    users = broker_of(request).access.users.values()
    return reply_list(request, [user_json(u) for u in users], default_sort=("name",))


async def without_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    access = broker_of(request).access
    with_some = {user for user, _ in access.permissions}
    return reply_list(request, [user_json(u) for u in access.users.values()
                                if u.name not in with_some], default_sort=("name",))


async def get_user(request: Request) -> JSONResponse:
    require_admin(request)
    user = broker_of(request).access.users.get(request.path_params["user"])
    if user is None:
        raise not_found()
    return reply_item(request, user_json(user))


def _user_from(name: str, body: dict[str, Any], existing: User | None) -> User:
    """The user a PUT body describes, with RabbitMQ's error reasons."""
    if "tags" not in body and "administrator" not in body:
        raise bad_request("tags_not_present")
    if "password" in body and "password_hash" in body:
        raise bad_request("both_password_and_password_hash_are_provided")
    raw_hash = body.get("password_hash")
    if raw_hash is not None:
        if not isinstance(raw_hash, str):
            raise bad_request("password_hash must be a base64 string")
        try:
            base64.b64decode(raw_hash.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ApiError(400, "bad_request", ["not_base64", raw_hash]) from None
    fields = ("password", "password_hash", "hashing_algorithm", "tags", "administrator",
              "limits")
    entry: dict[str, Any] = {key: body[key] for key in fields if key in body}
    if "tags" in entry and entry["tags"] is None:
        entry["tags"] = ""
    if "limits" not in entry and existing is not None:
        entry["limits"] = existing.limits
    try:
        return User.from_definition({"name": name, **entry})
    except DefinitionError as exc:
        raise bad_request(str(exc)) from None


async def put_user(request: Request) -> Response:
    require_admin(request)
    broker = broker_of(request)
    name = request.path_params["user"]
    body = await json_object(request)
    existing = broker.access.users.get(name)
    broker.access.put_user(_user_from(name, body, existing))
    return Response(status_code=204 if existing is not None else 201)


async def delete_user(request: Request) -> Response:
    require_admin(request)
    broker = broker_of(request)
    name = request.path_params["user"]
    if name not in broker.access.users:
        raise not_found()
    broker.delete_user(name)
    return Response(status_code=204)


async def bulk_delete(request: Request) -> Response:
    """Deletes the users in order; an unknown one stops it with 400 (those before it
    stay deleted), as RabbitMQ."""
    require_admin(request)
    broker = broker_of(request)
    body = await json_object(request)
    if "users" not in body:
        raise bad_request("[{key_missing,users}]")
    names = body["users"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad_request("users must be a list of user names")
    for name in names:
        if name not in broker.access.users:
            raise ApiError(400, "bad_request", ["no_such_user", name])
        broker.delete_user(name)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [Route("/api/users", list_users, methods=["GET"]),
            Route("/api/users/without-permissions", without_permissions, methods=["GET"]),
            Route("/api/users/bulk-delete", bulk_delete, methods=["POST"]),
            Route("/api/users/{user}", get_user, methods=["GET"]),
            Route("/api/users/{user}", put_user, methods=["PUT"]),
            Route("/api/users/{user}", delete_user, methods=["DELETE"])]
