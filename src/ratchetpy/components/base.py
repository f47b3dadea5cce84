"""Components: the user's code and the layers that wrap it (Ratchet's ComponentInterface).

Every handler may be a plain method or an ``async def``. Layers call handlers inline, in order,
from the connection's own task: a connection's messages are handled one at a time, and a slow
``async`` handler delays only its own connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Union

from ..protocol.http import HttpRequest, HttpResponse
from .connection import Connection

__all__ = [
    "HttpComponent",
    "HttpDecorator",
    "HttpResult",
    "MaybeAwaitable",
    "MessageComponent",
    "delegate_chain",
    "guarded",
    "invoke",
    "report_error",
    "shut_down",
    "when_answered",
]

logger = logging.getLogger("ratchetpy")

#: What a handler returns: ``None`` from a plain method, an awaitable from an ``async def``.
MaybeAwaitable = Awaitable[Any] | None

#: What :meth:`HttpComponent.on_open` returns: a response to send (the connection stays with
#: :class:`~ratchetpy.HttpServer`), ``None`` (the component took the connection over), or an
#: awaitable of either from an ``async def``.
HttpResult = Union["HttpResponse", Awaitable[Any], None]


class MessageComponent:
    """Base class for an application component (Ratchet's ``MessageComponentInterface``).

    Override the handlers you need; each may be ``def`` or ``async def``. ``msg`` is ``str`` for
    a WebSocket text message, ``bytes`` for a binary one, and ``bytes`` on raw TCP.

    Besides the four handlers, a component may declare how :class:`~ratchetpy.WsServer`
    serves it (class attributes) and how it says goodbye (:meth:`on_shutdown`).
    """

    #: The WebSocket subprotocols this component speaks (Ratchet's ``getSubProtocols``);
    #: :class:`~ratchetpy.WsServer` picks the first one in the client's list that is also in
    #: this one.
    subprotocols: Sequence[str] = ()
    #: Refuse (400) clients that offer no subprotocol at all (a WAMP router needs one).
    subprotocol_required: bool = False
    #: ``False`` asks permessage-deflate to compress each message on its own, so that a
    #: broadcast compresses once for every client (see ``WsServer(context_takeover=...)``).
    compression_context_takeover: bool = True

    def on_open(self, conn: Connection) -> MaybeAwaitable:
        """A client connected (on WebSocket: the handshake succeeded)."""
        return None

    def on_message(self, conn: Connection, msg: Any) -> MaybeAwaitable:
        """A message arrived from ``conn``."""
        return None

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        """``conn`` is gone; sending to it does nothing from now on."""
        return None

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        """A handler of this component raised ``exc`` while serving ``conn``.

        The default logs the error with its traceback and closes the connection with 1011
        ("internal error"). Override it to keep the connection open or answer differently.
        """
        logger.error(
            "handler error on connection #%s from %s; closing it",
            conn.resource_id,
            conn.remote_address,
            exc_info=exc,
        )
        conn.close(1011, "internal error")
        return None

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        """End ``conn`` on the server's behalf: the server shuts down (1001), or a guard such as
        :meth:`IpBlackList.block <ratchetpy.IpBlackList.block>` drops the client (1008).

        Say goodbye the way your protocol does, then close; the default closes with ``code``
        and ``reason``. Called synchronously: it must not block, and ``on_close`` follows once
        the connection is gone.
        """
        conn.close(code, reason)


class HttpComponent:
    """Base class for components behind :class:`~ratchetpy.HttpServer`.

    Ratchet's ``HttpServerInterface``.

    ``on_open`` receives the parsed request, body included (``request.body``). It answers in
    one of two ways:

    * return an :class:`~ratchetpy.HttpResponse`: :class:`~ratchetpy.HttpServer` sends it and
      keeps the connection for the client's next request (keep-alive); no other handler of
      this component is called for that request;
    * return ``None`` and own the connection, as Ratchet's HTTP components do
      (``conn.send(http_response(...))`` then ``conn.close()``) and as
      :class:`~ratchetpy.WsServer` does after an upgrade. Bytes that follow the request then
      arrive through ``on_message``, and ``on_close`` tells when the connection is gone.

    ``methods``, when a component sets it, lists the methods it serves; a
    :class:`~ratchetpy.Router` answers 405 for the others.
    """

    methods: tuple[str, ...] | None = None

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        """A request arrived: return an ``HttpResponse``, or take the connection over."""
        return None

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        """Bytes that followed the request."""
        return None

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        """The connection is gone."""
        return None

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        """A handler raised; the default logs it and closes the connection."""
        logger.error(
            "HTTP handler error on connection #%s from %s; closing it",
            conn.resource_id,
            conn.remote_address,
            exc_info=exc,
        )
        conn.close()
        return None

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        """End ``conn`` on the server's behalf (see :meth:`MessageComponent.on_shutdown`);
        ``code`` and ``reason`` reach the client when the connection is a WebSocket. The
        default closes the connection."""
        conn.close(code, reason)

    def delegate(self, conn: Connection) -> HttpComponent | None:
        """The component that receives ``conn``'s bytes once this one took it over, or
        ``None`` when it handles them itself (the default).

        :class:`~ratchetpy.HttpServer` follows these links after a hand-over and sends the
        connection's data straight to the last one, so stacked decorators cost nothing per
        message.
        """
        return None


class HttpDecorator(HttpComponent):
    """An HTTP component that wraps another and passes everything through (Ratchet's
    decorators, such as ``OriginCheck``). Subclasses override ``on_open`` to refuse requests
    or look at them, and call ``super().on_open`` to let them through.
    """

    def __init__(self, component: HttpComponent) -> None:
        self.component = component

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        return self.component.on_open(conn, request)

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        return self.component.on_message(conn, data)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        return self.component.on_close(conn)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        return self.component.on_error(conn, exc)

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        self.component.on_shutdown(conn, code, reason)

    def delegate(self, conn: Connection) -> HttpComponent | None:
        """The wrapped component: a decorator looks only at the request, so the bytes that
        follow go straight past it. A decorator that wants to see every message returns
        ``None``."""
        return self.component


def delegate_chain(component: HttpComponent, conn: Connection) -> HttpComponent:
    """The innermost component that takes ``conn``'s messages, following ``delegate`` links."""
    while (inner := component.delegate(conn)) is not None:
        component = inner
    return component


def invoke(component: Any, conn: Connection, handler: Any, *args: Any) -> MaybeAwaitable:
    """Call ``handler(*args)`` on behalf of ``conn``; its exceptions, raised at once or when
    its awaitable is awaited, go to ``component.on_error``."""
    try:
        result = handler(*args)
    except Exception as exc:
        return report_error(component, conn, exc)
    return None if result is None else guarded(component, conn, result)


def report_error(component: Any, conn: Connection, exc: Exception) -> MaybeAwaitable:
    """Hand ``exc`` to ``component.on_error``; if that raises too, log it and close with 1011.
    Counted in the server's ``handler_errors``."""
    counters = getattr(conn, "counters", None)
    if counters is not None:
        counters.handler_errors += 1
    try:
        result: MaybeAwaitable = component.on_error(conn, exc)
    except Exception:
        logger.exception("on_error raised while handling %r; closing #%s", exc, conn.resource_id)
        conn.close(1011, "internal error")
        return None
    if result is None:
        return None
    return _await_error_handler(conn, result)


async def _await_error_handler(conn: Connection, result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception:
        logger.exception("async on_error raised; closing #%s", conn.resource_id)
        conn.close(1011, "internal error")


#: What every connection hears when its server shuts down gracefully ("going away").
SHUTDOWN_CODE = 1001
SHUTDOWN_REASON = "server shutting down"


def shut_down(component: Any, conn: Connection) -> None:
    """End ``conn`` for a graceful server shutdown: ``component.on_shutdown(conn, 1001, ...)``,
    or a plain close when the component lacks the hook or it raises (logged).

    The hook is declared on :class:`MessageComponent` and :class:`HttpComponent`; a component
    of the user's own that derives from neither may lack it, hence the look-up.
    """
    on_shutdown = getattr(component, "on_shutdown", None)
    if on_shutdown is None:
        conn.close(SHUTDOWN_CODE, SHUTDOWN_REASON)
        return
    try:
        on_shutdown(conn, SHUTDOWN_CODE, SHUTDOWN_REASON)
    except Exception:
        logger.exception("on_shutdown raised for connection #%s", conn.resource_id)
        conn.close(SHUTDOWN_CODE, SHUTDOWN_REASON)


async def guarded(component: Any, conn: Connection, result: Awaitable[Any]) -> None:
    """Await what an ``async`` handler returned, sending its exception to ``on_error``."""
    try:
        await result
    except Exception as exc:
        follow_up = report_error(component, conn, exc)
        if follow_up is not None:
            await follow_up


def when_answered(result: Any, answered: Callable[[], object]) -> Any:
    """Pass an ``on_open`` result through, calling ``answered()`` if it is (or, from an
    ``async def``, turns out to be) an :class:`HttpResponse`.

    For layers that keep per-connection state from ``on_open`` until ``on_close``: a request
    answered with a response never gets an ``on_close``, so they drop the state here.
    """
    if result is None:
        return None
    if isinstance(result, HttpResponse):
        answered()
        return result
    return _when_awaited_answer(result, answered)


async def _when_awaited_answer(result: Awaitable[Any], answered: Callable[[], object]) -> Any:
    answer = await result
    if isinstance(answer, HttpResponse):
        answered()
    return answer
