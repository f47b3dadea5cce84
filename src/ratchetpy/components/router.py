"""Router: send each request to the component registered for its path (Ratchet's ``Router``).

.. code-block:: python

    router = Router({"/chat": WsServer(Chat()), "/": Page(html)})
    router.add("/rooms/{room}", WsServer(Rooms()))
    router.add("/assets/{path:path}", StaticFiles("public"))
    IoServer.factory(HttpServer(router), 8080).run()

A pattern segment ``{name}`` matches one path segment; ``{name:path}`` matches the rest of the
path, slashes included. What they capture is percent-decoded and reaches the component as
``request.path_params``. Routes without patterns are tried first, then patterns in the order
they were added.

Every refusal says why in its body: 404 names the path (and the host, when routes are
restricted to other hosts), 405 lists the methods the path accepts in ``Allow``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from ..protocol.http import HttpRequest, HttpResponse, host_matches, split_host
from .base import HttpComponent, MaybeAwaitable, when_answered
from .connection import Connection
from .guards import count_refusal

__all__ = ["Page", "Route", "Router"]

logger = logging.getLogger("ratchetpy.http")

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}$")


@dataclass(frozen=True)
class Route:
    """One entry of a :class:`Router`: where it matches and what serves it."""

    path: str
    component: HttpComponent
    #: Methods it accepts (upper case; ``GET`` implies ``HEAD``), or ``None`` for any.
    methods: frozenset[str] | None = None
    #: The ``Host`` (without port) it serves, ``*.example.com`` for subdomains, or ``None``.
    http_host: str | None = None

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if ``segments`` (decoded path segments) match, else ``None``."""
        pattern = _split(self.path)
        params: dict[str, str] = {}
        for index, part in enumerate(pattern):
            param = _PARAM.match(part)
            if param is not None and param.group(2) == "path":
                params[param.group(1)] = "/".join(segments[index:])
                return params
            if index >= len(segments):
                return None
            if param is not None:
                if not segments[index]:
                    return None
                params[param.group(1)] = segments[index]
            elif part != segments[index]:
                return None
        return params if len(segments) == len(pattern) else None

    def serves_host(self, host: str) -> bool:
        return self.http_host is None or host_matches(self.http_host, host)

    def allows(self, method: str) -> bool:
        methods = self.methods
        if methods is None or method in methods:
            return True
        return method == "HEAD" and "GET" in methods


def _split(path: str) -> list[str]:
    return path.split("/")[1:]


class Router(HttpComponent):
    """Dispatch requests by path (and optionally method and host) to HTTP components.

    ``routes`` maps paths to components, as in Ratchet; :meth:`add` takes the options.
    """

    def __init__(self, routes: Mapping[str, HttpComponent] | None = None) -> None:
        self._exact: dict[str, list[Route]] = {}
        self._patterns: list[Route] = []
        for path, component in (routes or {}).items():
            self.add(path, component)
        self._conns: dict[Connection, HttpComponent] = {}

    @property
    def routes(self) -> list[Route]:
        """Every route, in the order they are tried."""
        exact = [route for routes in self._exact.values() for route in routes]
        return exact + self._patterns

    def add(
        self,
        path: str,
        component: HttpComponent,
        *,
        methods: Iterable[str] | None = None,
        http_host: str | None = None,
    ) -> Route:
        """Serve ``component`` at ``path`` (a pattern may hold ``{name}`` / ``{name:path}``).

        ``methods`` limits the methods (others get 405); by default the component's own
        ``methods`` attribute applies if it has one, else any method reaches it. ``http_host``
        limits the route to requests for that host. Adding the same path, methods and host
        again replaces the earlier route.
        """
        if not path.startswith("/"):
            raise ValueError(f"route paths start with '/': {path!r}")
        parts = _split(path)
        for index, part in enumerate(parts):
            if "{" in part or "}" in part:
                param = _PARAM.match(part)
                if param is None:
                    raise ValueError(f"bad pattern segment {part!r} in route {path!r}")
                if param.group(2) == "path" and index != len(parts) - 1:
                    raise ValueError(f"{{{param.group(1)}:path}} must end the route: {path!r}")
        if methods is None:
            # Declared on HttpComponent; a component of your own may not derive from it.
            methods = getattr(component, "methods", None)
        route = Route(
            path=path,
            component=component,
            methods=None if methods is None else frozenset(m.upper() for m in methods),
            http_host=None if http_host is None else http_host.lower(),
        )
        same = [route.path, route.methods, route.http_host]
        is_pattern = "{" in path
        table = self._patterns if is_pattern else self._exact.setdefault(path, [])
        for index, existing in enumerate(table):
            if [existing.path, existing.methods, existing.http_host] == same:
                table[index] = route
                return route
        table.append(route)
        return route

    def resolve(self, request: HttpRequest) -> tuple[Route, dict[str, str]] | HttpResponse:
        """The route for ``request`` and its path parameters, or the error response to send."""
        path = request.path
        if "%" not in path:
            # The common case, once per handshake: an exact route for any host.
            for route in self._exact.get(path, ()):
                if route.http_host is None and route.allows(request.method):
                    return route, {}
        try:
            segments = [unquote(part, errors="strict") for part in _split(path)]
        except UnicodeDecodeError:
            return HttpResponse.error(400, f"the path {path} is not valid UTF-8")
        host = split_host(request.header("host") or "")[0]
        allowed: set[str] = set()
        other_hosts: set[str] = set()
        # A segment holding an encoded slash ("%2F") can only match a pattern's parameter.
        exact: list[Route] = []
        if not any("/" in part for part in segments):
            exact = self._exact.get("/" + "/".join(segments), [])
        matches: list[tuple[Route, dict[str, str]]] = [(route, {}) for route in exact]
        for route in self._patterns:
            params = route.match(segments)
            if params is not None:
                matches.append((route, params))
        for route, params in matches:
            if not route.serves_host(host):
                other_hosts.add(route.http_host or "")
                continue
            if route.allows(request.method):
                return route, params
            assert route.methods is not None
            allowed |= route.methods
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            allow = ", ".join(sorted(allowed))
            return HttpResponse.error(
                405,
                f"{request.method} is not allowed for {request.path} (allowed: {allow})",
                headers=[("Allow", allow)],
            )
        if other_hosts:
            hosts = ", ".join(sorted(other_hosts))
            return HttpResponse.error(
                404,
                f"no route for {request.path} on host {host or '(none)'!r}; "
                f"this path is served for host {hosts}",
            )
        return HttpResponse.error(404, f"no route for {request.path}")

    # -- component interface ---------------------------------------------------------------

    def on_open(self, conn: Connection, request: HttpRequest) -> Any:
        found = self.resolve(request)
        if isinstance(found, HttpResponse):
            logger.info(
                "HTTP %d to %s: %s %s",
                found.status,
                conn.remote_address,
                request.method,
                request.path,
            )
            count_refusal(conn, request, found.status)
            return found
        route, params = found
        if params:
            request = replace(request, path_params=params)
            conn.http_request = request
        component = route.component
        self._conns[conn] = component
        # Once answered, the next request on this connection may go to another route.
        return when_answered(component.on_open(conn, request), lambda: self._conns.pop(conn, None))

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

    def delegate(self, conn: Connection) -> HttpComponent | None:
        """The route's component that took ``conn`` over (see :class:`HttpDecorator`)."""
        return self._conns.get(conn)

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        component = self._conns.get(conn)
        if component is None:
            conn.close(code, reason)
        else:
            component.on_shutdown(conn, code, reason)


class Page(HttpComponent):
    """Answer GET and HEAD with a fixed body (a page, a script); other methods get 405."""

    methods = ("GET", "HEAD")

    def __init__(
        self, body: bytes | str, *, content_type: str = "text/html; charset=utf-8"
    ) -> None:
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        if request.method not in self.methods:
            return HttpResponse.error(
                405, f"{request.method} is not allowed here", headers=[("Allow", "GET, HEAD")]
            )
        return HttpResponse(
            200, self.body, content_type=self.content_type, headers=(("Cache-Control", "no-cache"),)
        )
