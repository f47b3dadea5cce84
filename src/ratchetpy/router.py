"""Router: send each request to the component registered for its path (Ratchet's ``Router``).

.. code-block:: python

    router = Router({"/chat": WsServer(Chat()), "/": Page(html)})
    IoServer.factory(HttpServer(router), 8080).run()

Paths match exactly (``request.path``, without the query string). A request for a path with no
component gets 404 with a body naming the path and the paths that exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .component import HttpComponent, MaybeAwaitable
from .connection import Connection
from .http import HttpRequest, http_response

__all__ = ["Page", "Router"]

logger = logging.getLogger("ratchetpy.http")


class Router(HttpComponent):
    """Dispatch requests by exact path to HTTP components such as :class:`~ratchetpy.WsServer`."""

    def __init__(self, routes: Mapping[str, HttpComponent] | None = None) -> None:
        self.routes: dict[str, HttpComponent] = {}
        for path, component in (routes or {}).items():
            self.add(path, component)
        self._conns: dict[Connection, HttpComponent] = {}

    def add(self, path: str, component: HttpComponent) -> None:
        """Serve ``component`` at ``path``; a later call for the same path replaces it."""
        if not path.startswith("/"):
            raise ValueError(f"route paths start with '/': {path!r}")
        self.routes[path] = component

    def on_open(self, conn: Connection, request: HttpRequest) -> MaybeAwaitable:
        component = self.routes.get(request.path)
        if component is None:
            known = ", ".join(sorted(self.routes)) or "none"
            logger.info("HTTP 404 to %s: no route for %s", conn.remote_address, request.path)
            conn.send(
                http_response(
                    404, f"404 Not Found: no route for {request.path} (routes: {known})\n"
                )
            )
            conn.close()
            return None
        self._conns[conn] = component
        return component.on_open(conn, request)

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        component = self._conns.get(conn)
        return None if component is None else component.on_message(conn, data)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        component = self._conns.pop(conn, None)
        return None if component is None else component.on_close(conn)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        component = self._conns.get(conn)
        if component is None:
            return super().on_error(conn, exc)
        return component.on_error(conn, exc)

    def on_shutdown(self, conn: Connection) -> None:
        on_shutdown = getattr(self._conns.get(conn), "on_shutdown", None)
        if on_shutdown is None:
            conn.close()
        else:
            on_shutdown(conn)


class Page(HttpComponent):
    """Answer GET and HEAD with a fixed body (a page, a script); other methods get 405."""

    def __init__(
        self, body: bytes | str, *, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def on_open(self, conn: Connection, request: HttpRequest) -> MaybeAwaitable:
        if request.method not in ("GET", "HEAD"):
            conn.send(
                http_response(
                    405,
                    f"405 Method Not Allowed: {request.method}\n",
                    headers=[("Allow", "GET, HEAD")],
                )
            )
        else:
            response = http_response(
                200,
                self.body,
                content_type=self.content_type,
                headers=[("Cache-Control", "no-cache")],
            )
            if request.method == "HEAD":
                response = response[: len(response) - len(self.body)]
            conn.send(response)
        conn.close()
        return None
