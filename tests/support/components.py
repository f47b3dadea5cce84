"""Small components the tests share instead of writing their own copies."""

from __future__ import annotations

from typing import Any

import trio

from ratchetpy import Connection, HttpComponent, HttpRequest, HttpResponse, MessageComponent


class Echo(MessageComponent):
    """Sends every message back: text as text, binary as binary (bytes on raw TCP)."""

    def on_message(self, conn: Connection, msg: Any) -> None:
        conn.send(msg)


class Recorder(MessageComponent):
    """Echoes, and remembers what happened, in order: ``("open", resource_id)``,
    ``("message", msg)``, ``("close", close_code)``. ``closed`` is set by every ``on_close``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.conns: list[Connection] = []
        self.closed = trio.Event()

    def on_open(self, conn: Connection) -> None:
        self.conns.append(conn)
        self.events.append(("open", conn.resource_id))

    def on_message(self, conn: Connection, msg: Any) -> None:
        self.events.append(("message", msg))
        conn.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.events.append(("close", getattr(conn, "close_code", None)))
        self.closed.set()


class RequestRecorder(HttpComponent):
    """An HTTP component that keeps every request it is given and the connection it came on.

    With ``answer`` it answers each request with that response (and the connection stays
    with HttpServer); without, it takes the connection over, as WsServer would.
    """

    def __init__(self, answer: HttpResponse | None = None) -> None:
        self.answer = answer
        self.seen: list[HttpRequest] = []
        self.opened: list[Connection] = []
        self.closed: list[Connection] = []

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse | None:
        self.seen.append(request)
        self.opened.append(conn)
        return self.answer

    def on_close(self, conn: Connection) -> None:
        self.closed.append(conn)
