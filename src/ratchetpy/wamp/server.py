"""WampServer: a WAMP v2 router (Basic Profile broker and dealer) as a ratchetpy component.

``WsServer(WampServer(MyApp()))``, as in Ratchet, or ``App.route("/ws", MyApp())``. The
WebSocket subprotocol (``wamp.2.json`` or ``wamp.2.msgpack``) picks the serializer. Every client
message goes: serializer -> :func:`~ratchetpy.wamp.messages.parse` (the trust boundary) -> the
session state machine here -> the realm's :class:`~ratchetpy.wamp.broker.Broker` or
:class:`~ratchetpy.wamp.dealer.Dealer` -> the user's :class:`~ratchetpy.wamp.WampComponent`. No
trio: like every component, this only calls ``send`` / ``close`` / ``call_later`` on
connections.

Faults, and who hears of them:

* undecodable data or a malformed message: ABORT (``wamp.error.protocol_violation`` with the
  reason), then the WebSocket is closed (1007/1003 for undecodable data, 1002 otherwise);
* a bad URI in a request: an ERROR (``wamp.error.invalid_uri``) for that request only;
* a refused request (:class:`~ratchetpy.WampError` from a handler, unknown subscription,
  procedure taken, ...): an ERROR with the matching standard URI;
* a handler that raises anything else: ``wamp.error.runtime_error`` to the client, the
  exception to the component's ``on_error``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, cast

from .._version import __version__
from ..broker import MemoryBroker, MessageBroker, PresenceEvent, current_broker
from ..components.base import MaybeAwaitable, MessageComponent, report_error
from ..components.connection import Connection, Timer
from ..exceptions import InvalidUri, ProtocolViolation, SerializationError, WampError
from ._flow import log_failure, run_handler, sequence
from .broker import Broker
from .cluster import Route, sessions_scope
from .component import WampComponent
from .dealer import Dealer
from .messages import (
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVALID_URI,
    NO_SUCH_REALM,
    PROTOCOL_VIOLATION,
    PUBLISH,
    RUNTIME_ERROR,
    Abort,
    Call,
    ClientMessage,
    Error,
    Goodbye,
    Hello,
    IdGenerator,
    Publish,
    Register,
    Subscribe,
    Unregister,
    Unsubscribe,
    Welcome,
    Yield,
    parse,
)
from .meta import ON_JOIN, ON_LEAVE, ON_USER_OFFLINE, ON_USER_ONLINE, details_of
from .meta import PROCEDURES as META_PROCEDURES
from .meta import answer as answer_meta
from .realm import Payload, Realm, Topic, WampConnection
from .serializers import SERIALIZERS, Serializer

__all__ = ["CLOSE_SYSTEM_SHUTDOWN", "WampServer"]

logger = logging.getLogger("ratchetpy.wamp")

#: GOODBYE reason when the router shuts down.
CLOSE_SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"

_SESSIONS = sessions_scope("")  # the prefix of every realm's sessions scope
_BROKER_FEATURES = {"publisher_exclusion": True, "subscriber_blackwhite_listing": True}
_ROUTER_ROLES = {"broker": {"features": _BROKER_FEATURES}, "dealer": {"features": {}}}


class WampServer(MessageComponent):
    """Serve ``component`` (a :class:`~ratchetpy.wamp.WampComponent`; by default a plain
    broker and dealer) as a WAMP v2 router. Wrap it in :class:`~ratchetpy.WsServer`.

    Options (keyword-only):

    ``realms``
        Realm names clients may join (default ``["realm1"]``); others get an ABORT with
        ``wamp.error.no_such_realm``. ``None`` accepts any realm name.
    ``serializers``
        Subprotocols to speak, in order of preference (default ``wamp.2.json``,
        ``wamp.2.msgpack``). A client that offers none of them is refused at the handshake.
    ``hello_timeout``
        Seconds a client has after connecting to send HELLO (default 10); then it is closed.
    ``max_subscriptions`` / ``max_registrations``
        Per session (defaults 1000 / 100): what one client can make the router remember.
    ``max_pending_calls``
        Calls in flight per callee (default 1000); more are refused
        (``ratchetpy.error.limit_exceeded``) rather than queued without bound.

    Each realm's broker and dealer get these limits when the realm is made.
    """

    subprotocol_required = True
    # Events fan out: compressing each message on its own lets one compressed frame serve
    # every subscriber (WsServer asks for server_no_context_takeover).
    compression_context_takeover = False

    def __init__(
        self,
        component: WampComponent | None = None,
        *,
        realms: Iterable[str] | None = ("realm1",),
        serializers: Iterable[str] | None = None,
        hello_timeout: float = 10.0,
        max_subscriptions: int = 1000,
        max_registrations: int = 100,
        max_pending_calls: int = 1000,
        meta_api: bool = True,
    ) -> None:
        self.component = component if component is not None else WampComponent()
        self.agent = f"ratchetpy-{__version__}"
        names = list(serializers) if serializers is not None else list(SERIALIZERS)
        for name in names:
            if name not in SERIALIZERS:
                raise ValueError(f"unknown WAMP serializer {name!r}; known: {list(SERIALIZERS)}")
        self._serializers: dict[str, Serializer] = {name: SERIALIZERS[name] for name in names}
        self.subprotocols = tuple(names)
        self.hello_timeout = hello_timeout
        self.max_subscriptions = max_subscriptions
        self.max_registrations = max_registrations
        self.max_pending_calls = max_pending_calls
        self.meta_api = meta_api
        self._realms: dict[str, Realm] = {name: self._new_realm(name) for name in realms or ()}
        self._open_realms = realms is None
        self._configured_realms = frozenset(self._realms)
        self._connections: dict[Connection, WampConnection] = {}
        self._hello_timers: dict[WampConnection, Timer] = {}
        self._sessions: dict[int, WampConnection] = {}
        self._by_user: dict[str, dict[WampConnection, None]] = {}
        self._hooked: list[MessageBroker] = []  # brokers that tell this router what was missed
        self._alone = MemoryBroker()  # the broker of a router driven outside any server
        # realms whose sessions' presence this router follows, and through which broker
        self._meta_listening: dict[str, MessageBroker] = {}
        # Totals for the server's metrics (the gauges are counted from the realms).
        self._publications = 0
        self._calls = 0

    # -- server-side API -------------------------------------------------------------------

    @property
    def realms(self) -> Mapping[str, Realm]:
        """The realms served, by name (read-only; with ``realms=None``, those in use)."""
        return MappingProxyType(self._realms)

    def realm(self, name: str | None = None) -> Realm:
        """The realm ``name``; ``None`` means the first configured realm.

        With ``realms=None`` a realm exists while sessions are in it; for a name nobody is in,
        this returns an empty realm that is not kept. Raises ValueError for a name that is
        not served.
        """
        if name is None:
            if not self._realms:
                raise ValueError("no realm configured: name the realm")
            return next(iter(self._realms.values()))
        realm = self._realms.get(name)
        if realm is None:
            if not self._open_realms:
                raise ValueError(f"no realm {name!r}; realms: {list(self._realms)}")
            realm = self._new_realm(name)  # kept from the first WELCOME in it
        return realm

    def publish(
        self,
        topic: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        realm: str | None = None,
        exclude: Iterable[Any] = (),
        eligible: Iterable[Any] | None = None,
        exclude_authid: Iterable[str] = (),
        eligible_authid: Iterable[str] | None = None,
        publication_id: int | None = None,
    ) -> int:
        """Publish from the server itself (a timer, the HTTP publish endpoint, your code) to
        the subscribers of ``topic`` in ``realm``; return how many it reached.

        Goes straight to the subscribers, not through ``on_publish``: that handler vets what
        clients publish, and the server speaks with its own authority. Not a checkpoint.
        """
        payload = Payload(list(args or []), dict(kwargs or {}), publication_id)
        return self.realm(realm).topics.broadcast(
            topic, payload, exclude, eligible, exclude_authid, eligible_authid
        )

    async def publish_accepted(
        self,
        topic: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        realm: str | None = None,
        exclude: Iterable[Any] = (),
        eligible: Iterable[Any] | None = None,
        exclude_authid: Iterable[str] = (),
        eligible_authid: Iterable[str] | None = None,
        publication_id: int | None = None,
    ) -> int:
        """:meth:`publish`, then wait until the broker to the other workers accepted the
        publication; returns how many of this worker's subscribers it reached.

        A checkpoint with other workers. Raises :class:`~ratchetpy.BrokerError` if the broker
        did not accept it within its buffer time: this worker's subscribers got it, the
        others' did not. One process: the same as :meth:`publish`.
        """
        route = Route({}, acknowledged=True)
        payload = Payload(list(args or []), dict(kwargs or {}), publication_id, route=route)
        broker = _broker(self.realm(realm))
        receivers = broker.broadcast(
            topic, payload, exclude, eligible, exclude_authid, eligible_authid
        )
        await broker.pass_on(route)
        return receivers

    def connections_of(self, authid: str) -> tuple[WampConnection, ...]:
        """The joined sessions of the user ``authid`` on this worker: every tab and device
        they have open here (:meth:`sessions_of` covers every worker)."""
        return tuple(self._by_user.get(authid, ()))

    async def sessions_of(self, authid: str, *, realm: str | None = None) -> list[dict[str, Any]]:
        """The session details (as ``wamp.session.get`` gives them) of every session of user
        ``authid`` in ``realm`` on every worker, from the broker's presence.

        A checkpoint with other workers; :class:`~ratchetpy.BrokerError` if the broker could
        not tell. To send to all of them, publish with ``eligible_authid=[authid]``: that
        reaches them wherever they are. Empty without the meta API (``meta_api=False``).
        """
        chosen = self.realm(realm)
        cluster = _broker(chosen).cluster
        if cluster is None or not self.meta_api:
            return []
        entries = await cluster.presence(sessions_scope(chosen.name))
        found: list[dict[str, Any]] = [
            json.loads(entry.info) for entry in entries if entry.user == authid
        ]
        return sorted(found, key=lambda details: details["session"])

    @property
    def sessions(self) -> dict[int, WampConnection]:
        """Joined sessions by session id (a copy)."""
        return dict(self._sessions)

    def metrics(self) -> dict[str, int]:
        """What the server's metrics report of this router: sessions joined, topics with
        subscribers, subscriptions (a session's to a topic), registered procedures, and the
        PUBLISH and CALL messages received since it started. Not a checkpoint."""
        realms = list(self._realms.values())
        return {
            "wamp_sessions": len(self._sessions),
            "wamp_topics": sum(len(realm.topics) for realm in realms),
            "wamp_subscriptions": sum(len(topic) for realm in realms for topic in realm.topics),
            "wamp_registrations": sum(len(realm.procedures) for realm in realms),
            "wamp_publications": self._publications,
            "wamp_calls": self._calls,
        }

    # -- MessageComponent interface (called by WsServer) -------------------------------------

    def on_open(self, conn: Connection) -> MaybeAwaitable:
        counters = getattr(conn, "counters", None)
        if counters is not None:
            counters.add_source(self)
        serializer = self._serializers.get(conn.subprotocol or "")
        if serializer is None:  # WsServer refuses these at the handshake; be safe anyway
            conn.close(1002, "no WAMP subprotocol negotiated")
            return None
        self._await_hello(WampConnection(conn, serializer))
        return None

    def on_message(self, conn: Connection, msg: Any) -> MaybeAwaitable:
        session = self._connections.get(conn)
        if session is None or session.closed:
            return None
        try:
            message = parse(session.serializer.decode(msg))
        except SerializationError as exc:
            session.abort(PROTOCOL_VIOLATION, str(exc), close_code=exc.close_code)
            return None
        except InvalidUri as exc:
            self._invalid_uri(session, exc, msg)
            return None
        except ProtocolViolation as exc:
            session.abort(PROTOCOL_VIOLATION, str(exc))
            return None
        if session.session_id is None:
            if type(message) is Hello:
                return self._hello(session, message)
            if type(message) is Abort:
                session.websocket.close()
                return None
            expected = f"expected HELLO, got {type(message).__name__.upper()}"
            session.abort(PROTOCOL_VIOLATION, expected)
            return None
        handler = self._HANDLERS.get(type(message))
        if handler is None:  # HELLO again
            session.abort(PROTOCOL_VIOLATION, "HELLO received in an established session")
            return None
        return handler(self, session, message)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        session = self._connections.pop(conn, None)
        if session is None:
            return None
        self._stop_waiting_for_hello(session)
        return self._leave(session)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        session = self._connections.get(conn)
        if session is None:
            logger.error("error on connection #%s", conn.resource_id, exc_info=exc)
            conn.close(1011, "internal error")
            return None
        return report_error(self.component, session, exc)

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        """Say GOODBYE (``wamp.close.system_shutdown``) before the WebSocket closes."""
        session = self._connections.get(conn)
        if session is not None:
            session.goodbye(CLOSE_SYSTEM_SHUTDOWN, reason)
        conn.close(code, reason)

    # -- session lifecycle -------------------------------------------------------------------

    def _new_realm(self, name: str) -> Realm:
        def broker(realm: Realm) -> Broker:
            return Broker(
                realm,
                self.component,
                max_subscriptions=self.max_subscriptions,
                track_subscribers=self.meta_api,
            )

        def dealer(realm: Realm) -> Dealer:
            return Dealer(
                realm,
                self.component,
                max_registrations=self.max_registrations,
                max_pending_calls=self.max_pending_calls,
            )

        return Realm(name, broker, dealer)

    def _sessions_changed(self, event: PresenceEvent) -> None:
        """A session joined or left a realm on some worker (or vanished with a worker that
        died): this worker's subscribers of the meta events hear it. Every worker gets the
        event, so each tells only its own subscribers."""
        realm = self._realms.get(event.scope.removeprefix(_SESSIONS))
        if realm is None:
            return
        if event.kind in ("online", "offline"):
            topic = ON_USER_ONLINE if event.kind == "online" else ON_USER_OFFLINE
            _broker(realm).deliver_here(topic, [event.user])
            return
        if event.member is None or not event.member.isdigit():
            return
        if event.kind == "join":
            _broker(realm).deliver_here(ON_JOIN, [json.loads(event.info)])
        elif event.kind == "leave":
            leaving = [int(event.member), event.user, _auth_of(event.user)[0]]
            _broker(realm).deliver_here(ON_LEAVE, leaving)

    def _missed(self, channel: str) -> None:
        for realm in list(self._realms.values()):
            _dealer(realm).missed(channel)

    def _await_hello(self, session: WampConnection) -> None:
        """``session`` is the one on its WebSocket now; it has ``hello_timeout`` to join."""
        ws = session.websocket
        self._connections[ws] = session
        if self.hello_timeout:
            timer = ws.call_later(self.hello_timeout, lambda: self._hello_missing(session))
            self._hello_timers[session] = timer

    def _stop_waiting_for_hello(self, session: WampConnection) -> None:
        timer = self._hello_timers.pop(session, None)
        if timer is not None:
            timer.cancel()

    def _hello_missing(self, session: WampConnection) -> None:
        self._hello_timers.pop(session, None)
        if session.session_id is None and session.realm is None and not session.closed:
            logger.info(
                "connection #%s from %s sent no HELLO within %g s; closing",
                session.resource_id,
                session.remote_address,
                self.hello_timeout,
            )
            session.websocket.close(1008, "no WAMP HELLO in time")

    def _hello(self, session: WampConnection, hello: Hello) -> MaybeAwaitable:
        if session.realm is not None:  # on_open of an earlier HELLO still runs
            session.abort(PROTOCOL_VIOLATION, "HELLO sent twice")
            return None
        try:
            realm = self.realm(hello.realm)
        except ValueError:
            known = ", ".join(self._realms)
            session.abort(NO_SUCH_REALM, f"no realm {hello.realm!r} here (realms: {known})")
            return None
        self._stop_waiting_for_hello(session)
        session.join(realm, IdGenerator.random(self._sessions), hello.details["roles"])

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is None and not session.closed:
                self._welcome(session)
                return None
            # Refused, failed or gone: this session never starts, whatever happens next.
            session.leave()
            if isinstance(exc, WampError):
                logger.info("session from %s refused by on_open: %s", session.remote_address, exc)
                session.abort(exc.error, str(exc.error_args[0]) if exc.error_args else "")
            elif exc is not None:
                session.abort(RUNTIME_ERROR, "internal error")
                return report_error(self.component, session, exc)
            return None

        return run_handler(self.component.on_open, (session,), done)

    def _welcome(self, session: WampConnection) -> None:
        realm, session_id = session.realm, session.session_id
        assert realm is not None and session_id is not None
        # An open realm is kept while someone is in it (another session may have made it
        # first while this one's on_open ran).
        kept = self._realms.setdefault(realm.name, realm)
        if kept is not realm:
            session.move_to(kept)
        self._sessions[session_id] = session
        kept.add(session)
        # The realm reaches the other workers through its server's broker, known here. A
        # session joins outside any server only when the router is driven by hand (tests):
        # nothing serves, so there are no other workers (and presence is this router's own).
        cluster = current_broker() or self._alone
        _broker(kept).bind(cluster)
        _dealer(kept).bind(cluster)
        if cluster.distributed and cluster not in self._hooked:
            self._hooked.append(cluster)
            cluster.on_missed(self._missed)
        authid = session.authid
        if authid is not None:
            self._by_user.setdefault(authid, {})[session] = None
        authrole, authmethod = _auth_of(authid)
        details: dict[str, Any] = {
            "roles": _ROUTER_ROLES,
            "realm": kept.name,
            "authrole": authrole,
            "authmethod": authmethod,
            "agent": self.agent,
        }
        if authid is not None:
            details["authid"] = authid
        session.send_message(Welcome(session_id, details).to_list())
        if self.meta_api:
            scope = sessions_scope(kept.name)
            if kept.name not in self._meta_listening:
                self._meta_listening[kept.name] = cluster
                cluster.on_presence(scope, self._sessions_changed)
            meta = json.dumps(details_of(session, authrole, authmethod))
            cluster.present(scope, str(session_id), user=authid, info=meta)
        logger.info(
            "WAMP session %s joined %r from %s (connection #%s%s)",
            session_id,
            kept.name,
            session.remote_address,
            session.resource_id,
            f", user {authid}" if authid else "",
        )

    def _leave(self, session: WampConnection) -> MaybeAwaitable:
        """End a joined session: unsubscribe, unregister, settle calls, ``on_close``."""
        session_id, realm = session.session_id, session.realm
        if session_id is None or realm is None or self._sessions.get(session_id) is not session:
            return None
        del self._sessions[session_id]
        realm.remove(session)
        if session.authid is not None:
            same_user = self._by_user.get(session.authid)
            if same_user is not None:
                same_user.pop(session, None)
                if not same_user:
                    del self._by_user[session.authid]
        topics = _broker(realm).remove(session)
        released = _dealer(realm).remove(session)
        cluster = self._meta_listening.get(realm.name)
        if cluster is not None:
            cluster.absent(sessions_scope(realm.name), str(session_id))
        if (
            self._open_realms
            and not realm.sessions
            and realm.name not in self._configured_realms
            and self._realms.get(realm.name) is realm
        ):
            del self._realms[realm.name]  # memory follows the realms in use
            listening = self._meta_listening.pop(realm.name, None)
            if listening is not None:
                listening.off_presence(sessions_scope(realm.name), self._sessions_changed)
            _dealer(realm).detach()
        component = self.component
        log_only = log_failure(component, session)

        def unsubscribed(topic: Topic) -> Callable[[], MaybeAwaitable]:
            return lambda: run_handler(component.on_unsubscribe, (session, topic), log_only)

        def closed() -> MaybeAwaitable:
            def done(exc: Exception | None) -> MaybeAwaitable:
                session.leave()  # only now: on_close still sees which session ended
                return log_only(exc)

            return run_handler(component.on_close, (session,), done)

        return sequence([lambda: released, *(unsubscribed(topic) for topic in topics), closed])

    # -- requests ----------------------------------------------------------------------------

    def _invalid_uri(self, session: WampConnection, exc: InvalidUri, raw: Any) -> None:
        if session.session_id is None or exc.request_type == HELLO or exc.request_id is None:
            reason = INVALID_URI if exc.request_type == HELLO else PROTOCOL_VIOLATION
            session.abort(reason, str(exc))
            return
        if exc.request_type == PUBLISH and not _acknowledged(session, raw):
            logger.info("session %s published to an invalid URI: %s", session.session_id, exc)
            return
        session.send_error(exc.request_type, exc.request_id, INVALID_URI, [str(exc)])

    def _goodbye(self, session: WampConnection, message: Goodbye) -> MaybeAwaitable:
        session.send_message([GOODBYE, {}, GOODBYE_AND_OUT])
        logger.info("WAMP session %s left: %s", session.session_id, message.reason)
        # The connection may stay for a new session (a new HELLO): that is a new
        # WampConnection, so that nothing held from this session (an open call's id, a
        # reference kept by the component) can reach the next one.
        ws = session.websocket
        if self._connections.get(ws) is session:
            self._await_hello(WampConnection(ws, session.serializer))
        return self._leave(session)

    def _client_abort(self, session: WampConnection, message: Abort) -> MaybeAwaitable:
        logger.info("WAMP session %s aborted by the client: %s", session.session_id, message.reason)
        session.websocket.close()
        return self._leave(session)

    def _subscribe(self, session: WampConnection, message: Subscribe) -> MaybeAwaitable:
        return _broker(session.realm).subscribe(session, message)

    def _unsubscribe(self, session: WampConnection, message: Unsubscribe) -> MaybeAwaitable:
        return _broker(session.realm).unsubscribe(session, message)

    def _publish(self, session: WampConnection, message: Publish) -> MaybeAwaitable:
        self._publications += 1
        return _broker(session.realm).publish(session, message)

    def _register(self, session: WampConnection, message: Register) -> MaybeAwaitable:
        return _dealer(session.realm).register(session, message)

    def _unregister(self, session: WampConnection, message: Unregister) -> MaybeAwaitable:
        return _dealer(session.realm).unregister(session, message)

    def _call(self, session: WampConnection, message: Call) -> MaybeAwaitable:
        self._calls += 1
        topics = _broker(session.realm)
        cluster = topics.cluster
        if self.meta_api and message.procedure in META_PROCEDURES and cluster is not None:
            return answer_meta(session, message, topics, cluster)
        return _dealer(session.realm).call(session, message)

    def _yield(self, session: WampConnection, message: Yield) -> MaybeAwaitable:
        _dealer(session.realm).yield_result(session, message)
        return None

    def _callee_error(self, session: WampConnection, message: Error) -> MaybeAwaitable:
        _dealer(session.realm).callee_error(session, message)
        return None

    _HANDLERS: ClassVar[dict[type[ClientMessage], Callable[..., MaybeAwaitable]]] = {
        Subscribe: _subscribe,
        Unsubscribe: _unsubscribe,
        Publish: _publish,
        Register: _register,
        Unregister: _unregister,
        Call: _call,
        Yield: _yield,
        Error: _callee_error,
        Goodbye: _goodbye,
        Abort: _client_abort,
    }


def _auth_of(authid: str | None) -> tuple[str, str]:
    """The authrole and authmethod of a session of user ``authid``."""
    return ("anonymous", "anonymous") if authid is None else ("user", "http")


def _broker(realm: Realm | None) -> Broker:
    # Every realm is made by _new_realm, with a Broker as its TopicManager.
    assert realm is not None
    return cast(Broker, realm.topics)


def _dealer(realm: Realm | None) -> Dealer:
    # ... and a Dealer as its ProcedureManager.
    assert realm is not None
    return cast(Dealer, realm.procedures)


def _acknowledged(session: WampConnection, raw: Any) -> bool:
    """Whether a PUBLISH that failed to parse asked for an acknowledgement."""
    try:
        options = session.serializer.decode(raw)[2]
    except Exception:
        return False
    return isinstance(options, dict) and options.get("acknowledge") is True
