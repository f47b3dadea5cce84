"""A WAMP v2 client session for trio: :func:`open_session` and :class:`Session`.

.. code-block:: python

    async with open_session("ws://127.0.0.1:8080/ws", realm="realm1") as session:
        await session.subscribe("com.example.news", on_news)
        await session.register("com.example.add", lambda a, b: a + b)
        print(await session.call("com.example.add", 2, 3))
        await session.publish("com.example.news", "hello", acknowledge=True)

The session owns a nursery: one task reads from the router, one task per subscription calls
its handler (events of a subscription are handled one at a time, in order), one task per
invocation runs the registered function. They all end when the ``async with`` block does.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, TypeVar

import trio

from ..exceptions import (
    ConnectionClosed,
    EncodeError,
    ProtocolViolation,
    SerializationError,
    SessionClosed,
    WampCallError,
    WampError,
    WampRequestError,
)
from ..wamp.messages import (
    CALL,
    CLOSE_NORMAL,
    GOODBYE_AND_OUT,
    INVALID_ARGUMENT,
    INVOCATION,
    NO_SUCH_REGISTRATION,
    PROTOCOL_VIOLATION,
    RUNTIME_ERROR,
    Abort,
    Call,
    Error,
    Event,
    Goodbye,
    Hello,
    IdGenerator,
    Invocation,
    Message,
    Publish,
    Published,
    Register,
    Registered,
    Result,
    RouterMessage,
    Subscribe,
    Subscribed,
    Unregister,
    Unregistered,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    Yield,
    parse_router_message,
)
from ..wamp.serializers import JsonSerializer, MsgpackSerializer, Serializer
from ._parts import CallResult, Registration, Subscription, checked_uri
from ._ws import WebSocket, connect

__all__ = ["CallResult", "Registration", "Session", "Subscription", "open_session"]

logger = logging.getLogger("ratchetpy.client")

_ROLES = {
    "publisher": {"features": {"publisher_exclusion": True, "subscriber_blackwhite_listing": True}},
    "subscriber": {"features": {}},
    "caller": {"features": {}},
    "callee": {"features": {}},
}

#: The answer a request waits for (an ERROR for the same request refuses it).
_Answer = Published | Subscribed | Unsubscribed | Registered | Unregistered | Result
_Request = Publish | Subscribe | Unsubscribe | Register | Unregister | Call
AnswerT = TypeVar("AnswerT", Published, Subscribed, Unsubscribed, Registered, Unregistered, Result)
_ANSWER_TYPES = frozenset({Published, Subscribed, Unsubscribed, Registered, Unregistered, Result})


class _Pending:
    """A request waiting for its answer (or its ERROR)."""

    __slots__ = ("answer", "answer_type", "error", "event", "request_type")

    def __init__(self, request_type: int, answer_type: type[_Answer]) -> None:
        self.request_type = request_type
        self.answer_type = answer_type
        self.event = trio.Event()
        self.answer: _Answer | None = None
        self.error: BaseException | None = None


class Session:
    """A joined WAMP session. Made by :func:`open_session`; use it inside that block.

    ``session_id``, ``realm``, ``authid`` (the user the router knows this session as, or
    ``None``) and ``details`` (the router's WELCOME details) describe it.

    Every method is a checkpoint. A method raises :class:`~ratchetpy.SessionClosed` when the
    session is gone, :class:`~ratchetpy.WampRequestError` (:class:`~ratchetpy.WampCallError`
    for calls) when the router answers with ERROR, ValueError for an invalid URI, and
    :class:`~ratchetpy.EncodeError` for arguments the serializer cannot carry. Cancelling a
    method abandons its request: a late answer is ignored (WAMP's Basic Profile has no way to
    cancel it at the router).

    What the router sends is read through :func:`ratchetpy.wamp.messages.parse_router_message`,
    by the rules the router applies to clients; a router that breaks them gets an ABORT
    (``wamp.error.protocol_violation``) and the session ends.
    """

    def __init__(self, ws: WebSocket, serializer: Serializer, realm: str, max_queue: int) -> None:
        self.realm = realm
        self.session_id = 0
        self.authid: str | None = None
        self.details: dict[str, Any] = {}
        self._ws = ws
        self._serializer = serializer
        self._max_queue = max_queue
        self._nursery: trio.Nursery | None = None
        self._ids = IdGenerator()
        self._pending: dict[int, _Pending] = {}
        self._subscriptions: dict[int, list[Subscription]] = {}
        self._registrations: dict[int, Registration] = {}
        self._state = "joining"  # then "open", "leaving", "closed"
        self._error: BaseException | None = None
        self._body_scope: trio.CancelScope | None = None
        self._goodbye = trio.Event()
        self._reader_done = trio.Event()

    def __repr__(self) -> str:
        return f"<Session {self.session_id} in {self.realm!r} ({self._state})>"

    @property
    def closed(self) -> bool:
        """True once the session is leaving or gone."""
        return self._state not in ("joining", "open")

    # -- the API ---------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        *args: Any,
        acknowledge: bool = False,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> int | None:
        """Publish ``args`` and ``kwargs`` to ``topic``.

        Without ``acknowledge`` this returns once the message is written (the router tells
        nothing back, not even a refusal); with it, once the router confirms, returning the
        publication id. ``options`` are WAMP publish options (``exclude_me``, ``exclude``,
        ``eligible``, ``exclude_authid``, ``eligible_authid``).
        """
        opts = dict(options or {})
        if acknowledge:
            opts["acknowledge"] = True
        uri = checked_uri(topic, "topic")
        message = Publish(self._ids.next(), opts, uri, list(args), kwargs)
        if not acknowledge:
            self._check_open()
            await self._send(message)
            return None
        return (await self._request(message, Published)).publication_id

    async def subscribe(self, topic: str, handler: Callable[..., Any]) -> Subscription:
        """Call ``handler(*args, **kwargs)`` (plain or ``async def``) for each event on
        ``topic``, from a task of the session, one event at a time, in order.

        Events wait in a queue of ``max_queue`` (see :func:`open_session`); when it is full
        the session stops reading from the router until the handler catches up, so a handler
        that awaits :meth:`call` must keep up. If the handler raises, the session ends and
        ``async with open_session(...)`` raises that exception.
        """
        message = Subscribe(self._ids.next(), {}, checked_uri(topic, "topic"))
        subscription_id = (await self._request(message, Subscribed)).subscription_id
        # Confirmed while the session was leaving: no task could run the handler any more.
        self._check_open()
        send, receive = trio.open_memory_channel[tuple[list[Any], dict[str, Any]]](self._max_queue)
        subscription = Subscription(topic, subscription_id, handler, send, self._unsubscribe)
        self._subscriptions.setdefault(subscription_id, []).append(subscription)
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver, subscription, receive)
        return subscription

    async def register(self, procedure: str, function: Callable[..., Any]) -> Registration:
        """Serve ``procedure`` with ``function(*args, **kwargs)`` (plain or ``async def``),
        each call in its own task of the session.

        Its return value is the result (``None``: no value; a :class:`CallResult`: several).
        Raising :class:`~ratchetpy.WampError` (or :class:`~ratchetpy.WampCallError`) answers
        the caller with that error; any other exception is logged on ``ratchetpy.client`` and
        the caller gets ``wamp.error.runtime_error`` without its details. The session goes on.
        """
        message = Register(self._ids.next(), {}, checked_uri(procedure, "procedure"))
        registration_id = (await self._request(message, Registered)).registration_id
        registration = Registration(procedure, registration_id, function, self._unregister)
        self._registrations[registration.id] = registration
        return registration

    async def call(
        self, procedure: str, *args: Any, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """Call ``procedure`` and return its result: ``None`` for no value, the value for one
        positional value, else a :class:`CallResult`. Raises
        :class:`~ratchetpy.WampCallError` when the callee or the router answers with an error
        (``wamp.error.no_such_procedure``, ...). Bound how long to wait with a trio cancel
        scope (``with trio.fail_after(5):``)."""
        uri = checked_uri(procedure, "procedure")
        message = Call(self._ids.next(), dict(options or {}), uri, list(args), kwargs)
        result = await self._request(message, Result)
        return CallResult.of(result.args, result.kwargs)

    # -- internals: requests -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise SessionClosed(f"the WAMP session is {self._state}", uri=None, code=1000)

    async def _send(self, message: Message) -> None:
        data = self._serializer.encode(message.to_list())  # EncodeError: the caller's values
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise SessionClosed(
                "the connection to the router is closed", code=exc.code, reason=exc.reason
            ) from None

    async def _request(self, message: _Request, answer_type: type[AnswerT]) -> AnswerT:
        self._check_open()
        request_id = message.request_id
        pending = _Pending(message.TYPE, answer_type)
        self._pending[request_id] = pending
        try:
            await self._send(message)
            await pending.event.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        assert isinstance(pending.answer, answer_type)  # _dispatch matched it to the request
        return pending.answer

    async def _unsubscribe(self, subscription: Subscription) -> None:
        handlers = self._subscriptions.get(subscription.id, [])
        if subscription not in handlers:
            return
        handlers.remove(subscription)
        subscription.stop()
        if not handlers:
            del self._subscriptions[subscription.id]
            await self._request(Unsubscribe(self._ids.next(), subscription.id), Unsubscribed)

    async def _unregister(self, registration: Registration) -> None:
        if self._registrations.pop(registration.id, None) is not None:
            await self._request(Unregister(self._ids.next(), registration.id), Unregistered)

    # -- internals: tasks --------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        """End the ``async with`` block: cancel its body, raise ``error`` from it."""
        if self._error is None:
            self._error = error
        else:
            logger.debug("session %s: a later error as it ends: %r", self.session_id, error)
        if self._body_scope is not None:
            self._body_scope.cancel()

    def _ended_by_router(self, error: SessionClosed) -> None:
        if self._state == "open":
            self._state = "closed"
            self._fail(error)

    async def _join(self) -> None:
        await self._send(Hello(self.realm, {"roles": _ROLES, "agent": "ratchetpy.client"}))
        try:
            message = self._decode(await self._ws.receive())
        except ConnectionClosed as exc:
            raise SessionClosed(
                "the router closed the connection before WELCOME", code=exc.code, reason=exc.reason
            ) from None
        except ProtocolViolation as exc:
            raise SessionClosed(f"the router broke the WAMP protocol: {exc}") from None
        if type(message) is Abort:
            why = message.details.get("message", "")
            raise SessionClosed(
                f"the router refused to join realm {self.realm!r}: {message.reason} {why}".rstrip(),
                uri=message.reason,
            )
        if type(message) is not Welcome:
            raise SessionClosed(f"expected WELCOME, got {type(message).__name__.upper()}")
        self.session_id = message.session_id
        self.details = message.details
        authid = self.details.get("authid")
        self.authid = authid if isinstance(authid, str) else None
        self._state = "open"

    def _decode(self, data: str | bytes) -> RouterMessage:
        """A message from the router, checked; ProtocolViolation if it is not a valid one."""
        try:
            raw = self._serializer.decode(data)
        except SerializationError as exc:
            raise ProtocolViolation(str(exc)) from None
        return parse_router_message(raw)

    async def _read(self) -> None:
        """The reader task: dispatch what the router sends until the connection closes."""
        try:
            while True:
                try:
                    data = await self._ws.receive()
                except ConnectionClosed as exc:
                    self._ended_by_router(
                        SessionClosed(
                            f"the connection to the router was closed ({exc.code})",
                            code=exc.code,
                            reason=exc.reason,
                        )
                    )
                    return
                await self._dispatch(self._decode(data))
        except ProtocolViolation as exc:
            await self._abort(str(exc))
        except Exception as exc:  # a bug here: end the session loudly rather than hang it
            self._fail(exc)
        finally:
            if self._state == "open":  # nobody reads answers any more: refuse new requests
                self._state = "closed"
            self._reader_done.set()
            self._goodbye.set()
            gone = SessionClosed("the WAMP session ended", code=1000)
            for pending in self._pending.values():
                pending.error = gone
                pending.event.set()

    async def _abort(self, why: str) -> None:
        logger.info("session %s: the router broke the WAMP protocol: %s", self.session_id, why)
        error = SessionClosed(f"the router broke the WAMP protocol: {why}", uri=PROTOCOL_VIOLATION)
        self._ended_by_router(error)
        self._state = "closed"
        with suppress(SessionClosed):
            await self._send(Abort({"message": why[:200]}, PROTOCOL_VIOLATION))
        await self._ws.close(1002, "WAMP protocol violation")

    async def _dispatch(self, message: RouterMessage) -> None:
        kind = type(message)
        if isinstance(message, Event):
            for subscription in tuple(self._subscriptions.get(message.subscription_id, ())):
                await subscription.deliver(message.args, message.kwargs)
        elif kind in _ANSWER_TYPES:
            assert not isinstance(message, (Welcome, Abort, Goodbye, Error, Event, Invocation))
            pending = self._pending.get(message.request_id)
            # None: the request was cancelled; a late answer is dropped.
            if pending is not None and pending.answer_type is kind:
                pending.answer = message
                pending.event.set()
        elif isinstance(message, Error):
            pending = self._pending.get(message.request_id)
            if pending is not None and pending.request_type == message.request_type:
                failed = WampCallError if message.request_type == CALL else WampRequestError
                pending.error = failed(message.error, message.args, message.kwargs)
                pending.event.set()
        elif isinstance(message, Invocation):
            registration = self._registrations.get(message.registration_id)
            if registration is None:  # unregistered meanwhile: the caller must not hang
                await self._reply(Error(INVOCATION, message.request_id, {}, NO_SUCH_REGISTRATION))
            else:
                assert self._nursery is not None
                self._nursery.start_soon(self._invoke, registration, message)
        elif isinstance(message, Goodbye):
            if self._state == "leaving":
                self._goodbye.set()
            elif self._state == "open":
                self._ended_by_router(
                    SessionClosed(
                        f"the router ended the session: {message.reason}",
                        uri=message.reason,
                        code=1000,
                    )
                )
                await self._reply(Goodbye({}, GOODBYE_AND_OUT))
                await self._ws.close(1000)
        elif isinstance(message, Abort):
            error = SessionClosed(f"the router aborted: {message.reason}", uri=message.reason)
            self._ended_by_router(error)
            await self._ws.close(1000)
        else:  # WELCOME again
            raise ProtocolViolation("WELCOME in an established session")

    async def _reply(self, message: Message) -> None:
        with suppress(SessionClosed):  # the reader sees the connection gone
            await self._send(message)

    async def _deliver(
        self,
        subscription: Subscription,
        events: trio.MemoryReceiveChannel[tuple[list[Any], dict[str, Any]]],
    ) -> None:
        """A subscription's task: call its handler for each queued event, in order."""
        async with events:
            async for args, kwargs in events:
                try:
                    result = subscription.handler(*args, **kwargs)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    if not (isinstance(exc, SessionClosed) and self.closed):
                        self._fail(exc)
                    return

    async def _invoke(self, registration: Registration, invocation: Invocation) -> None:
        """An invocation's task: run the function, answer with YIELD or ERROR."""
        request_id = invocation.request_id
        reply: Message
        try:
            result = registration.function(*invocation.args, **invocation.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except WampError as exc:
            reply = Error(INVOCATION, request_id, {}, exc.error, exc.error_args, exc.error_kwargs)
        except Exception as exc:
            logger.error(
                "procedure %s raised; its caller gets %s",
                registration.procedure,
                RUNTIME_ERROR,
                exc_info=exc,
            )
            reply = Error(INVOCATION, request_id, {}, RUNTIME_ERROR, ["internal error"])
        else:
            if isinstance(result, CallResult):
                reply = Yield(request_id, {}, result.args, result.kwargs)
            else:
                reply = Yield(request_id, {}, [] if result is None else [result])
        try:
            await self._reply(reply)
        except EncodeError as exc:
            why = [f"the result cannot be sent: {exc}"]
            await self._reply(Error(INVOCATION, request_id, {}, INVALID_ARGUMENT, why))

    async def _leave(self) -> None:
        """Say GOODBYE, wait for the router's, close the WebSocket, wait for the reader."""
        # Handlers get no more events: the reader must not wait on a full queue now.
        for handlers in self._subscriptions.values():
            for subscription in handlers:
                subscription.stop()
        self._subscriptions.clear()
        self._registrations.clear()
        if self._state == "open":
            self._state = "leaving"
            try:
                await self._send(Goodbye({}, CLOSE_NORMAL))
            except SessionClosed:
                pass
            else:
                await self._goodbye.wait()
        self._state = "closed"
        await self._ws.close(1000)
        await self._reader_done.wait()


@asynccontextmanager
async def open_session(
    url: str,
    realm: str = "realm1",
    *,
    serializer: Literal["json", "msgpack"] = "json",
    headers: Iterable[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 2**20,
    max_queue: int = 100,
    close_timeout: float = 5.0,
    stream: trio.abc.Stream | None = None,
) -> AsyncIterator[Session]:
    """Join ``realm`` on the WAMP router at ``url`` (``ws://`` or ``wss://``) for the block.

    ``serializer`` is ``"json"`` (``wamp.2.json``) or ``"msgpack"``. ``headers`` go with the
    WebSocket handshake (``[("Authorization", "Bearer ...")]`` for a router behind
    :class:`~ratchetpy.Authenticate`). ``ssl_context`` is for ``wss://`` (default: the
    system's trusted CAs). Messages over ``max_message_size`` bytes end the session (1009);
    ``max_queue`` is the events each subscription may have waiting. ``stream``, when given,
    is an already connected byte stream to talk over instead of opening one (``url`` then
    only names the host and path for the handshake): how :mod:`ratchetpy.testing` runs a
    session against a server in memory, or a transport of your own.

    Opening is a checkpoint and raises OSError (unreachable), :class:`SessionClosed` (the
    handshake was refused: ``status``; or the router sent ABORT: ``uri``), ValueError (bad
    URL). Leaving the block says GOODBYE and waits up to ``close_timeout`` seconds for the
    router's (shielded from cancellation, so even a cancelled block leaves cleanly).

    If the session ends from the other side (the router's GOODBYE or ABORT, the connection
    lost) or a subscription handler raises, the block is cancelled and ``async with``
    raises that error: :class:`SessionClosed`, or the handler's exception. Exceptions come
    out as they are, never wrapped in an exception group.
    """
    if serializer == "json":
        codec: Serializer = JsonSerializer()
    elif serializer == "msgpack":
        codec = MsgpackSerializer()
    else:
        raise ValueError(f"serializer must be 'json' or 'msgpack', not {serializer!r}")
    checked_uri(realm, "realm")
    ws = await connect(
        url,
        [codec.subprotocol],
        headers=headers,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        stream=stream,
    )
    body_error: Exception | None = None
    try:
        if ws.subprotocol != codec.subprotocol:
            raise SessionClosed(f"the server does not speak {codec.subprotocol}", code=1000)
        session = Session(ws, codec, realm, max_queue)
        await session._join()  # before the nursery: its errors must not come out grouped
        async with trio.open_nursery() as nursery:
            session._nursery = nursery
            nursery.start_soon(session._read)
            try:
                with trio.CancelScope() as body_scope:
                    session._body_scope = body_scope
                    try:
                        yield session
                    except Exception as exc:
                        # Kept and raised after the nursery, so it is not grouped there.
                        body_error = exc
            finally:
                with trio.CancelScope(shield=True) as cleanup:
                    cleanup.deadline = trio.current_time() + close_timeout
                    await session._leave()
                nursery.cancel_scope.cancel()
    finally:
        await ws.aclose()
    if body_error is not None:
        raise body_error
    if session._error is not None:
        raise session._error
