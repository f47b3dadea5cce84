"""WsServer: the WebSocket layer (Ratchet's ``WsServer``).

An :class:`~ratchetpy.HttpComponent` that answers the upgrade request (sans-IO, in
:mod:`ratchetpy.protocol.handshake`), negotiates subprotocol and compression, and then gives
each connection's bytes to its :class:`~ratchetpy.WsConnection`, which decodes them and calls
the wrapped :class:`~ratchetpy.MessageComponent`. No trio here: it only calls the transport's
``write`` / ``close`` / ``call_later``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import cast

from ..exceptions import RemoteProtocolError
from ..protocol.deflate import negotiate_deflate
from ..protocol.handshake import SUPPORTED_VERSION, accept_response, parse_upgrade
from ..protocol.http import HttpRequest, HttpResponse, http_response
from ..protocol.websocket import WebSocketProtocol
from .base import HttpComponent, MaybeAwaitable, MessageComponent, invoke, report_error
from .connection import Connection, Transport
from .ws_connection import WsConnection

__all__ = ["WsServer"]

logger = logging.getLogger("ratchetpy.ws")


class WsServer(HttpComponent):
    """Serve ``component`` over WebSocket; wrap it in :class:`~ratchetpy.HttpServer`.

    Options (keyword-only):

    ``subprotocols``
        Subprotocols this server speaks; default: ``component.subprotocols``. The first
        subprotocol in the client's list (the client's order of preference) that is also in
        this one is chosen, as Ratchet does.
    ``strict_subprotocols``
        When the client asks only for subprotocols we do not speak, refuse the handshake with
        400 (default, as Ratchet's ``setStrictSubProtocolCheck(true)``); when false, accept
        it without a subprotocol.
    ``require_subprotocol``
        Refuse (400) clients that offer no subprotocol at all; default:
        ``component.subprotocol_required`` (true for :class:`~ratchetpy.wamp.WampServer`,
        which cannot talk to a client that has not chosen a serializer).
    ``max_message_size``
        Largest message accepted, after decompression (default 1 MiB); larger ones close the
        connection with 1009. ``None`` lifts the limit.
    ``compression``
        ``"deflate"`` (default) negotiates permessage-deflate when the client offers it;
        ``None`` never compresses.
    ``context_takeover``
        With ``False``, permessage-deflate compresses each message on its own (the server
        asks for ``server_no_context_takeover``): compression is a little weaker, but a
        message compresses to the same bytes for every client, so :func:`broadcast`
        compresses and frames it once for all of them. Default:
        ``component.compression_context_takeover`` if set (``False`` for
        :class:`~ratchetpy.WampServer`, whose events fan out), else ``True``.
    ``keepalive``
        Seconds between pings (Ratchet's ``enableKeepAlive``); a peer that has not answered
        the previous ping by the next one is closed with 1011. ``None`` (default) sends none.
    ``close_timeout``
        Seconds to wait for the peer's close frame after ours (default 10).
    """

    def __init__(
        self,
        component: MessageComponent,
        *,
        subprotocols: Sequence[str] | None = None,
        strict_subprotocols: bool = True,
        require_subprotocol: bool | None = None,
        max_message_size: int | None = 2**20,
        compression: str | None = "deflate",
        keepalive: float | None = None,
        close_timeout: float = 10.0,
        context_takeover: bool | None = None,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
        if max_message_size is not None and max_message_size < 1:
            raise ValueError(f"max_message_size must be positive or None, not {max_message_size}")
        self.component = component
        self.subprotocols = tuple(
            subprotocols if subprotocols is not None else component.subprotocols
        )
        self.strict_subprotocols = strict_subprotocols
        if require_subprotocol is None:
            require_subprotocol = component.subprotocol_required
        self.require_subprotocol = require_subprotocol
        self.max_message_size = max_message_size
        self.compression = compression
        if context_takeover is None:
            context_takeover = component.compression_context_takeover
        self.context_takeover = context_takeover
        self.keepalive = keepalive
        self.close_timeout = close_timeout
        self._conns: dict[Connection, WsConnection] = {}

    # -- HttpComponent interface -------------------------------------------------------------

    def on_open(self, conn: Connection, request: HttpRequest) -> MaybeAwaitable:
        # Below WsServer there is only HttpServer, which passes IoServer's transport through.
        transport = cast(Transport, conn)
        ws = self._handshake(transport, request)
        if ws is None:
            return None
        self._conns[conn] = ws
        return invoke(self.component, ws, self.component.on_open, ws)

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        ws = self._conns.get(conn)
        return None if ws is None else ws.data_received(data)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        ws = self._conns.pop(conn, None)
        return None if ws is None else ws.connection_lost()

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        ws = self._conns.get(conn)
        if ws is None:
            logger.error("error on connection #%s", conn.resource_id, exc_info=exc)
            conn.close()
            return None
        return report_error(self.component, ws, exc)

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        ws = self._conns.get(conn)
        if ws is None:
            conn.close()
        else:
            ws.shutdown(code, reason)

    # -- handshake -------------------------------------------------------------------------

    def _handshake(self, transport: Transport, request: HttpRequest) -> WsConnection | None:
        try:
            upgrade = parse_upgrade(request)
        except RemoteProtocolError as exc:
            headers = []
            if exc.http_status == 405:
                headers.append(("Allow", "GET"))
            elif exc.http_status == 426:
                headers += [("Upgrade", "websocket"), ("Sec-WebSocket-Version", SUPPORTED_VERSION)]
            self._refuse(transport, exc.http_status, str(exc), headers)
            return None

        subprotocol = self._choose_subprotocol(upgrade.subprotocols)
        if subprotocol is None and not upgrade.subprotocols and self.require_subprotocol:
            supported = ", ".join(self.subprotocols)
            self._refuse(
                transport, 400, f"this endpoint needs a subprotocol; offer one of: {supported}"
            )
            return None
        if subprotocol is None and upgrade.subprotocols and self.strict_subprotocols:
            offered = ", ".join(upgrade.subprotocols)
            supported = ", ".join(self.subprotocols) or "none"
            self._refuse(
                transport,
                400,
                f"no supported subprotocol among: {offered} (supported: {supported})",
            )
            return None

        deflate = None
        extensions = None
        if self.compression == "deflate" and upgrade.extensions:
            agreed = negotiate_deflate(
                list(upgrade.extensions), server_no_context_takeover=not self.context_takeover
            )
            if agreed is not None:
                deflate, extensions = agreed
        protocol = WebSocketProtocol(max_message_size=self.max_message_size, deflate=deflate)
        # Urgent, so that no control frame (a pong, a ping from on_open, a close after a
        # protocol error) can be queued ahead of the handshake response.
        transport.write_urgent(
            accept_response(upgrade.key, subprotocol=subprotocol, extensions=extensions)
        )
        transport.counters.handshake(101)
        logger.info(
            "WebSocket #%s from %s opened on %s%s%s",
            transport.resource_id,
            transport.remote_address,
            request.path,
            f", subprotocol {subprotocol}" if subprotocol else "",
            ", deflate" if deflate is not None else "",
        )
        return WsConnection(
            transport,
            protocol,
            request,
            subprotocol,
            self.component,
            close_timeout=self.close_timeout,
            keepalive=self.keepalive,
        )

    def _choose_subprotocol(self, offered: Sequence[str]) -> str | None:
        supported = self.subprotocols
        for name in offered:
            if name in supported:
                return name
        return None

    def _refuse(
        self, transport: Transport, status: int, why: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        logger.info("handshake from %s refused with %d: %s", transport.remote_address, status, why)
        transport.counters.handshake(status)
        refusal = HttpResponse.error(status, why, headers=headers)
        transport.write(http_response(status, refusal.body, headers=refusal.headers))
        transport.close()
