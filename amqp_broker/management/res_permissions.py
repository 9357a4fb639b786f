"""Permissions and topic permissions (rabbit_mgmt_wm_permissions*, _topic_permissions*):

    GET            /api/permissions, /api/topic-permissions
    GET/PUT/DELETE /api/permissions/{vhost}/{user}
    GET/PUT/DELETE /api/topic-permissions/{vhost}/{user}
    GET            /api/vhosts/{vhost}/permissions, /api/vhosts/{vhost}/topic-permissions
    GET            /api/users/{user}/permissions, /api/users/{user}/topic-permissions

Administrators only. PUT permissions needs configure, write and read; PUT topic
permissions exchange, write and read (RabbitMQ's "[{key_missing,...}]" reasons); an
unknown vhost or user in a PUT is 400 "vhost_or_user_not_found"; the others are 404.
DELETE of topic permissions clears all of the user's in the vhost (RabbitMQ 3.10 does
not read an exchange there).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..users import DefinitionError
from .auth import broker_of, require_admin
from .errors import ApiError, bad_request, json_object, not_found
from .listing import reply_item, reply_list

PERMISSION_SORT = ("vhost", "user")
TOPIC_SORT = ("vhost", "user", "exchange")


def _permissions(request: Request) -> list[dict[str, Any]]:
    return [p.to_definition() for p in broker_of(request).access.list_permissions()]


def _topic_permissions(request: Request) -> list[dict[str, Any]]:
    return [p.to_definition() for p in broker_of(request).access.list_topic_permissions()]


def _require_user(request: Request) -> str:
    name: str = request.path_params["user"]
    if name not in broker_of(request).access.users:
        raise not_found()
    return name


def _require_vhost(request: Request) -> str:
    name: str = request.path_params["vhost"]
    if name not in broker_of(request).vhosts:
        raise not_found()
    return name


def _missing(body: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")
    for key in keys:
        if not isinstance(body[key], str):
            raise bad_request(f"{key} must be a string")


def _bad_regex(exc: DefinitionError) -> ApiError:
    return bad_request(str(exc))


# --- permissions ------------------------------------------------------------------------
async def list_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    return reply_list(request, _permissions(request), default_sort=PERMISSION_SORT)


async def vhost_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    vhost = _require_vhost(request)
    return reply_list(request, [p for p in _permissions(request) if p["vhost"] == vhost],
                      default_sort=PERMISSION_SORT)


async def user_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    user = _require_user(request)
    return reply_list(request, [p for p in _permissions(request) if p["user"] == user],
                      default_sort=PERMISSION_SORT)


async def get_permission(request: Request) -> JSONResponse:
    require_admin(request)
    access = broker_of(request).access
    found = access.permissions.get((request.path_params["user"],
                                    request.path_params["vhost"]))
    if found is None:
        raise not_found()
    return reply_item(request, found.to_definition())


def _vhost_and_user(request: Request) -> tuple[str, str]:
    broker = broker_of(request)
    vhost, user = request.path_params["vhost"], request.path_params["user"]
    if vhost not in broker.vhosts or user not in broker.access.users:
        raise bad_request("vhost_or_user_not_found")
    return vhost, user


async def put_permission(request: Request) -> Response:
    require_admin(request)
    body = await json_object(request)
    _missing(body, ("configure", "write", "read"))
    vhost, user = _vhost_and_user(request)
    access = broker_of(request).access
    existed = (user, vhost) in access.permissions
    try:
        access.set_permissions(user, vhost, body["configure"], body["write"], body["read"])
    except DefinitionError as exc:
        raise _bad_regex(exc) from None
    return Response(status_code=204 if existed else 201)


async def delete_permission(request: Request) -> Response:
    require_admin(request)
    access = broker_of(request).access
    user, vhost = request.path_params["user"], request.path_params["vhost"]
    if (user, vhost) not in access.permissions:
        raise not_found()
    access.clear_permissions(user, vhost)
    return Response(status_code=204)


# --- topic permissions ------------------------------------------------------------------
async def list_topic_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    return reply_list(request, _topic_permissions(request), default_sort=TOPIC_SORT)


async def vhost_topic_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    vhost = _require_vhost(request)
    return reply_list(request, [p for p in _topic_permissions(request)
                                if p["vhost"] == vhost], default_sort=TOPIC_SORT)


async def user_topic_permissions(request: Request) -> JSONResponse:
    require_admin(request)
    user = _require_user(request)
    return reply_list(request, [p for p in _topic_permissions(request)
                                if p["user"] == user], default_sort=TOPIC_SORT)


async def get_topic_permission(request: Request) -> JSONResponse:
    require_admin(request)
    access = broker_of(request).access
    found = access.topic_permissions.get((request.path_params["user"],
                                          request.path_params["vhost"]))
    if not found:
        raise not_found()
    return reply_list(request, [p.to_definition() for p in found.values()],
                      default_sort=TOPIC_SORT)


async def put_topic_permission(request: Request) -> Response:
    require_admin(request)
    body = await json_object(request)
    _missing(body, ("exchange", "write", "read"))
    vhost, user = _vhost_and_user(request)
    access = broker_of(request).access
    # 204 when the user had any topic permissions in the vhost (RabbitMQ's resource)
    existed = bool(access.topic_permissions.get((user, vhost)))
    try:
        access.set_topic_permissions(user, vhost, body["exchange"], body["write"],
                                     body["read"])
    except DefinitionError as exc:
        raise _bad_regex(exc) from None
    return Response(status_code=204 if existed else 201)


async def delete_topic_permission(request: Request) -> Response:
    require_admin(request)
    access = broker_of(request).access
    user, vhost = request.path_params["user"], request.path_params["vhost"]
    if not access.topic_permissions.get((user, vhost)):
        raise not_found()
    access.clear_topic_permissions(user, vhost)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/api/permissions", list_permissions, methods=["GET"]),
        Route("/api/permissions/{vhost}/{user}", get_permission, methods=["GET"]),
        Route("/api/permissions/{vhost}/{user}", put_permission, methods=["PUT"]),
        Route("/api/permissions/{vhost}/{user}", delete_permission, methods=["DELETE"]),
        Route("/api/vhosts/{vhost}/permissions", vhost_permissions, methods=["GET"]),
        Route("/api/users/{user}/permissions", user_permissions, methods=["GET"]),
        Route("/api/topic-permissions", list_topic_permissions, methods=["GET"]),
        Route("/api/topic-permissions/{vhost}/{user}", get_topic_permission, methods=["GET"]),
        Route("/api/topic-permissions/{vhost}/{user}", put_topic_permission, methods=["PUT"]),
        Route("/api/topic-permissions/{vhost}/{user}", delete_topic_permission,
              methods=["DELETE"]),
        Route("/api/vhosts/{vhost}/topic-permissions", vhost_topic_permissions,
              methods=["GET"]),
        Route("/api/users/{user}/topic-permissions", user_topic_permissions, methods=["GET"]),
    ]
