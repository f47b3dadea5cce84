"""HttpServer: reads the HTTP request head sans-IO with h11 (Ratchet's ``HttpServer``).

It enforces limits on the head and body, answers malformed or oversized requests itself, and
hands the parsed :class:`HttpRequest` to the wrapped :class:`~ratchetpy.HttpComponent` (such as
:class:`~ratchetpy.WsServer`). Bytes after the head pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import h11

from .component import HttpComponent, MaybeAwaitable
from .connection import Connection, Timer

__all__ = ["Headers", "HttpRequest", "HttpResponse", "HttpServer", "http_response"]

logger = logging.getLogger("ratchetpy.http")


class Headers:
    """Request headers: case-insensitive names, repeated names kept in order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(name.lower(), value) for name, value in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def items(self) -> list[tuple[str, str]]:
        """All (lower-case name, value) pairs in order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key for key, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _parse_cookies(values: list[str]) -> dict[str, str]:
    # Browsers send "a=1; b=2". Be lenient (as browsers are) rather than reject the request.
    cookies: dict[str, str] = {}
    for value in values:
        for part in value.split(";"):
            name, sep, val = part.strip().partition("=")
            if sep and name:
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1]
                cookies.setdefault(name, val)
    return cookies


@dataclass(frozen=True)
class HttpRequest:
    """A parsed request head (Ratchet's ``$conn->httpRequest``).

    ``path`` and ``query`` are as sent (percent-encoded); ``query_params`` and ``cookies`` are
    decoded. ``body`` holds the request body when there was one. ``path_params`` holds what a
    route pattern such as ``/rooms/{room}`` captured (decoded). ``scheme`` is ``"https"`` on TLS
    connections (or when a trusted proxy says so), else ``"http"``.
    """

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""
    path_params: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "http"
    path: str = field(init=False)
    query: str = field(init=False)
    cookies: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        path, _, query = self.target.partition("?")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "cookies", _parse_cookies(self.headers.get_all("cookie")))

    @property
    def query_params(self) -> dict[str, list[str]]:
        """The query string decoded: ``{"name": ["value", ...]}``."""
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        return self.headers.get(name, default)


def http_response(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
    close: bool = True,
) -> bytes:
    """Encode a complete HTTP/1.1 response: ``conn.send(http_response(200, page))``.

    ``Content-Type`` and ``Content-Length`` are set unless the status forbids a body (1xx,
    204, 304) and there is none; ``Connection: close`` too unless ``close=False``.
    """
    if isinstance(body, str):
        body = body.encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body or (status not in (204, 304) and status >= 200):
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class HttpResponse:
    """A plain HTTP answer. An HTTP component returns one from ``on_open`` to answer a request
    and leave the connection to :class:`HttpServer`, which writes it (no body for ``HEAD``),
    keeps the connection alive when the client wants that, and reads the next request.

    ``body`` may be ``str`` (sent as UTF-8). ``headers`` are extra header lines;
    ``Content-Type`` and ``Content-Length`` are added from ``content_type`` and the body.
    """

    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode())
        object.__setattr__(self, "headers", tuple(self.headers))

    @classmethod
    def error(
        cls, status: int, why: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> HttpResponse:
        """An error answer whose body says what went wrong: ``"404 Not Found: <why>"``."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return cls(status, f"{status} {phrase}: {why}\n", headers=tuple(headers))


_ANSWERED: Any = object()  # marks a connection this layer answered itself


class _Pending:
    """A connection whose request is still being read."""

    __slots__ = ("body", "body_size", "parser", "request", "timer")

    def __init__(self, parser: h11.Connection, timer: Timer) -> None:
        self.parser = parser
        self.timer = timer
        self.request: HttpRequest | None = None
        self.body: list[bytes] = []
        self.body_size = 0


class HttpServer:
    """Parse each connection's request head and hand it to ``component``.

    Options (keyword-only):

    ``max_head_size``
        Bytes the request line and headers may take (default 16 KiB); more gets 431.
    ``max_headers``
        How many header lines a request may have (default 100); more gets 431.
    ``max_body_size``
        Bytes a request body may have (default 1 MiB); more gets 413.
    ``request_timeout``
        Seconds a client has to send its whole request (default 10); then it gets 408 and is
        dropped, so an idle or trickling client cannot hold a connection slot.
    """

    def __init__(
        self,
        component: HttpComponent,
        *,
        max_head_size: int = 16 * 1024,
        max_headers: int = 100,
        max_body_size: int = 2**20,
        request_timeout: float = 10.0,
    ) -> None:
        self.component = component
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.request_timeout = request_timeout
        # _Pending while the request is read, None once handed over; absent once answered here.
        self._conns: dict[Connection, _Pending | None] = {}

    # -- component interface (driven by IoServer) ------------------------------------------

    def on_open(self, conn: Connection) -> MaybeAwaitable:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_size)
        timer = conn.call_later(self.request_timeout, lambda: self._timed_out(conn))
        self._conns[conn] = _Pending(parser, timer)
        return None

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        pending = self._conns.get(conn, _ANSWERED)
        if pending is None:
            return self.component.on_message(conn, data)
        if pending is _ANSWERED:
            return None  # answered here and closing: nothing more to read
        return self._receive(conn, pending, data)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        pending = self._conns.pop(conn, _ANSWERED)
        if pending is None:
            return self.component.on_close(conn)
        if isinstance(pending, _Pending):
            pending.timer.cancel()
        return None

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        if self._handed_over(conn):
            return self.component.on_error(conn, exc)
        logger.error("error while reading a request from %s", conn.remote_address, exc_info=exc)
        self._reject(conn, 500, "internal error while reading the request")
        return None

    def on_shutdown(self, conn: Connection) -> None:
        on_shutdown = getattr(self.component, "on_shutdown", None)
        if on_shutdown is not None and self._handed_over(conn):
            on_shutdown(conn)
        else:
            conn.close()

    # -- internals -------------------------------------------------------------------------

    def _handed_over(self, conn: Connection) -> bool:
        return conn in self._conns and self._conns[conn] is None

    def _receive(self, conn: Connection, pending: _Pending, data: bytes) -> MaybeAwaitable:
        parser = pending.parser
        try:
            parser.receive_data(data)
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.Request):
                    if not self._accept_head(conn, pending, event):
                        return None
                elif isinstance(event, h11.Data):
                    pending.body.append(bytes(event.data))
                    pending.body_size += len(event.data)
                    if pending.body_size > self.max_body_size:
                        self._reject(conn, 413, f"request body over {self.max_body_size} bytes")
                        return None
                elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    return self._hand_over(conn, pending)
                elif isinstance(event, h11.ConnectionClosed):
                    conn.close()
                    return None
        except h11.RemoteProtocolError as exc:
            self._reject(conn, exc.error_status_hint, f"malformed request: {exc}")
            return None

    def _accept_head(self, conn: Connection, pending: _Pending, event: h11.Request) -> bool:
        if len(event.headers) > self.max_headers:
            self._reject(conn, 431, f"more than {self.max_headers} header lines")
            return False
        items = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in event.headers.raw_items()
        ]
        # h11 only bounds a head that arrives in pieces; one that arrives whole is measured here.
        head_size = (
            len(event.target) + 20 + sum(len(name) + len(value) + 4 for name, value in items)
        )
        if head_size > self.max_head_size:
            self._reject(conn, 431, f"request head over {self.max_head_size} bytes")
            return False
        headers = Headers(items)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            self._reject(conn, 413, f"request body over {self.max_body_size} bytes")
            return False
        pending.request = HttpRequest(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=headers,
            http_version=event.http_version.decode("ascii"),
        )
        return True

    def _hand_over(self, conn: Connection, pending: _Pending) -> MaybeAwaitable:
        request = pending.request
        assert request is not None
        if pending.body:
            request = HttpRequest(
                method=request.method,
                target=request.target,
                headers=request.headers,
                http_version=request.http_version,
                body=b"".join(pending.body),
            )
        pending.timer.cancel()
        trailing = bytes(pending.parser.trailing_data[0])
        self._conns[conn] = None
        conn.http_request = request
        opened = self.component.on_open(conn, request)
        if not trailing:
            return opened
        if opened is None:
            return self.component.on_message(conn, trailing)
        return self._open_then_feed(conn, opened, trailing)

    async def _open_then_feed(self, conn: Connection, opened: Any, trailing: bytes) -> None:
        await opened
        more = self.component.on_message(conn, trailing)
        if more is not None:
            await more

    def _reject(self, conn: Connection, status: int, why: str) -> None:
        logger.info("HTTP %d to %s: %s", status, conn.remote_address, why)
        pending = self._conns.pop(conn, None)
        if pending is not None:
            pending.timer.cancel()
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        conn.send(http_response(status, f"{status} {phrase}: {why}\n"))
        conn.close()

    def _timed_out(self, conn: Connection) -> None:
        if isinstance(self._conns.get(conn), _Pending):
            self._reject(conn, 408, f"the request did not arrive within {self.request_timeout:g} s")
