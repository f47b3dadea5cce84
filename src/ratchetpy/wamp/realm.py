"""A WAMP realm and what lives in it, as a :class:`~ratchetpy.wamp.WampComponent` sees them.

Sessions (:class:`WampConnection`), topics (:class:`Topic`) and procedures (:class:`Procedure`)
are what handlers receive. They hold no routing state of their own: each realm's *broker*
owns who subscribes to what, its *dealer* owns registrations and the calls in flight, and a
topic or a procedure is a view that asks them. This module declares what those two offer
(:class:`TopicManager`, Ratchet's name, and :class:`ProcedureManager`) as protocols, so that it
does not import :mod:`~ratchetpy.wamp.broker` and :mod:`~ratchetpy.wamp.dealer`, which build on
it. No trio here: sessions only call ``send`` / ``close`` / ``call_later`` on their WebSocket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from ..components.base import MaybeAwaitable
from ..components.connection import Connection, Counters, Timer
from .cluster import Route
from .messages import (
    ABORT,
    CALL,
    CLOSE_NORMAL,
    GOODBYE,
    PROTOCOL_VIOLATION,
    Error,
    IdGenerator,
    Result,
)
from .serializers import Serializer

__all__ = [
    "Payload",
    "Procedure",
    "ProcedureManager",
    "Realm",
    "Topic",
    "TopicManager",
    "WampConnection",
]

logger = logging.getLogger("ratchetpy.wamp")


@dataclass(frozen=True, slots=True)
class Payload:
    """What a publication (or a call) carries: positional ``args`` and keyword ``kwargs``.

    WAMP v1, which Ratchet speaks, carried one value per event; v2 carries both lists. A
    Ratchet-style ``topic.broadcast(value)`` sends ``args=[value]``, which AutobahnJS hands to
    the subscriber as ``args[0]``.

    ``publication_id`` is set on the payload a client published, so that the PUBLISHED
    acknowledgement and the events carry the same id; ``None`` asks for a fresh one.

    ``route`` is set by the realm's broker on what a client published when there are other
    workers: how a broadcast of this payload reaches them (the client's filters by user, and
    for an acknowledged publication what must be accepted before PUBLISHED). Leave it unset.
    """

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    publication_id: int | None = None
    route: Route | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, msg: Any) -> Payload:
        """``msg`` itself if it is a payload, else a payload with ``msg`` as its only argument."""
        return msg if isinstance(msg, Payload) else cls([msg])


# -- what the broker and the dealer of a realm offer ---------------------------------------------


@runtime_checkable
class TopicManager(Protocol):
    """The topics of one realm, as its broker keeps them (Ratchet's ``TopicManager``).

    ``manager.get(uri)`` gives the topic if anyone subscribes to it (or a subscription is under
    way); ``manager[uri]`` gives it too, or a view of a topic nobody subscribes to (broadcasting
    to it reaches nobody); iterating yields the topics with subscribers; ``uri in manager``
    and ``len(manager)`` count those. The other methods answer what a :class:`Topic` or a
    session asks.
    """

    def get(self, uri: str) -> Topic | None: ...
    def __getitem__(self, uri: str) -> Topic: ...
    def __contains__(self, uri: object) -> bool: ...
    def __iter__(self) -> Iterator[Topic]: ...
    def __len__(self) -> int: ...

    def by_subscription(self, subscription_id: int) -> Topic | None:
        """The topic known by ``subscription_id`` on the wire."""
        ...

    def subscription_id(self, uri: str) -> int | None:
        """What subscribers know the topic ``uri`` by; ``None`` when nobody subscribes."""
        ...

    def subscribers(self, uri: str) -> tuple[WampConnection, ...]:
        """The sessions subscribed to ``uri``, in subscription order."""
        ...

    def subscriber_count(self, uri: str) -> int: ...

    def is_subscribed(self, uri: str, session: object) -> bool: ...

    def subscriptions_of(self, session: WampConnection) -> tuple[Topic, ...]:
        """The topics ``session`` subscribes to."""
        ...

    def broadcast(
        self,
        uri: str,
        payload: Payload,
        exclude: Iterable[Any],
        eligible: Iterable[Any] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
    ) -> int:
        """Send ``payload`` as an EVENT to the subscribers of ``uri``; see
        :meth:`Topic.broadcast`."""
        ...


@runtime_checkable
class ProcedureManager(Protocol):
    """The procedures of one realm, as its dealer keeps them: a read-only mapping from URI to
    the registered :class:`Procedure`, and what a procedure or a caller asks of the dealer."""

    def get(self, uri: str) -> Procedure | None: ...
    def __getitem__(self, uri: str) -> Procedure: ...
    def __contains__(self, uri: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

    def callee_of(self, uri: str) -> WampConnection | None:
        """The session registered for ``uri``, if any."""
        ...

    def registration_id_of(self, uri: str) -> int | None: ...

    def pending_calls(self, callee: WampConnection) -> int:
        """How many invocations ``callee`` has not answered yet."""
        ...

    def route(
        self,
        uri: str,
        caller: WampConnection,
        call_id: int,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> MaybeAwaitable:
        """Pass the open call ``call_id`` of ``caller`` on to the callee of ``uri``; an
        awaitable if it goes to another worker."""
        ...

    def close_call(self, caller: WampConnection, call_id: int) -> None:
        """Mark ``caller``'s call ``call_id`` answered by the component; raise
        :class:`~ratchetpy.LocalProtocolError` if it is not open for that."""
        ...


# -- topics and procedures: views -----------------------------------------------------------------


class Topic:
    """A topic URI in one realm and the sessions subscribed to it (Ratchet's ``Topic``).

    ``id`` is the URI (``str(topic)`` too); ``len(topic)`` counts subscribers (Ratchet's
    ``count()``); iterating yields the subscribed :class:`WampConnection`\\ s; ``conn in topic``
    tests membership. ``subscription_id`` is what subscribers know the topic by on the wire
    (``None`` for a topic nobody subscribes to). The realm's broker owns all of it; a topic
    object only asks.
    """

    __slots__ = ("id", "realm")

    def __init__(self, uri: str, realm: Realm) -> None:
        self.id = uri
        self.realm = realm

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<Topic {self.id!r} in {self.realm.name!r}: {len(self)} subscribers>"

    def __len__(self) -> int:
        return self.realm.topics.subscriber_count(self.id)

    def __iter__(self) -> Iterator[WampConnection]:
        return iter(self.realm.topics.subscribers(self.id))

    def __contains__(self, conn: object) -> bool:
        return self.realm.topics.is_subscribed(self.id, conn)

    @property
    def subscribers(self) -> tuple[WampConnection, ...]:
        """The subscribed sessions, in subscription order."""
        return self.realm.topics.subscribers(self.id)

    @property
    def subscription_id(self) -> int | None:
        return self.realm.topics.subscription_id(self.id)

    def broadcast(
        self,
        msg: Any,
        exclude: Iterable[Any] = (),
        eligible: Iterable[Any] | None = None,
        *,
        exclude_authid: Iterable[str] = (),
        eligible_authid: Iterable[str] | None = None,
    ) -> int:
        """Send ``msg`` as an EVENT to this topic's subscribers; return how many it went to.

        ``msg`` is a :class:`Payload` or any value (sent as the only argument). ``exclude`` and
        ``eligible`` hold session ids or connections, as in Ratchet; ``eligible=None`` means
        everyone, while an empty ``eligible`` means no one (WAMP v2's meaning; Ratchet treated
        an empty list as everyone). ``exclude_authid`` / ``eligible_authid`` filter by
        authenticated user id (``conn.authid``): the way to reach every tab of one user.

        The event is serialized once per serializer in use and framed once; an unfiltered
        broadcast (or one whose excluded sessions do not subscribe) does no per-subscriber
        Python work beyond queuing the frame. If the payload cannot be encoded for one of the
        recipients' serializers (say, an int beyond 64 bits for msgpack),
        :class:`~ratchetpy.EncodeError` is raised and nobody receives it. Not a checkpoint;
        slow subscribers are handled as by ``send``.
        """
        return self.realm.topics.broadcast(
            self.id, Payload.of(msg), exclude, eligible, exclude_authid, eligible_authid
        )


class Procedure:
    """A procedure URI in one realm and the callee registered for it, if any.

    ``id`` is the URI (``str(procedure)`` too); ``callee`` the registered
    :class:`WampConnection` or ``None``; ``registration_id`` what the callee knows it by.
    Ratchet's ``onCall`` received such an object as ``$topic``. The realm's dealer owns the
    registration; a procedure object only asks.
    """

    __slots__ = ("id", "realm")

    def __init__(self, uri: str, realm: Realm) -> None:
        self.id = uri
        self.realm = realm

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        callee = self.callee
        who = f"session {callee.session_id}" if callee is not None else "no callee"
        return f"<Procedure {self.id!r} in {self.realm.name!r}: {who}>"

    @property
    def callee(self) -> WampConnection | None:
        return self.realm.procedures.callee_of(self.id)

    @property
    def registration_id(self) -> int | None:
        return self.realm.procedures.registration_id_of(self.id)

    def call(
        self,
        caller: WampConnection,
        call_id: int,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> MaybeAwaitable:
        """Route an open call to the registered callee (what the default ``on_call`` does).

        Without a callee the caller gets ``wamp.error.no_such_procedure``. The callee's YIELD
        or ERROR becomes the caller's RESULT or ERROR. Not a checkpoint.

        With other workers, a callee registered on another one is reached through the broker:
        then an awaitable is returned, which sends the call. Return it from ``on_call`` (or
        await it there); if ``on_call`` drops it, the router sends the call once ``on_call``
        returned. Routing a call later (from a timer) requires awaiting it.
        """
        return self.realm.procedures.route(self.id, caller, call_id, args or [], kwargs or {})


# -- realms -------------------------------------------------------------------------------------


class Realm:
    """A WAMP routing namespace: its sessions, its topics and its procedures.

    Sessions only meet others of their realm: a publication reaches subscribers of the same
    realm, a call reaches a callee of the same realm. ``topics`` (a :class:`TopicManager`) and
    ``procedures`` (a :class:`ProcedureManager`) are the realm's broker and dealer, which
    ``make_broker`` and ``make_dealer`` build for it; ``sessions`` maps the ids of the joined
    sessions to them (read-only: sessions join and leave through the router).
    """

    __slots__ = ("_sessions", "name", "procedures", "sessions", "topics")

    def __init__(
        self,
        name: str,
        make_broker: Callable[[Realm], TopicManager],
        make_dealer: Callable[[Realm], ProcedureManager],
    ) -> None:
        self.name = name
        self._sessions: dict[int, WampConnection] = {}
        self.sessions: Mapping[int, WampConnection] = MappingProxyType(self._sessions)
        self.topics = make_broker(self)
        self.procedures = make_dealer(self)

    def __repr__(self) -> str:
        return f"<Realm {self.name!r}: {len(self._sessions)} sessions>"

    def add(self, session: WampConnection) -> None:
        """``session`` has joined (it has its session id)."""
        assert session.session_id is not None
        self._sessions[session.session_id] = session

    def remove(self, session: WampConnection) -> bool:
        """``session`` leaves; False if it was not joined here."""
        session_id = session.session_id
        if session_id is None or self._sessions.get(session_id) is not session:
            return False
        del self._sessions[session_id]
        return True

    def has(self, session: WampConnection) -> bool:
        session_id = session.session_id
        return session_id is not None and self._sessions.get(session_id) is session


# -- sessions -----------------------------------------------------------------------------------


class WampConnection(Connection):
    """One client's WAMP session, wrapping its WebSocket connection (Ratchet's
    ``WampConnection``).

    Beyond the usual connection attributes (``resource_id``, ``remote_address``,
    ``http_request``, ``user_id``, ``session``, your own attributes):

    ``session_id``
        The WAMP session id while the session is joined, else ``None`` (Ratchet's
        ``$conn->WAMP->sessionId``).
    ``realm``
        The :class:`Realm` joined (set from HELLO, before ``on_open``).
    ``authid``
        The authenticated user id (what an :class:`~ratchetpy.Authenticate` hook returned),
        or ``None`` for an anonymous session; announced to the client in WELCOME.
    ``roles``
        The roles the client announced in HELLO (``{"subscriber": {...}, ...}``).
    ``subscriptions``
        The topics this session subscribes to.
    """

    def __init__(self, ws: Connection, serializer: Serializer) -> None:
        self.resource_id = ws.resource_id
        self.remote_address = ws.remote_address
        self.http_request = ws.http_request
        self.subprotocol = ws.subprotocol
        self.secure = ws.secure
        self.session_id: int | None = None
        self.realm: Realm | None = None
        self.authid: str | None = ws.user_id
        self.roles: Mapping[str, Any] = {}
        self._ws = ws
        self._serializer = serializer
        self._request_ids = IdGenerator()

    def __repr__(self) -> str:
        return (
            f"<WampConnection #{self.resource_id} {self.remote_address} session {self.session_id}>"
        )

    @property
    def websocket(self) -> Connection:
        """The WebSocket connection this session runs on."""
        return self._ws

    @property
    def counters(self) -> Counters | None:
        """The running totals of the server this session's WebSocket is on (``None`` for a
        WebSocket of no server): what a WAMP handler's error is counted in."""
        counters: Counters | None = getattr(self._ws, "counters", None)
        return counters

    @property
    def serializer(self) -> Serializer:
        """The serializer the client chose (by subprotocol)."""
        return self._serializer

    @property
    def subscriptions(self) -> tuple[Topic, ...]:
        realm = self.realm
        return () if realm is None else realm.topics.subscriptions_of(self)

    @property
    def joined(self) -> bool:
        """True from WELCOME until the session ends (False while ``on_open`` runs)."""
        realm = self.realm
        return realm is not None and not self._ws.closed and realm.has(self)

    # -- the session's lifecycle, driven by the router --------------------------------------

    def join(self, realm: Realm, session_id: int, roles: Mapping[str, Any]) -> None:
        """HELLO was accepted so far: this session is ``session_id`` in ``realm`` (WELCOME
        follows once ``on_open`` agrees)."""
        self.realm = realm
        self.session_id = session_id
        self.roles = roles

    def move_to(self, realm: Realm) -> None:
        """The router keeps ``realm`` under this session's realm's name instead (an open realm
        that another session created while this one's ``on_open`` ran)."""
        self.realm = realm

    def leave(self) -> None:
        """The session ended (or never started): no session id, no realm any more."""
        self.session_id = None
        self.realm = None

    def next_request_id(self) -> int:
        """The next id of a request the router makes to this client (an INVOCATION)."""
        return self._request_ids.next()

    # -- Ratchet's WampConnection ------------------------------------------------------------

    def event(self, topic: Topic | str, msg: Any) -> bool:
        """Send ``msg`` as an EVENT of ``topic`` to this session alone (Ratchet's ``event``).

        Only a subscriber can recognise an event, so nothing is sent, and False returned, when
        this session does not subscribe to ``topic`` (a :class:`Topic` or URI).
        """
        realm = self.realm
        uri = topic if isinstance(topic, str) else topic.id
        if realm is None or not realm.topics.is_subscribed(uri, self):
            return False
        return realm.topics[uri].broadcast(msg, eligible=(self,)) == 1

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
        self.send_message(Result(call_id, {}, args, kwargs or {}).to_list())

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
        self.send_message(message.to_list())

    def send_message(self, message: list[Any]) -> None:
        """Serialize a WAMP message (a list) for this client and send it (low level). Raises
        :class:`~ratchetpy.EncodeError` for values the client's serializer cannot carry."""
        self._ws.send(self._serializer.encode(message))

    def goodbye(self, reason: str, message: str = "") -> None:
        """Send a GOODBYE with the close reason URI ``reason``, if the session is joined."""
        if self.joined:
            details = {"message": message} if message else {}
            self.send_message([GOODBYE, details, reason])

    def abort(self, reason: str, message: str, *, close_code: int = 1002) -> None:
        """End the session with an ABORT (reason URI ``reason``) and close the WebSocket: with
        ``close_code`` for a protocol violation, 1000 for any other reason."""
        if reason == PROTOCOL_VIOLATION:
            logger.info(
                "connection #%s from %s broke the WAMP protocol: %s",
                self.resource_id,
                self.remote_address,
                message,
            )
        else:
            close_code = 1000
        if not self._ws.closed:
            self.send_message([ABORT, {"message": message} if message else {}, reason])
            self._ws.close(close_code, _close_reason(reason))

    # -- Connection interface ------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send a raw, already serialized WAMP message (as Ratchet's ``send``): you probably
        want :meth:`event`, :meth:`call_result` or a topic's ``broadcast``."""
        self._ws.send(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the session with a GOODBYE (``wamp.close.normal``), then close the WebSocket
        with ``code`` and ``reason``."""
        self.goodbye(CLOSE_NORMAL, reason)
        self._ws.close(code, reason)

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

    def _close_call(self, call_id: int) -> bool:
        """Mark call ``call_id`` answered; False if this session has ended."""
        realm = self.realm
        if realm is None or not self.joined:
            return False
        realm.procedures.close_call(self, call_id)
        return True


def _close_reason(text: str) -> str:
    """``text`` cut to the 123 UTF-8 bytes a close frame's reason may hold."""
    data = text.encode("utf-8")
    return text if len(data) <= 123 else data[:123].decode("utf-8", "ignore")
