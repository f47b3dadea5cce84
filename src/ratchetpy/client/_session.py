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
from typing import Any, Literal

import trio

from ..exceptions import (
    ConnectionClosed,
    EncodeError,
    SerializationError,
    SessionClosed,
    WampCallError,
    WampError,
    WampRequestError,
)
from ..wamp.messages import (
    ABORT,
    CALL,
    CLOSE_NORMAL,
    ERROR,
    EVENT,
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVALID_ARGUMENT,
    INVOCATION,
    NO_SUCH_REGISTRATION,
    PROTOCOL_VIOLATION,
    PUBLISH,
    PUBLISHED,
    REGISTER,
    REGISTERED,
    RESULT,
    RUNTIME_ERROR,
    SUBSCRIBE,
    SUBSCRIBED,
    UNREGISTER,
    UNREGISTERED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    WELCOME,
    YIELD,
    IdGenerator,
)
from ..wamp.serializers import JsonSerializer, MsgpackSerializer, Serializer
from ._parts import (
    CallResult,
    Registration,
    Subscription,
    _check,
    _id,
    _Malformed,
    _payload,
    _Pending,
    _result,
    _tail,
    _uri,
)
from ._ws import WebSocket, connect

__all__ = ["CallResult", "Registration", "Session", "Subscription", "open_session"]

logger = logging.getLogger("ratchetpy.client")

_ROLES = {
    "publisher": {"features": {"publisher_exclusion": True, "subscriber_blackwhite_listing": True}},
    "subscriber": {"features": {}},
    "caller": {"features": {}},
    "callee": {"features": {}},
}
_ANSWERS = {
    SUBSCRIBE: SUBSCRIBED,
    UNSUBSCRIBE: UNSUBSCRIBED,
    PUBLISH: PUBLISHED,
    REGISTER: REGISTERED,
    UNREGISTER: UNREGISTERED,
    CALL: RESULT,
}


class Session:
    """A joined WAMP session. Made by :func:`open_session`; use it inside that block.

    ``session_id``, ``realm``, ``authid`` (the user the router knows this session as, or
    ``None``) and ``details`` (the router's WELCOME details) describe it.

    Every method is a checkpoint. A method raises :class:`SessionClosed` when the session is
    gone, :class:`WampRequestError` (:class:`WampCallError` for calls) when the router
    answers with ERROR, ValueError for an invalid URI, and
    :class:`~ratchetpy.wamp.EncodeError` for arguments the serializer cannot carry.
    Cancelling a method abandons its request: a late answer is ignored (WAMP's Basic Profile
    has no way to cancel it at the router).
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
        message = _tail([PUBLISH, self._ids.next(), opts, _uri(topic, "topic")], args, kwargs)
        if not acknowledge:
            self._check_open()
            await self._send(message)
            return None
        answer = await self._request(message)
        _check(answer, "PUBLISHED", 3)
        return _id(answer, 2, "PUBLISHED")

    async def subscribe(self, topic: str, handler: Callable[..., Any]) -> Subscription:
        """Call ``handler(*args, **kwargs)`` (plain or ``async def``) for each event on
        ``topic``, from a task of the session, one event at a time, in order.

        Events wait in a queue of ``max_queue`` (see :func:`open_session`); when it is full
        the session stops reading from the router until the handler catches up, so a handler
        that awaits :meth:`call` must keep up. If the handler raises, the session ends and
        ``async with open_session(...)`` raises that exception.
        """
        message = [SUBSCRIBE, self._ids.next(), {}, _uri(topic, "topic")]
        answer = await self._request(message)
        _check(answer, "SUBSCRIBED", 3)
        subscription_id = _id(answer, 2, "SUBSCRIBED")
        # Confirmed while the session was leaving: no task could run the handler any more.
        self._check_open()
        send, receive = trio.open_memory_channel[tuple[list[Any], dict[str, Any]]](self._max_queue)
        subscription = Subscription(self, topic, subscription_id, handler, send)
        self._subscriptions.setdefault(subscription_id, []).append(subscription)
        assert self._nursery is not None
        self._nursery.start_soon(self._deliver, subscription, receive)
        return subscription

    async def register(self, procedure: str, function: Callable[..., Any]) -> Registration:
        """Serve ``procedure`` with ``function(*args, **kwargs)`` (plain or ``async def``),
        each call in its own task of the session.

        Its return value is the result (``None``: no value; a :class:`CallResult`: several).
        Raising :class:`~ratchetpy.wamp.WampError` (or :class:`WampCallError`) answers the
        caller with that error; any other exception is logged on ``ratchetpy.client`` and the
        caller gets ``wamp.error.runtime_error`` without its details. The session goes on.
        """
        message = [REGISTER, self._ids.next(), {}, _uri(procedure, "procedure")]
        answer = await self._request(message)
        _check(answer, "REGISTERED", 3)
        registration = Registration(self, procedure, _id(answer, 2, "REGISTERED"), function)
        self._registrations[registration.id] = registration
        return registration

    async def call(
        self, procedure: str, *args: Any, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """Call ``procedure`` and return its result: ``None`` for no value, the value for one
        positional value, else a :class:`CallResult`. Raises :class:`WampCallError` when the
        callee or the router answers with an error (``wamp.error.no_such_procedure``, ...).
        Bound how long to wait with a trio cancel scope (``with trio.fail_after(5):``)."""
        head = [CALL, self._ids.next(), dict(options or {}), _uri(procedure, "procedure")]
        answer = await self._request(_tail(head, args, kwargs))
        _check(answer, "RESULT", 3, 2)
        return _result(*_payload(answer, 3, "RESULT"))

    # -- internals: requests -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise SessionClosed(f"the WAMP session is {self._state}", uri=None, code=1000)

    async def _send(self, message: list[Any]) -> None:
        data = self._serializer.encode(message)  # EncodeError: the caller's values
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise SessionClosed(
                "the connection to the router is closed", code=exc.code, reason=exc.reason
            ) from None

    async def _request(self, message: list[Any]) -> list[Any]:
        self._check_open()
        request_id = message[1]
        pending = _Pending(message[0])
        self._pending[request_id] = pending
        try:
            await self._send(message)
            await pending.event.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.answer

    async def _unsubscribe(self, subscription: Subscription) -> None:
        handlers = self._subscriptions.get(subscription.id, [])
        if subscription not in handlers:
            return
        handlers.remove(subscription)
        subscription._events.close()  # its task handles what is queued, then ends
        if not handlers:
            del self._subscriptions[subscription.id]
            await self._request([UNSUBSCRIBE, self._ids.next(), subscription.id])

    async def _unregister(self, registration: Registration) -> None:
        if self._registrations.pop(registration.id, None) is not None:
            await self._request([UNREGISTER, self._ids.next(), registration.id])

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
        await self._send([HELLO, self.realm, {"roles": _ROLES, "agent": "ratchetpy.client"}])
        try:
            message = self._decode(await self._ws.receive())
        except ConnectionClosed as exc:
            raise SessionClosed(
                "the router closed the connection before WELCOME", code=exc.code, reason=exc.reason
            ) from None
        except _Malformed as exc:
            raise SessionClosed(f"the router broke the WAMP protocol: {exc}") from None
        if message[0] == ABORT and len(message) == 3 and type(message[2]) is str:
            why = message[1].get("message", "") if type(message[1]) is dict else ""
            raise SessionClosed(
                f"the router refused to join realm {self.realm!r}: {message[2]} {why}".rstrip(),
                uri=message[2],
            )
        if message[0] != WELCOME or len(message) != 3 or type(message[2]) is not dict:
            raise SessionClosed(f"expected WELCOME, got {str(message)[:80]}")
        self.session_id = _id(message, 1, "WELCOME")
        self.details = message[2]
        authid = self.details.get("authid")
        self.authid = authid if isinstance(authid, str) else None
        self._state = "open"

    def _decode(self, data: str | bytes) -> list[Any]:
        try:
            message = self._serializer.decode(data)
        except SerializationError as exc:
            raise _Malformed(str(exc)) from None
        if not message or type(message[0]) is not int:
            raise _Malformed(f"not a WAMP message: {str(message)[:80]}")
        return message

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
        except _Malformed as exc:
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
            await self._send([ABORT, {"message": why[:200]}, PROTOCOL_VIOLATION])
        await self._ws.close(1002, "WAMP protocol violation")

    async def _dispatch(self, message: list[Any]) -> None:
        code = message[0]
        if code == EVENT:
            _check(message, "EVENT", 4, 2)
            subscription_id = _id(message, 1, "EVENT")
            item = _payload(message, 4, "EVENT")
            for subscription in tuple(self._subscriptions.get(subscription_id, ())):
                # Closed: unsubscribed meanwhile, or its handler failed.
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await subscription._events.send(item)  # waits while the handler is behind
        elif code in (RESULT, PUBLISHED, SUBSCRIBED, UNSUBSCRIBED, REGISTERED, UNREGISTERED):
            if len(message) < 2:
                raise _Malformed(f"message {code} without a request id")
            pending = self._pending.get(_id(message, 1, "answer"))
            # None: the request was cancelled; a late answer is dropped.
            if pending is not None and _ANSWERS[pending.request_type] == code:
                pending.answer = message
                pending.event.set()
        elif code == ERROR:
            _check(message, "ERROR", 5, 2)
            pending = self._pending.get(_id(message, 2, "ERROR"))
            if type(message[4]) is not str:
                raise _Malformed("ERROR without an error URI")
            if pending is not None and pending.request_type == message[1]:
                args, kwargs = _payload(message, 5, "ERROR")
                kind = WampCallError if message[1] == CALL else WampRequestError
                pending.error = kind(message[4], args, kwargs)
                pending.event.set()
        elif code == INVOCATION:
            _check(message, "INVOCATION", 4, 2)
            request_id = _id(message, 1, "INVOCATION")
            registration = self._registrations.get(_id(message, 2, "INVOCATION"))
            args, kwargs = _payload(message, 4, "INVOCATION")
            if registration is None:  # unregistered meanwhile: the caller must not hang
                await self._reply([ERROR, INVOCATION, request_id, {}, NO_SUCH_REGISTRATION])
            else:
                assert self._nursery is not None
                self._nursery.start_soon(self._invoke, registration, request_id, args, kwargs)
        elif code == GOODBYE:
            _check(message, "GOODBYE", 3)
            if self._state == "leaving":
                self._goodbye.set()
            elif self._state == "open":
                reason = message[2] if type(message[2]) is str else "?"
                self._ended_by_router(
                    SessionClosed(f"the router ended the session: {reason}", uri=reason, code=1000)
                )
                await self._reply([GOODBYE, {}, GOODBYE_AND_OUT])
                await self._ws.close(1000)
        elif code == ABORT:
            reason = message[2] if len(message) == 3 and type(message[2]) is str else "?"
            self._ended_by_router(SessionClosed(f"the router aborted: {reason}", uri=reason))
            await self._ws.close(1000)
        else:
            raise _Malformed(f"unexpected message type {code}")

    async def _reply(self, message: list[Any]) -> None:
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

    async def _invoke(
        self,
        registration: Registration,
        request_id: int,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        """An invocation's task: run the function, answer with YIELD or ERROR."""
        try:
            result = registration.function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except WampError as exc:
            head = [ERROR, INVOCATION, request_id, {}, exc.error]
            reply = _tail(head, exc.error_args, exc.error_kwargs)
        except Exception as exc:
            logger.error(
                "procedure %s raised; its caller gets %s",
                registration.procedure,
                RUNTIME_ERROR,
                exc_info=exc,
            )
            reply = [ERROR, INVOCATION, request_id, {}, RUNTIME_ERROR, ["internal error"]]
        else:
            if isinstance(result, CallResult):
                reply = _tail([YIELD, request_id, {}], result.args, result.kwargs)
            else:
                reply = _tail([YIELD, request_id, {}], [] if result is None else [result], {})
        try:
            await self._reply(reply)
        except EncodeError as exc:
            why = [f"the result cannot be sent: {exc}"]
            await self._reply([ERROR, INVOCATION, request_id, {}, INVALID_ARGUMENT, why])

    async def _leave(self) -> None:
        """Say GOODBYE, wait for the router's, close the WebSocket, wait for the reader."""
        # Handlers get no more events: the reader must not wait on a full queue now.
        for handlers in self._subscriptions.values():
            for subscription in handlers:
                subscription._events.close()
        self._subscriptions.clear()
        self._registrations.clear()
        if self._state == "open":
            self._state = "leaving"
            try:
                await self._send([GOODBYE, {}, CLOSE_NORMAL])
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
) -> AsyncIterator[Session]:
    """Join ``realm`` on the WAMP router at ``url`` (``ws://`` or ``wss://``) for the block.

    ``serializer`` is ``"json"`` (``wamp.2.json``) or ``"msgpack"``. ``headers`` go with the
    WebSocket handshake (``[("Authorization", "Bearer ...")]`` for a router behind
    :class:`~ratchetpy.auth.Authenticate`). ``ssl_context`` is for ``wss://`` (default: the
    system's trusted CAs). Messages over ``max_message_size`` bytes end the session (1009);
    ``max_queue`` is the events each subscription may have waiting.

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
    _uri(realm, "realm")
    ws = await connect(
        url,
        [codec.subprotocol],
        headers=headers,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
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
