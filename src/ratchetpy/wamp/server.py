"""WampServer: a WAMP v2 router (Basic Profile broker and dealer) as a ratchetpy component.

``WsServer(WampServer(MyApp()))``, as in Ratchet, or ``App.route("/ws", MyApp())``. The
WebSocket subprotocol (``wamp.2.json`` or ``wamp.2.msgpack``) picks the serializer. Every client
message goes: serializer -> :func:`~ratchetpy.wamp.parse` (the trust boundary) -> the session
state machine here -> the user's :class:`~ratchetpy.wamp.WampComponent`. No trio: like every
component, this only calls ``send`` / ``close`` / ``call_later`` on connections.

Faults, and who hears of them:

* undecodable data or a malformed message: ABORT (``wamp.error.protocol_violation`` with the
  reason), then the WebSocket is closed (1007/1003 for undecodable data, 1002 otherwise);
* a bad URI in a request: an ERROR (``wamp.error.invalid_uri``) for that request only;
* a refused request (:class:`~ratchetpy.wamp.WampError` from a handler, unknown subscription,
  procedure taken, ...): an ERROR with the matching standard URI;
* a handler that raises anything else: ``wamp.error.runtime_error`` to the client, the
  exception to the component's ``on_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from .._version import __version__
from ..components.base import MaybeAwaitable, MessageComponent, report_error
from ..components.connection import Connection
from ..exceptions import EncodeError, InvalidUri, ProtocolViolation, SerializationError, WampError
from . import _pubsub, _rpc
from ._flow import run_handler, sequence
from .broker import Payload, Topic, TopicManager
from .component import WampComponent
from .connection import WampConnection
from .dealer import Procedure, cancel_calls_of
from .messages import (
    ABORT,
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVALID_ARGUMENT,
    INVALID_URI,
    NO_SUCH_REALM,
    PROTOCOL_VIOLATION,
    PUBLISH,
    RUNTIME_ERROR,
    Abort,
    Call,
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
from .serializers import SERIALIZERS, Serializer

__all__ = ["CLOSE_SYSTEM_SHUTDOWN", "Realm", "WampServer"]

logger = logging.getLogger("ratchetpy.wamp")

#: GOODBYE reason when the router shuts down.
CLOSE_SYSTEM_SHUTDOWN = "wamp.close.system_shutdown"

_BROKER_FEATURES = {"publisher_exclusion": True, "subscriber_blackwhite_listing": True}
_ROUTER_ROLES = {"broker": {"features": _BROKER_FEATURES}, "dealer": {"features": {}}}


class Realm:
    """A WAMP routing namespace: its sessions, topics (:class:`TopicManager`) and procedures.

    Sessions only meet others of their realm: a publication reaches subscribers of the same
    realm, a call reaches a callee of the same realm.
    """

    __slots__ = ("name", "procedures", "sessions", "topics")

    def __init__(self, name: str) -> None:
        self.name = name
        self.topics = TopicManager(self)
        self.procedures: dict[str, Procedure] = {}
        self.sessions: dict[int, WampConnection] = {}

    def __repr__(self) -> str:
        return f"<Realm {self.name!r}: {len(self.sessions)} sessions>"


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
    ) -> None:
        self.component = component if component is not None else WampComponent()
        self.agent = f"ratchetpy-{__version__}"
        names = list(serializers) if serializers is not None else list(SERIALIZERS)
        for name in names:
            if name not in SERIALIZERS:
                raise ValueError(f"unknown WAMP serializer {name!r}; known: {list(SERIALIZERS)}")
        self._serializers: dict[str, Serializer] = {name: SERIALIZERS[name] for name in names}
        self.subprotocols = tuple(names)
        self.realms: dict[str, Realm] = {}
        self._open_realms = realms is None
        for name in realms or ():
            self.realms[name] = Realm(name)
        self._configured_realms = frozenset(self.realms)
        self.hello_timeout = hello_timeout
        self.max_subscriptions = max_subscriptions
        self.max_registrations = max_registrations
        self.max_pending_calls = max_pending_calls
        self._connections: dict[Connection, WampConnection] = {}
        self._sessions: dict[int, WampConnection] = {}
        self._by_user: dict[str, dict[WampConnection, None]] = {}

    # -- server-side API -------------------------------------------------------------------

    def realm(self, name: str | None = None) -> Realm:
        """The realm ``name``; ``None`` means the first configured realm.

        With ``realms=None`` a realm exists while sessions are in it; for a name nobody is in,
        this returns an empty realm that is not kept. Raises ValueError for a name that is
        not served.
        """
        if name is None:
            if not self.realms:
                raise ValueError("no realm configured: name the realm")
            return next(iter(self.realms.values()))
        realm = self.realms.get(name)
        if realm is None:
            if not self._open_realms:
                raise ValueError(f"no realm {name!r}; realms: {list(self.realms)}")
            realm = Realm(name)  # kept from the first WELCOME in it
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
        found = self.realm(realm).topics.get(topic)
        if found is None:
            return 0
        payload = Payload(list(args or []), dict(kwargs or {}), publication_id)
        return found.broadcast(
            payload,
            exclude,
            eligible,
            exclude_authid=exclude_authid,
            eligible_authid=eligible_authid,
        )

    def connections_of(self, authid: str) -> tuple[WampConnection, ...]:
        """The joined sessions of the user ``authid``: every tab and device they have open."""
        return tuple(self._by_user.get(authid, ()))

    @property
    def sessions(self) -> dict[int, WampConnection]:
        """Joined sessions by session id (a copy)."""
        return dict(self._sessions)

    # -- MessageComponent interface (called by WsServer) -------------------------------------

    def on_open(self, conn: Connection) -> MaybeAwaitable:
        serializer = self._serializers.get(conn.subprotocol or "")
        if serializer is None:  # WsServer refuses these at the handshake; be safe anyway
            conn.close(1002, "no WAMP subprotocol negotiated")
            return None
        session = WampConnection(self, conn, serializer)
        self._connections[conn] = session
        if self.hello_timeout:
            session._hello_timer = conn.call_later(
                self.hello_timeout, lambda: self._hello_missing(session)
            )
        return None

    def on_message(self, conn: Connection, msg: Any) -> MaybeAwaitable:
        session = self._connections.get(conn)
        if session is None or session.closed:
            return None
        try:
            message = parse(session._serializer.decode(msg))
        except SerializationError as exc:
            self._abort(session, PROTOCOL_VIOLATION, str(exc), close_code=exc.close_code)
            return None
        except InvalidUri as exc:
            self._invalid_uri(session, exc, msg)
            return None
        except ProtocolViolation as exc:
            self._abort(session, PROTOCOL_VIOLATION, str(exc))
            return None
        if session.session_id is None:
            if type(message) is Hello:
                return self._hello(session, message)
            if type(message) is Abort:
                session._ws.close()
                return None
            self._abort(
                session, PROTOCOL_VIOLATION, f"expected HELLO, got {type(message).__name__.upper()}"
            )
            return None
        handler = self._HANDLERS.get(type(message))
        if handler is None:  # HELLO again
            self._abort(session, PROTOCOL_VIOLATION, "HELLO received in an established session")
            return None
        return handler(self, session, message)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        session = self._connections.pop(conn, None)
        if session is None:
            return None
        if session._hello_timer is not None:
            session._hello_timer.cancel()
        return self._leave(session)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        session = self._connections.get(conn)
        if session is None:
            logger.error("error on connection #%s", conn.resource_id, exc_info=exc)
            conn.close(1011, "internal error")
            return None
        return report_error(self.component, session, exc)

    def on_shutdown(
        self, conn: Connection, code: int = 1001, reason: str = "server shutting down"
    ) -> None:
        """Say GOODBYE (``wamp.close.system_shutdown``) before the WebSocket closes."""
        session = self._connections.get(conn)
        if session is not None:
            session._goodbye(CLOSE_SYSTEM_SHUTDOWN, reason)
        conn.close(code, reason)

    # -- session lifecycle -------------------------------------------------------------------

    def _hello_missing(self, session: WampConnection) -> None:
        if session.session_id is None and session.realm is None and not session.closed:
            logger.info(
                "connection #%s from %s sent no HELLO within %g s; closing",
                session.resource_id,
                session.remote_address,
                self.hello_timeout,
            )
            session._ws.close(1008, "no WAMP HELLO in time")

    def _hello(self, session: WampConnection, hello: Hello) -> MaybeAwaitable:
        if session.realm is not None:  # on_open of an earlier HELLO still runs
            self._abort(session, PROTOCOL_VIOLATION, "HELLO sent twice")
            return None
        try:
            realm = self.realm(hello.realm)
        except ValueError:
            known = ", ".join(self.realms)
            self._abort(session, NO_SUCH_REALM, f"no realm {hello.realm!r} here (realms: {known})")
            return None
        if session._hello_timer is not None:
            session._hello_timer.cancel()
            session._hello_timer = None
        session.realm = realm
        session.roles = hello.details["roles"]
        session.session_id = IdGenerator.random(self._sessions)

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is None and not session.closed:
                self._welcome(session)
                return None
            # Refused, failed or gone: this session never starts, whatever happens next.
            session.session_id = None
            session.realm = None
            if isinstance(exc, WampError):
                logger.info("session from %s refused by on_open: %s", session.remote_address, exc)
                self._abort(session, exc.error, str(exc.error_args[0]) if exc.error_args else "")
            elif exc is not None:
                self._abort(session, RUNTIME_ERROR, "internal error")
                return report_error(self.component, session, exc)
            return None

        return run_handler(self.component.on_open, (session,), done)

    def _welcome(self, session: WampConnection) -> None:
        assert session.session_id is not None and session.realm is not None
        # An open realm is kept while someone is in it (another session may have made it
        # first while this one's on_open ran).
        session.realm = self.realms.setdefault(session.realm.name, session.realm)
        self._sessions[session.session_id] = session
        session.realm.sessions[session.session_id] = session
        if session.authid is not None:
            self._by_user.setdefault(session.authid, {})[session] = None
        details: dict[str, Any] = {
            "roles": _ROUTER_ROLES,
            "realm": session.realm.name,
            "authrole": "user" if session.authid is not None else "anonymous",
            "authmethod": "anonymous" if session.authid is None else "http",
            "agent": self.agent,
        }
        if session.authid is not None:
            details["authid"] = session.authid
        session._send_message(Welcome(session.session_id, details).to_list())
        logger.info(
            "WAMP session %s joined %r from %s (connection #%s%s)",
            session.session_id,
            session.realm.name,
            session.remote_address,
            session.resource_id,
            f", user {session.authid}" if session.authid else "",
        )

    def _abort(
        self, session: WampConnection, reason: str, message: str, *, close_code: int = 1002
    ) -> None:
        """Refuse or end the session with an ABORT and close the WebSocket."""
        if reason == PROTOCOL_VIOLATION:
            logger.info(
                "connection #%s from %s broke the WAMP protocol: %s",
                session.resource_id,
                session.remote_address,
                message,
            )
        else:
            close_code = 1000
        if not session.closed:
            details = {"message": message} if message else {}
            session._send_message([ABORT, details, reason])
            session._ws.close(close_code, _close_reason(reason))

    def _leave(self, session: WampConnection) -> MaybeAwaitable:
        """End a joined session: unsubscribe, unregister, settle calls, ``on_close``."""
        session_id = session.session_id
        realm = session.realm
        if session_id is None or realm is None or self._sessions.get(session_id) is not session:
            return None
        del self._sessions[session_id]
        realm.sessions.pop(session_id, None)
        if session.authid is not None:
            same_user = self._by_user.get(session.authid)
            if same_user is not None:
                same_user.pop(session, None)
                if not same_user:
                    del self._by_user[session.authid]
        for procedure in session._registrations.values():
            realm.procedures.pop(procedure.id, None)
            procedure.callee = None
        session._registrations.clear()
        cancel_calls_of(session)
        topics = list(session._subscriptions.values())
        session._subscriptions.clear()
        for topic in topics:
            realm.topics.discard(topic, session)
        if (
            self._open_realms
            and not realm.sessions
            and realm.name not in self._configured_realms
            and self.realms.get(realm.name) is realm
        ):
            del self.realms[realm.name]  # memory follows the realms in use
        component = self.component

        def unsubscribed(topic: Topic) -> Callable[[], MaybeAwaitable]:
            return lambda: run_handler(
                component.on_unsubscribe, (session, topic), self._log_only(session)
            )

        def closed() -> MaybeAwaitable:
            log_only = self._log_only(session)

            def done(exc: Exception | None) -> MaybeAwaitable:
                # Only now: on_close still sees which session ended.
                session.session_id = None
                session.realm = None
                return log_only(exc)

            return run_handler(component.on_close, (session,), done)

        return sequence([*(unsubscribed(topic) for topic in topics), closed])

    def _log_only(self, session: WampConnection) -> Callable[[Exception | None], MaybeAwaitable]:
        def done(exc: Exception | None) -> MaybeAwaitable:
            return None if exc is None else report_error(self.component, session, exc)

        return done

    # -- requests ----------------------------------------------------------------------------

    def _answer_failure(
        self,
        session: WampConnection,
        request_type: int,
        request_id: int,
        exc: Exception,
        *,
        reply: bool = True,
    ) -> MaybeAwaitable:
        """A handler refused (WampError) or failed (anything else): tell the client if it
        waits for an answer, and the component's on_error if it was a failure."""
        if isinstance(exc, WampError):
            logger.debug(
                "request %d of session %s refused: %s", request_id, session.session_id, exc
            )
            if reply:
                try:
                    session.send_error(
                        request_type, request_id, exc.error, exc.error_args, exc.error_kwargs
                    )
                except EncodeError as bad:
                    logger.warning("WampError arguments cannot be sent (%s); sent without", bad)
                    session.send_error(request_type, request_id, exc.error)
            return None
        if isinstance(exc, EncodeError):
            if reply:
                session.send_error(request_type, request_id, INVALID_ARGUMENT, [str(exc)])
            return None
        if reply:
            session.send_error(request_type, request_id, RUNTIME_ERROR, ["internal error"])
        return report_error(self.component, session, exc)

    def _invalid_uri(self, session: WampConnection, exc: InvalidUri, raw: Any) -> None:
        if session.session_id is None or exc.request_type == HELLO or exc.request_id is None:
            reason = INVALID_URI if exc.request_type == HELLO else PROTOCOL_VIOLATION
            self._abort(session, reason, str(exc))
            return
        if exc.request_type == PUBLISH and not _acknowledged(session, raw):
            logger.info("session %s published to an invalid URI: %s", session.session_id, exc)
            return
        session.send_error(exc.request_type, exc.request_id, INVALID_URI, [str(exc)])

    def _goodbye(self, session: WampConnection, message: Goodbye) -> MaybeAwaitable:
        session._send_message([GOODBYE, {}, GOODBYE_AND_OUT])
        logger.info("WAMP session %s left: %s", session.session_id, message.reason)
        # The connection may stay for a new session (a new HELLO): that is a new
        # WampConnection, so that nothing held from this session (an open call's id, a
        # reference kept by the component) can reach the next one.
        ws = session._ws
        if self._connections.get(ws) is session:
            self._connections[ws] = fresh = WampConnection(self, ws, session._serializer)
            if self.hello_timeout:
                fresh._hello_timer = ws.call_later(
                    self.hello_timeout, lambda: self._hello_missing(fresh)
                )
        return self._leave(session)

    def _client_abort(self, session: WampConnection, message: Abort) -> MaybeAwaitable:
        logger.info("WAMP session %s aborted by the client: %s", session.session_id, message.reason)
        session._ws.close()
        return self._leave(session)

    _HANDLERS: ClassVar[dict[type, Callable[..., MaybeAwaitable]]] = {
        Subscribe: _pubsub.subscribe,
        Unsubscribe: _pubsub.unsubscribe,
        Publish: _pubsub.publish,
        Register: _rpc.register,
        Unregister: _rpc.unregister,
        Call: _rpc.call,
        Yield: _rpc.yield_result,
        Error: _rpc.callee_error,
        Goodbye: _goodbye,
        Abort: _client_abort,
    }


def _close_reason(text: str) -> str:
    """``text`` cut to the 123 UTF-8 bytes a close frame's reason may hold."""
    data = text.encode("utf-8")
    return text if len(data) <= 123 else data[:123].decode("utf-8", "ignore")


def _acknowledged(session: WampConnection, raw: Any) -> bool:
    """Whether a PUBLISH that failed to parse asked for an acknowledgement."""
    try:
        options = session._serializer.decode(raw)[2]
    except Exception:
        return False
    return isinstance(options, dict) and options.get("acknowledge") is True
