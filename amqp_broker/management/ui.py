"""The management web UI: static files served at `/` by the management server.

The page (static/index.html) and its ES modules (static/js/) talk to the RabbitMQ-style API under
`/api` with HTTP basic auth, like any other client; nothing here reads broker state. Everything
ships inside the package (no CDN, no build step), so the UI works offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Assets come only from this server; the scripts build the page with DOM calls and inline SVG,
# so no inline script or style is needed (and an injected one would not run).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                           "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                           "form-action 'self'; base-uri 'none'")
# the files change with the package version, not while a broker runs, but a browser holding
# an old app.js after an upgrade would be confusing: revalidate (cheap, the files are small)
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "same-origin"}


class _Assets(StaticFiles):
    """StaticFiles with the UI's headers on every answer."""

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers=_HEADERS)


def routes() -> list[BaseRoute]:
    """`/` (the page), `/js/...` and `/css/...` (its assets)."""
    return [
        Route("/", index, methods=["GET"], name="ui"),
        Mount("/js", app=_Assets(directory=STATIC_DIR / "js"), name="ui-js"),
        Mount("/css", app=_Assets(directory=STATIC_DIR / "css"), name="ui-css"),
    ]
