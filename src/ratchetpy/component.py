"""Components: the user's code and the layers that wrap it (Ratchet's ComponentInterface).

Every handler may be a plain method or an ``async def``. Layers call handlers inline, in order,
from the connection's own task: a connection's messages are handled one at a time, and a slow
``async`` handler delays only its own connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from .connection import Connection

if TYPE_CHECKING:
    from .http import HttpRequest

__all__ = ["HttpComponent", "MaybeAwaitable", "MessageComponent"]

logger = logging.getLogger("ratchetpy")

#: What a handler returns: ``None`` from a plain method, an awaitable from an ``async def``.
MaybeAwaitable = Awaitable[Any] | None


class MessageComponent:
    """Base class for an application component (Ratchet's ``MessageComponentInterface``).

    Override the handlers you need; each may be ``def`` or ``async def``. ``msg`` is ``str`` for
    a WebSocket text message, ``bytes`` for a binary one, and ``bytes`` on raw TCP.

    ``subprotocols`` lists the WebSocket subprotocols this component speaks (Ratchet's
    ``getSubProtocols``); :class:`~ratchetpy.WsServer` picks the first one in the client's
    list that is also in this one.
    """

    subprotocols: Sequence[str] = ()

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


class HttpComponent:
    """Base class for components behind :class:`~ratchetpy.HttpServer`.

    Ratchet's ``HttpServerInterface``.

    ``on_open`` receives the parsed request, body included (``request.body``). Bytes that
    follow the request on the connection (WebSocket frames after an upgrade) arrive through
    ``on_message``.
    """

    def on_open(self, conn: Connection, request: HttpRequest) -> MaybeAwaitable:
        """A request arrived. Answer with ``conn.send(...)`` and ``conn.close()``."""
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


def invoke(component: Any, conn: Connection, handler: Any, *args: Any) -> MaybeAwaitable:
    """Call ``handler(*args)`` on behalf of ``conn``; its exceptions, raised at once or when
    its awaitable is awaited, go to ``component.on_error``."""
    try:
        result = handler(*args)
    except Exception as exc:
        return report_error(component, conn, exc)
    return None if result is None else guarded(component, conn, result)


def report_error(component: Any, conn: Connection, exc: Exception) -> MaybeAwaitable:
    """Hand ``exc`` to ``component.on_error``; if that raises too, log it and close with 1011."""
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


async def guarded(component: Any, conn: Connection, result: Awaitable[Any]) -> None:
    """Await what an ``async`` handler returned, sending its exception to ``on_error``."""
    try:
        await result
    except Exception as exc:
        follow_up = report_error(component, conn, exc)
        if follow_up is not None:
            await follow_up
