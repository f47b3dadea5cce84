"""A WAMP session as a component sees it: :class:`WampConnection` (Ratchet's ``WampConnection``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..components.connection import Connection, Timer
from ..exceptions import LocalProtocolError
from .messages import (
    CALL,
    CLOSE_NORMAL,
    GOODBYE,
    Error,
    IdGenerator,
    Result,
)
from .serializers import Serializer

if TYPE_CHECKING:
    from .broker import Topic
    from .dealer import Procedure
    from .server import Realm, WampServer

__all__ = ["WampConnection"]


class WampConnection(Connection):
    """One client's WAMP session, wrapping its WebSocket connection.

    Beyond the usual connection attributes (``resource_id``, ``remote_address``,
    ``http_request``, ``user_id``, ``session``, your own attributes):

    ``session_id``
        The WAMP session id while the session is joined, else ``None`` (Ratchet's
        ``$conn->WAMP->sessionId``).
    ``realm``
        The :class:`~ratchetpy.wamp.Realm` joined (set from HELLO, before ``on_open``).
    ``authid``
        The authenticated user id (what an :class:`~ratchetpy.Authenticate` hook returned),
        or ``None`` for an anonymous session; announced to the client in WELCOME.
    ``roles``
        The roles the client announced in HELLO (``{"subscriber": {...}, ...}``).
    ``subscriptions``
        The topics this session subscribes to.
    """

    def __init__(self, server: WampServer, ws: Connection, serializer: Serializer) -> None:
        self.resource_id = ws.resource_id
        self.remote_address = ws.remote_address
        self.http_request = ws.http_request
        self.subprotocol = ws.subprotocol
        self.secure = ws.secure
        self.session_id: int | None = None
        self.realm: Realm | None = None
        self.authid: str | None = getattr(self.http_request, "user_id", None)
        self.roles: Mapping[str, Any] = {}
        self._server = server
        self._ws = ws
        self._serializer = serializer
        self._subscriptions: dict[int, Topic] = {}
        self._registrations: dict[int, Procedure] = {}
        # call id -> None while the component answers it, (callee, invocation id) once forwarded
        self._open_calls: dict[int, tuple[WampConnection, int] | None] = {}
        # invocation id -> (caller, call id) for calls this session serves as callee
        self._invocations: dict[int, tuple[WampConnection, int]] = {}
        self._request_ids = IdGenerator()
        self._hello_timer: Timer | None = None

    def __repr__(self) -> str:
        return (
            f"<WampConnection #{self.resource_id} {self.remote_address} session {self.session_id}>"
        )

    @property
    def subscriptions(self) -> tuple[Topic, ...]:
        return tuple(self._subscriptions.values())

    @property
    def joined(self) -> bool:
        """True from WELCOME until the session ends (False while ``on_open`` runs)."""
        session_id = self.session_id
        return (
            session_id is not None
            and not self._ws.closed
            and self._server._sessions.get(session_id) is self
        )

    # -- Ratchet's WampConnection ------------------------------------------------------------

    def event(self, topic: Topic | str, msg: Any) -> bool:
        """Send ``msg`` as an EVENT of ``topic`` to this session alone (Ratchet's ``event``).

        Only a subscriber can recognise an event, so nothing is sent, and False returned, when
        this session does not subscribe to ``topic`` (a :class:`~ratchetpy.wamp.Topic` or URI).
        """
        uri = topic if isinstance(topic, str) else topic.id
        for subscribed in self._subscriptions.values():
            if subscribed.id == uri:
                return subscribed.broadcast(msg, eligible=(self,)) == 1
        return False

    def call_result(
        self,
        call_id: int,
        result: Any = None,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Answer call ``call_id`` with ``result`` (sent as the only argument) or with
        ``args`` / ``kwargs`` (Ratchet's ``callResult``).

        Answering a call whose caller has left does nothing. Answering one that was answered
        already, or never made, raises :class:`~ratchetpy.LocalProtocolError`: a bug.
        """
        if not self._close_call(call_id):
            return
        if args is None:
            args = [] if result is None else [result]
        self._send_message(Result(call_id, {}, args, kwargs or {}).to_list())

    def call_error(
        self,
        call_id: int,
        error: str,
        desc: str = "",
        details: Any = None,
        *,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Answer call ``call_id`` with the error URI ``error`` (Ratchet's ``callError``).

        ``desc`` (a message for humans) and ``details`` become the error's arguments.
        """
        if not self._close_call(call_id):
            return
        args: list[Any] = []
        if desc or details is not None:
            args.append(desc)
            if details is not None:
                args.append(details)
        self.send_error(CALL, call_id, error, args, kwargs)

    def send_error(
        self,
        request_type: int,
        request_id: int,
        error: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Send an ERROR answering this session's request (low level; see :meth:`call_error`)."""
        message = Error(request_type, request_id, {}, error, args or [], kwargs or {})
        self._send_message(message.to_list())

    # -- Connection interface ------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send a raw, already serialized WAMP message (as Ratchet's ``send``): you probably
        want :meth:`event`, :meth:`call_result` or a topic's ``broadcast``."""
        self._ws.send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the session with a GOODBYE (``wamp.close.normal``), then close the WebSocket
        with ``code`` and ``reason``."""
        self._goodbye(CLOSE_NORMAL, reason)
        self._ws.close(code, reason)

    def _goodbye(self, reason: str, message: str = "") -> None:
        """Send a GOODBYE with the close reason URI ``reason``, if the session is joined."""
        if self.joined:
            details = {"message": message} if message else {}
            self._send_message([GOODBYE, details, reason])

    async def drain(self) -> None:
        await self._ws.drain()

    @property
    def buffered_amount(self) -> int:
        return self._ws.buffered_amount

    @property
    def closed(self) -> bool:
        return self._ws.closed

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        return self._ws.call_later(delay, callback)

    # -- internals -------------------------------------------------------------------------

    def _send_message(self, message: list[Any]) -> None:
        self._ws.send(self._serializer.encode(message))

    def _close_call(self, call_id: int) -> bool:
        """Mark call ``call_id`` answered; False if its session has ended."""
        if not self.joined:
            return False
        if call_id not in self._open_calls:
            raise LocalProtocolError(
                f"call {call_id} of session {self.session_id} is not open: answered already,"
                " or never made"
            )
        if self._open_calls[call_id] is not None:
            raise LocalProtocolError(
                f"call {call_id} was routed to a callee, which answers it; it cannot be answered"
                " here too"
            )
        del self._open_calls[call_id]
        return True
