"""GET /api/whoami: the logged-in user and its tags (rabbit_mgmt_wm_whoami)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .auth import login


async def whoami(request: Request) -> JSONResponse:
    user = login(request)
    return JSONResponse({"name": user.name, "tags": list(user.tags)})


def routes() -> list[BaseRoute]:
    return [Route("/api/whoami", whoami, methods=["GET"])]
