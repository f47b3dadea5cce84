"""Test doubles for unit tests of one component, without a stack or a server.

:class:`RecordingConnection` is what a layer hands a component: it records what the component
sends and how it closes, and its timers fire when the test says. :func:`http_request` builds
the request an :class:`~ratchetpy.HttpComponent` receives; :func:`resolve` awaits what a
handler returned, if it was ``async``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio

from ..components.connection import Connection, Counters
from ..exceptions import LocalProtocolError
from ..protocol.http import Headers, HttpRequest

__all__ = ["ManualTimer", "RecordingConnection", "http_request", "resolve"]

_ids = itertools.count(1)


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: what a WebSocket endpoint may put in its own close frame.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class ManualTimer:
    """A ``call_later`` timer that fires when the test calls :meth:`fire`."""

    def __init__(self, delay: float, callback: Callable[[], Any]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        """Run the callback now, unless the timer was cancelled (or fired already)."""
        if not self.cancelled and not self.fired:
            self.fired = True
            self.callback()


class RecordingConnection(Connection):
    """A connection that records what a component does with it.

    ``sent`` holds everything sent, in order; ``closes`` the ``(code, reason)`` of each
    ``close()``; ``timers`` the :class:`ManualTimer` of each ``call_later()``. With
    ``websocket=True`` (the default) it behaves like a :class:`~ratchetpy.WsConnection`:
    ``close()`` refuses codes and reasons a close frame cannot carry
    (:class:`~ratchetpy.LocalProtocolError`) and nothing is sent once it is closed. ``lose()``
    stands for the peer vanishing. ``counters`` are the statistics a transport keeps.
    """

    def __init__(
        self,
        *,
        remote_address: str = "127.0.0.1",
        request: HttpRequest | None = None,
        subprotocol: str | None = None,
        secure: bool = False,
        websocket: bool = True,
    ) -> None:
        self.resource_id = next(_ids)
        self.remote_address = remote_address
        self.http_request = request
        self.subprotocol = subprotocol
        self.secure = secure
        self.counters = Counters()
        self.sent: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.timers: list[ManualTimer] = []
        self.lost = False
        self._websocket = websocket

    def send(self, data: str | bytes) -> None:
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            # As every real connection does, so that a unit test catches it too.
            raise TypeError(f"send() takes str or bytes, not {type(data).__name__}")
        if not self.closed:
            self.sent.append(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._websocket:
            if not _valid_close_code(code):
                raise LocalProtocolError(f"close code {code!r} may not be sent")
            if len(reason.encode()) > 123:
                raise LocalProtocolError("close reason longer than 123 UTF-8 bytes")
        self.closes.append((code, reason))

    @property
    def closed(self) -> bool:
        return bool(self.closes) or self.lost

    def lose(self) -> None:
        """The peer is gone (the layer below would now call ``on_close``)."""
        self.lost = True

    def call_later(self, delay: float, callback: Callable[[], Any]) -> ManualTimer:
        timer = ManualTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire_timers(self) -> None:
        """Fire every pending timer, in the order they were set."""
        for timer in list(self.timers):
            timer.fire()

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    @property
    def buffered_amount(self) -> int:
        return 0

    def take(self) -> list[str | bytes]:
        """What was sent since the last ``take()``."""
        sent, self.sent = self.sent, []
        return sent


def http_request(
    target: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    host: str | None = "localhost",
    origin: str | None = None,
    cookies: Mapping[str, str] | None = None,
    body: bytes = b"",
    scheme: str = "http",
    path_params: Mapping[str, str] | None = None,
    upgrade: bool = False,
) -> HttpRequest:
    """The parsed request an HTTP component receives: ``Host`` (unless ``None``),
    ``Origin`` and ``Cookie`` headers are added from the arguments, and with ``upgrade=True``
    the headers of a WebSocket opening handshake (``Upgrade``, ``Connection``,
    ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``)."""
    items: list[tuple[str, str]] = []
    if host is not None:
        items.append(("Host", host))
    if upgrade:
        items += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]
    items.extend(headers)
    if origin is not None:
        items.append(("Origin", origin))
    if cookies:
        items.append(("Cookie", "; ".join(f"{name}={value}" for name, value in cookies.items())))
    return HttpRequest(
        method=method,
        target=target,
        headers=Headers(items),
        body=body,
        scheme=scheme,
        path_params=dict(path_params or {}),
    )


async def resolve(result: Awaitable[Any] | Any) -> Any:
    """What a handler returned, awaited if it was ``async``: ``await resolve(c.on_message(conn,
    msg))`` works for both kinds of handler. A checkpoint."""
    if isinstance(result, Awaitable):
        return await result
    await trio.lowlevel.checkpoint()
    return result
