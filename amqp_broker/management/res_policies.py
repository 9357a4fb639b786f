"""Policies, operator policies, runtime parameters and global parameters
(rabbit_mgmt_wm_policies, _policy, _operator_policies, _parameters, _parameter,
_global_parameters, _global_parameter):

    GET            /api/policies, /api/policies/{vhost}
    GET/PUT/DELETE /api/policies/{vhost}/{name}
    GET            /api/operator-policies, /api/operator-policies/{vhost}
    GET/PUT/DELETE /api/operator-policies/{vhost}/{name}
    GET            /api/parameters, /api/parameters/{component}, .../{component}/{vhost}
    GET/PUT/DELETE /api/parameters/{component}/{vhost}/{name}
    GET            /api/vhost-limits, /api/vhost-limits/{vhost}
    PUT/DELETE     /api/vhost-limits/{vhost}/{max-connections|max-queues}
    GET            /api/global-parameters
    GET/PUT/DELETE /api/global-parameters/{name}

Listing policies is for any management user (the vhosts it has permissions in);
changing them, and everything about parameters, is for administrators and policymakers
with permissions in the vhost; global parameters for policymakers. The broker keeps them
(Broker.runtime, durable) and applies policies and operator policies to queues and
exchanges (amqp_broker/policies.py); a definition is checked as RabbitMQ checks it, with
its "Validation failed" texts.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import policies
from ..policies import erl
from .auth import (
    broker_of,
    login,
    require_policy_access,
    require_tag,
    require_vhost_access,
    visible_vhosts,
)
from .errors import ApiError, bad_request, json_object, not_authorised, not_found
from .listing import reply_item, reply_list
from .res_nodes import cluster_name

COMPONENTS = ("vhost-limits", "operator_policy", "federation-upstream",
              "federation-upstream-set", "shovel", "policy")
POLICY_SORT = ("vhost", "name")


def _erl(value: Any) -> str:
    return erl(value)


def _validation(text: str) -> ApiError:
    return bad_request(f"Validation failed\n\n{text}\n")


def check_policy(body: dict[str, Any], operator: bool = False) -> dict[str, Any]:
    """pattern, definition, priority and apply-to of a PUT body, checked as RabbitMQ
    checks them (amqp_broker/policies.check_policy), its texts in a 400."""
    missing = [key for key in ("pattern", "definition") if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
    try:
        return policies.check_policy(body, operator)
    except policies.PolicyError as exc:
        raise _validation(str(exc)) from None


def _vhost_for_put(request: Request) -> str:
    vhost: str = request.path_params["vhost"]
    if vhost not in broker_of(request).vhosts:
        raise ApiError(404, "not_found", "vhost_not_found")
    return vhost


# --- policies ---------------------------------------------------------------------------
def _policies(request: Request, vhost: str | None) -> list[dict[str, Any]]:
    runtime = broker_of(request).runtime
    return [p for (v, _), p in runtime.policies.items() if vhost is None or v == vhost]


async def list_policies(request: Request) -> JSONResponse:
    login(request)
    visible = set(visible_vhosts(request, monitor_sees_all=False))
    return reply_list(request, [p for p in _policies(request, None) if p["vhost"] in visible],
                      default_sort=POLICY_SORT)


async def vhost_policies(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    require_vhost_access(request, vhost)
    return reply_list(request, _policies(request, vhost), default_sort=POLICY_SORT)


async def get_policy(request: Request) -> JSONResponse:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    require_policy_access(request, vhost)
    found = broker_of(request).runtime.policies.get((vhost, name))
    if found is None:
        raise not_found()
    return reply_item(request, found)


async def put_policy(request: Request) -> Response:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    require_policy_access(request, vhost)
    body = await json_object(request)
    policy = check_policy(body)
    _vhost_for_put(request)
    runtime = broker_of(request).runtime
    existed = (vhost, name) in runtime.policies
    runtime.set_policy({"vhost": vhost, "name": name, **policy})
    return Response(status_code=204 if existed else 201)


async def delete_policy(request: Request) -> Response:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    require_policy_access(request, vhost)
    runtime = broker_of(request).runtime
    if (vhost, name) not in runtime.policies:
        raise not_found()
    runtime.clear_policy(vhost, name)
    return Response(status_code=204)


# --- operator policies: parameters of component operator_policy ----------------------------
OPERATOR = "operator_policy"


def _operator_policies(request: Request, vhost: str | None) -> list[dict[str, Any]]:
    runtime = broker_of(request).runtime
    out = []
    for (v, component, name), param in runtime.parameters.items():
        if component == OPERATOR and (vhost is None or v == vhost):
            value = param.get("value")
            value = value if isinstance(value, dict) else {}
            out.append({"vhost": v, "name": name, "pattern": value.get("pattern", ""),
                        "apply-to": value.get("apply-to", "all"),
                        "definition": value.get("definition", {}),
                        "priority": value.get("priority", 0)})
    return out


def _require_admin_in(request: Request, vhost: str | None) -> None:
    """Operator policies are for administrators (in any vhost)."""
    require_tag(request, "administrator")


async def list_operator_policies(request: Request) -> JSONResponse:
    _require_admin_in(request, None)
    return reply_list(request, _operator_policies(request, None), default_sort=POLICY_SORT)


async def vhost_operator_policies(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    _require_admin_in(request, vhost)
    if vhost not in broker_of(request).vhosts:
        raise not_found()
    return reply_list(request, _operator_policies(request, vhost), default_sort=POLICY_SORT)


async def get_operator_policy(request: Request) -> JSONResponse:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    _require_admin_in(request, vhost)
    for policy in _operator_policies(request, vhost):
        if policy["name"] == name:
            return reply_item(request, policy)
    raise not_found()


async def put_operator_policy(request: Request) -> Response:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    _require_admin_in(request, vhost)
    body = await json_object(request)
    policy = check_policy(body, operator=True)
    _vhost_for_put(request)
    runtime = broker_of(request).runtime
    existed = (vhost, OPERATOR, name) in runtime.parameters
    runtime.set_parameter({"vhost": vhost, "component": OPERATOR, "name": name,
                           "value": policy})
    return Response(status_code=204 if existed else 201)


async def delete_operator_policy(request: Request) -> Response:
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    _require_admin_in(request, vhost)
    runtime = broker_of(request).runtime
    if (vhost, OPERATOR, name) not in runtime.parameters:
        raise not_found()
    runtime.clear_parameter(vhost, OPERATOR, name)
    return Response(status_code=204)


# --- parameters -------------------------------------------------------------------------
def _parameters(request: Request, component: str | None,
                vhost: str | None) -> list[dict[str, Any]]:
    user = login(request)
    runtime = broker_of(request).runtime
    visible = None if user.is_admin else set(visible_vhosts(request, monitor_sees_all=False))
    return [p for (v, c, _), p in runtime.parameters.items()
            if (component is None or c == component) and (vhost is None or v == vhost)
            and (visible is None or v in visible)]


async def list_parameters(request: Request) -> JSONResponse:
    require_policy_access(request, None)
    return reply_list(request, _parameters(request, None, None),
                      default_sort=("vhost", "component", "name"))


async def component_parameters(request: Request) -> JSONResponse:
    require_policy_access(request, None)
    return reply_list(request, _parameters(request, request.path_params["component"], None),
                      default_sort=("vhost", "name"))


async def vhost_component_parameters(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    require_policy_access(request, vhost)
    if vhost not in broker_of(request).vhosts:
        raise not_found()
    return reply_list(request, _parameters(request, request.path_params["component"], vhost),
                      default_sort=("vhost", "name"))


async def get_parameter(request: Request) -> JSONResponse:
    params = request.path_params
    require_policy_access(request, params["vhost"])
    found = broker_of(request).runtime.parameters.get(
        (params["vhost"], params["component"], params["name"]))
    if found is None:
        raise not_found()
    return reply_item(request, found)


async def put_parameter(request: Request) -> Response:
    params = request.path_params
    vhost, component, name = params["vhost"], params["component"], params["name"]
    require_policy_access(request, vhost)
    body = await json_object(request)
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    if component not in COMPONENTS:
        raise _validation(f"component {component} not found")
    if component == OPERATOR:
        value = body["value"]
        check_policy(value if isinstance(value, dict) else {}, operator=True)
    _vhost_for_put(request)
    runtime = broker_of(request).runtime
    existed = (vhost, component, name) in runtime.parameters
    runtime.set_parameter({"value": body["value"], "vhost": vhost, "component": component,
                           "name": name})
    return Response(status_code=204 if existed else 201)


async def delete_parameter(request: Request) -> Response:
    params = request.path_params
    vhost, component, name = params["vhost"], params["component"], params["name"]
    require_policy_access(request, vhost)
    runtime = broker_of(request).runtime
    if (vhost, component, name) not in runtime.parameters:
        raise not_found()
    runtime.clear_parameter(vhost, component, name)
    return Response(status_code=204)


# --- vhost limits: the vhost-limits parameter named "limits" ------------------------------
LIMITS = ("vhost-limits", "limits")
LIMIT_NAMES = ("max-connections", "max-queues")


def _limits(request: Request, vhost: str) -> dict[str, Any]:
    param = broker_of(request).runtime.parameters.get((vhost, *LIMITS))
    value = param.get("value") if param is not None else None
    return dict(value) if isinstance(value, dict) else {}


async def list_vhost_limits(request: Request) -> JSONResponse:
    login(request)
    items = [{"vhost": v, "value": limits} for v in visible_vhosts(request)
             if (limits := _limits(request, v))]
    return reply_list(request, items, default_sort=("vhost",))


async def vhost_limits(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    require_vhost_access(request, vhost, monitor_reads=True)
    limits = _limits(request, vhost)
    return reply_list(request, [{"vhost": vhost, "value": limits}] if limits else [],
                      default_sort=("vhost",))


def _set_limits(request: Request, vhost: str, limits: dict[str, Any]) -> None:
    runtime = broker_of(request).runtime
    if limits:
        runtime.set_parameter({"value": limits, "vhost": vhost, "component": LIMITS[0],
                               "name": LIMITS[1]})
    else:
        runtime.clear_parameter(vhost, *LIMITS)


async def put_vhost_limit(request: Request) -> Response:
    require_tag(request, "administrator")
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    body = await json_object(request)
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    value = body["value"]
    if name not in LIMIT_NAMES:
        raise _validation(f"Unrecognised terms [{{{_erl(name)},{_erl(value)}}}] in limits")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _validation(f"{name} should be a number, actually was {_erl(value)}")
    if vhost not in broker_of(request).vhosts:
        raise not_found()
    _set_limits(request, vhost, {**_limits(request, vhost), name: value})
    return Response(status_code=204)


async def delete_vhost_limit(request: Request) -> Response:
    require_tag(request, "administrator")
    vhost, name = request.path_params["vhost"], request.path_params["name"]
    if vhost not in broker_of(request).vhosts:
        raise not_found()
    limits = _limits(request, vhost)
    if name in limits:
        del limits[name]
        _set_limits(request, vhost, limits)
    return Response(status_code=204)


# --- global parameters ------------------------------------------------------------------
def _require_policymaker(request: Request) -> None:
    user = login(request)
    if not user.is_policymaker:
        raise not_authorised("User not authorised to access object")


def _global_parameters(request: Request) -> list[dict[str, Any]]:
    broker = broker_of(request)
    params = dict(broker.runtime.global_parameters)
    params.setdefault("cluster_name", {"name": "cluster_name", "value": cluster_name(broker)})
    return list(params.values())


async def list_global_parameters(request: Request) -> JSONResponse:
    _require_policymaker(request)
    return reply_list(request, _global_parameters(request), default_sort=("name",))


async def get_global_parameter(request: Request) -> JSONResponse:
    _require_policymaker(request)
    name = request.path_params["name"]
    for param in _global_parameters(request):
        if param["name"] == name:
            return reply_item(request, param)
    raise not_found()


async def put_global_parameter(request: Request) -> Response:
    _require_policymaker(request)
    name = request.path_params["name"]
    body = await json_object(request)
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    runtime = broker_of(request).runtime
    existed = name in runtime.global_parameters
    runtime.set_global_parameter({"name": name, "value": body["value"]})
    return Response(status_code=204 if existed else 201)


async def delete_global_parameter(request: Request) -> Response:
    _require_policymaker(request)
    name = request.path_params["name"]
    runtime = broker_of(request).runtime
    if name not in runtime.global_parameters:
        raise not_found()
    runtime.clear_global_parameter(name)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    one = "/api/policies/{vhost}/{name}"
    op = "/api/operator-policies/{vhost}/{name}"
    param = "/api/parameters/{component}/{vhost}/{name}"
    glob = "/api/global-parameters/{name}"
    return [
        Route("/api/policies", list_policies, methods=["GET"]),
        Route("/api/policies/{vhost}", vhost_policies, methods=["GET"]),
        Route(one, get_policy, methods=["GET"]),
        Route(one, put_policy, methods=["PUT"]),
        Route(one, delete_policy, methods=["DELETE"]),
        Route("/api/operator-policies", list_operator_policies, methods=["GET"]),
        Route("/api/operator-policies/{vhost}", vhost_operator_policies, methods=["GET"]),
        Route(op, get_operator_policy, methods=["GET"]),
        Route(op, put_operator_policy, methods=["PUT"]),
        Route(op, delete_operator_policy, methods=["DELETE"]),
        Route("/api/parameters", list_parameters, methods=["GET"]),
        Route("/api/parameters/{component}", component_parameters, methods=["GET"]),
        Route("/api/parameters/{component}/{vhost}", vhost_component_parameters,
              methods=["GET"]),
        Route(param, get_parameter, methods=["GET"]),
        Route(param, put_parameter, methods=["PUT"]),
        Route(param, delete_parameter, methods=["DELETE"]),
        Route("/api/vhost-limits", list_vhost_limits, methods=["GET"]),
        Route("/api/vhost-limits/{vhost}", vhost_limits, methods=["GET"]),
        Route("/api/vhost-limits/{vhost}/{name}", put_vhost_limit, methods=["PUT"]),
        Route("/api/vhost-limits/{vhost}/{name}", delete_vhost_limit, methods=["DELETE"]),
        Route("/api/global-parameters", list_global_parameters, methods=["GET"]),
        Route(glob, get_global_parameter, methods=["GET"]),
        Route(glob, put_global_parameter, methods=["PUT"]),
        Route(glob, delete_global_parameter, methods=["DELETE"]),
    ]
