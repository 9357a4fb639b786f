"""Definitions (rabbit_mgmt_wm_definitions), for administrators:

    GET  /api/definitions, /api/definitions/{vhost}     export (?download=NAME: attachment)
    POST /api/definitions, /api/definitions/{vhost}     import

Export and import go through Broker.export_definitions / import_definitions (RabbitMQ's
format both ways). An import is a JSON body (rabbitmqadmin, curl) or a multipart form with
a `file` part (the web UI), optionally with a `redirect` part (303 to it afterwards, as
RabbitMQ). A per-vhost export has RabbitMQ 3.10's shape: parameters, policies, queues,
exchanges and bindings of that vhost, queues, exchanges and bindings without their vhost
field; a per-vhost import puts every entry into that vhost.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..definitions import DefinitionsError
from ..users import DefinitionError
from . import errors
from .auth import broker_of, require_admin
from .errors import ApiError, bad_request, body_too_large, read_body

VHOST_SECTIONS = ("parameters", "policies", "queues", "exchanges", "bindings")
STRIPPED = ("queues", "exchanges", "bindings")  # their vhost field is left out per vhost
ACCEPTABLE_EXTENSIONS = (".json", "")


def _export(request: Request, vhost: str | None) -> dict[str, Any]:
    doc = broker_of(request).export_definitions()
    if vhost is None:
        return doc
    out: dict[str, Any] = {"rabbit_version": doc.get("rabbit_version")}
    for section in VHOST_SECTIONS:
        entries = [e for e in doc.get(section, []) if e.get("vhost") == vhost]
        if section in STRIPPED:
            entries = [{k: v for k, v in e.items() if k != "vhost"} for e in entries]
        out[section] = entries
    return out


def _reply(request: Request, doc: dict[str, Any]) -> Response:
    headers = {}
    download = request.query_params.get("download")
    if download:
        safe = "".join(ch for ch in download if ch.isalnum() or ch in "._-+") or "definitions"
        headers["content-disposition"] = f"attachment; filename={safe}"
    return JSONResponse(doc, headers=headers)


async def get_all(request: Request) -> Response:
    require_admin(request)
    return _reply(request, _export(request, None))


async def get_vhost(request: Request) -> Response:
    require_admin(request)
    vhost = request.path_params["vhost"]
    if vhost not in broker_of(request).vhosts:
        raise bad_request("vhost_not_found")
    return _reply(request, _export(request, vhost))


async def _payload(request: Request) -> tuple[bytes, str | None]:
    """The uploaded document and the redirect target, if any; 415 for a body that is
    neither JSON nor a multipart form."""
    content_type = request.headers.get("content-type", "application/json").lower()
    if content_type.startswith("multipart/form-data"):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > errors.MAX_BODY:
            raise body_too_large()
        form = await request.form(max_part_size=errors.MAX_BODY)
        try:
            upload = form.get("file")
            redirect = form.get("redirect")
            if isinstance(upload, UploadFile):
                name = upload.filename or ""
                if "." in name and not name.lower().endswith(".json"):
                    raise ApiError(400, "bad_request", "unsupported_file_extension")
                data = await upload.read()
            elif isinstance(upload, str):
                data = upload.encode("utf-8")
            else:
                data = b""
            return data, redirect if isinstance(redirect, str) and redirect else None
        finally:
            await form.close()
    if not (content_type.startswith("application/json") or content_type == ""):
        raise ApiError(415, "unsupported_media_type",
                       f"definitions are JSON or a multipart form, not {content_type}")
    return await read_body(request), None


def _parse(data: bytes) -> dict[str, Any]:
    text = data.decode("utf-8-sig", "replace").strip()
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        raise bad_request("failed_to_parse_json") from None
    if not isinstance(doc, dict):
        raise bad_request("failed_to_parse_json")
    return doc


def _into_vhost(doc: dict[str, Any], vhost: str) -> dict[str, Any]:
    """A per-vhost import: its sections, each entry placed in vhost."""
    out: dict[str, Any] = {}
    for section in VHOST_SECTIONS:
        entries = doc.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise bad_request(f"{section} must be a list")
        out[section] = [{**e, "vhost": vhost} if isinstance(e, dict) else e for e in entries]
    return out


async def _import(request: Request, vhost: str | None) -> Response:
    user = require_admin(request)
    broker = broker_of(request)
    if vhost is not None and vhost not in broker.vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    data, redirect = await _payload(request)
    doc = _parse(data)
    if vhost is not None:
        doc = _into_vhost(doc, vhost)
    try:
        broker.import_definitions(doc, source="definitions")
    except (DefinitionsError, DefinitionError) as exc:
        broker.log.warning("definitions import refused", error=str(exc), user=user.name)
        raise bad_request(str(exc)) from None
    if redirect is not None:
        return RedirectResponse(redirect, status_code=303)
    return Response(status_code=204)


async def post_all(request: Request) -> Response:
    return await _import(request, None)


async def post_vhost(request: Request) -> Response:
    return await _import(request, request.path_params["vhost"])


def routes() -> list[BaseRoute]:
    return [Route("/api/definitions", get_all, methods=["GET"]),
            Route("/api/definitions", post_all, methods=["POST"]),
            Route("/api/definitions/{vhost}", get_vhost, methods=["GET"]),
            Route("/api/definitions/{vhost}", post_vhost, methods=["POST"]),
            # /api/all-configuration: the old name RabbitMQ still answers
            Route("/api/all-configuration", get_all, methods=["GET"]),
            Route("/api/all-configuration", post_all, methods=["POST"])]

