"""A synchronous in-process client for the management app (create_app), for the
management tests: each request runs the app through httpx's ASGI transport in a short
event loop of its own (no server, no thread, no port). The peer is 127.0.0.1, so
loopback-only users (guest) may log in.

    api = ApiClient(create_app(make_broker()))
    assert api.get("/api/whoami").json()["name"] == "guest"
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx


class ApiClient:
    def __init__(self, app: Any, auth: tuple[str, str] | None = ("guest", "guest"),
                 peer: str = "127.0.0.1") -> None:
        self.app = app
        self.auth = auth
        self.peer = peer

    def as_user(self, user: str, password: str) -> ApiClient:
        """The same app, another login."""
        return ApiClient(self.app, (user, password), self.peer)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("auth", self.auth)
        if kwargs["auth"] is None:
            del kwargs["auth"]

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.peer, 50000))
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://localhost") as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return anyio.run(run)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)
