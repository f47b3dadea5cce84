"""The dealer of a WAMP realm: procedures, their callees and the calls in flight. Sans-IO.

A call travels CALL (caller -> router) -> INVOCATION (router -> callee) -> YIELD or ERROR
(callee -> router) -> RESULT or ERROR (router -> caller). :class:`Dealer` owns every
registration of one realm and two small records per call in flight: on the caller's side its
call id -> (callee, invocation id), ``None`` while the component answers the call itself; on
the callee's side the invocation id -> (caller, call id). Whichever side leaves first clears
both, so a vanished peer leaves nothing behind and a late YIELD for a departed caller is
dropped. The dealer is also the realm's :class:`~ratchetpy.wamp.ProcedureManager`: a read-only
mapping of the procedures registered on this worker, which a :class:`~ratchetpy.wamp.Procedure`
asks.

With other workers (a distributed broker), a registration is also owned by this worker
cluster-wide (see :mod:`~ratchetpy.wamp.cluster_rpc`), so ``procedure_already_exists`` holds
across workers, and a call to a procedure registered elsewhere is sent to the owner's worker.
There the callee is invoked as for a local caller, with a
:class:`~ratchetpy.wamp.calls_across.RemoteCaller` as the caller's leg; the caller's worker
keeps a :class:`~ratchetpy.wamp.calls_across.RemoteCall` (its
:class:`~ratchetpy.wamp.calls_across.CallsAcross` numbers and watches it) until the answer
comes back,
the callee's worker is gone from the registry (the caller gets ``wamp.error.canceled``), or
the broker lost messages of this worker's channel (``ratchetpy.error.broker_unavailable``):
a call never hangs on a worker that died.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Mapping
from typing import Any

from ..broker import MessageBroker
from ..components.base import MaybeAwaitable
from ..exceptions import BrokerError, EncodeError, LocalProtocolError
from ._flow import answer_failure, run_handler
from .calls_across import CallsAcross, RemoteCall, RemoteCaller
from .cluster import ClusterReach
from .cluster_rpc import ClusterCall, ClusterReply, procedure_key
from .component import WampComponent
from .messages import (
    BROKER_UNAVAILABLE,
    CALL,
    CANCELED,
    INVALID_ARGUMENT,
    LIMIT_EXCEEDED,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REGISTRATION,
    PROCEDURE_ALREADY_EXISTS,
    PROTOCOL_VIOLATION,
    REGISTER,
    REGISTERED,
    UNREGISTER,
    UNREGISTERED,
    Call,
    Error,
    IdGenerator,
    Invocation,
    Register,
    Result,
    Unregister,
    Yield,
)
from .realm import Procedure, Realm, WampConnection

__all__ = ["Dealer"]

logger = logging.getLogger("ratchetpy.wamp")

# A forwarded call: the other party and the id that party knows the call by.
_Leg = tuple[WampConnection, int]


class _Forward:
    """What routing a call to another worker returns: awaiting it sends the call (once).

    Not a coroutine, so that one never awaited (``procedure.call(...)`` in a plain
    ``on_call`` that does not return it) is no error: the dealer sends it once ``on_call``
    returned."""

    __slots__ = ("dealer", "remote")

    def __init__(self, dealer: Dealer, remote: RemoteCall) -> None:
        self.dealer = dealer
        self.remote = remote

    def __await__(self) -> Generator[Any, None, None]:
        return self.dealer._forward(self.remote).__await__()


class Dealer(Mapping[str, Procedure]):
    """The dealer of ``realm``: asks ``component`` about each registration and call.

    ``max_registrations`` bounds the procedures one session may register, and
    ``max_pending_calls`` the calls one callee may have in flight; past them, REGISTER and
    CALL are answered with ``ratchetpy.error.limit_exceeded`` rather than queued without bound.
    """

    def __init__(
        self,
        realm: Realm,
        component: WampComponent,
        *,
        max_registrations: int,
        max_pending_calls: int,
    ) -> None:
        self.realm = realm
        self.component = component
        self.max_registrations = max_registrations
        self.max_pending_calls = max_pending_calls
        # procedure URI -> (callee, registration id)
        self._registered: dict[str, tuple[WampConnection, int]] = {}
        # each callee's registrations: registration id -> procedure URI
        self._of_session: dict[WampConnection, dict[int, str]] = {}
        # each caller's open calls: call id -> None while the component answers it, else the
        # callee leg it was forwarded to (on this worker or another)
        self._calls: dict[WampConnection, dict[int, _Leg | RemoteCall | None]] = {}
        # each callee's invocations: invocation id -> the caller leg
        self._invocations: dict[WampConnection, dict[int, _Leg | RemoteCaller]] = {}
        # with other workers: procedures being acquired cluster-wide, and the calls between
        # this worker and the others
        self._reach = ClusterReach(realm.name)
        self._reserved: set[str] = set()
        self._across = CallsAcross(
            realm.name,
            on_call=self._invoke_for,
            on_answer=self._answered,
            on_lost=self._fail_remote,
        )

    def __repr__(self) -> str:
        return f"<Dealer of {self.realm.name!r}: {len(self._registered)} procedures>"

    # -- ProcedureManager: what procedures, sessions and components ask ------------------------

    def __getitem__(self, uri: str) -> Procedure:
        if uri not in self._registered:
            raise KeyError(uri)
        return Procedure(uri, self.realm)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registered))

    def __len__(self) -> int:
        return len(self._registered)

    def callee_of(self, uri: str) -> WampConnection | None:
        registered = self._registered.get(uri)
        return None if registered is None else registered[0]

    def registration_id_of(self, uri: str) -> int | None:
        registered = self._registered.get(uri)
        return None if registered is None else registered[1]

    def pending_calls(self, callee: WampConnection) -> int:
        """How many invocations ``callee`` has not answered yet."""
        return len(self._invocations.get(callee, ()))

    def route(
        self,
        uri: str,
        caller: WampConnection,
        call_id: int,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> MaybeAwaitable:
        calls = self._calls.get(caller)
        if calls is None or calls.get(call_id, False) is not None:
            return None  # answered already, forwarded already, or never opened
        registered = self._registered.get(uri)
        if registered is None:
            cluster = self._reach.others()
            if cluster is not None:
                remote = calls[call_id] = RemoteCall(caller, call_id, (cluster, uri, args, kwargs))
                return _Forward(self, remote)
        if registered is None or not registered[0].joined:
            caller.call_error(call_id, NO_SUCH_PROCEDURE, f"no callee registered for {uri}")
            return None
        callee, registration_id = registered
        invoked = self._invoke(callee, registration_id, args, kwargs, (caller, call_id))
        if isinstance(invoked, tuple):
            caller.call_error(call_id, *invoked)
        else:
            calls[call_id] = (callee, invoked)
        return None

    def bind(self, cluster: MessageBroker) -> None:
        """Reach the other workers through ``cluster`` (the broker of the server whose
        session joined first); later calls change nothing."""
        self._reach.bind(cluster)

    def close_call(self, caller: WampConnection, call_id: int) -> None:
        calls = self._calls.get(caller, {})
        if call_id not in calls:
            raise LocalProtocolError(
                f"call {call_id} of session {caller.session_id} is not open: answered already,"
                " or never made"
            )
        if calls[call_id] is not None:
            raise LocalProtocolError(
                f"call {call_id} was routed to a callee, which answers it; it cannot be answered"
                " here too"
            )
        del calls[call_id]

    # -- requests ------------------------------------------------------------------------------

    def register(self, session: WampConnection, message: Register) -> MaybeAwaitable:
        options = message.options
        if options.get("match", "exact") != "exact" or options.get("invoke", "single") != "single":
            session.send_error(
                REGISTER,
                message.request_id,
                INVALID_ARGUMENT,
                ["only exact matching and single registrations are supported"],
            )
            return None
        if self._taken(session, message):
            return None
        if len(self._of_session.get(session, ())) >= self.max_registrations:
            session.send_error(
                REGISTER,
                message.request_id,
                LIMIT_EXCEEDED,
                [f"at most {self.max_registrations} registrations per session"],
            )
            return None

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is not None:
                return answer_failure(self.component, session, REGISTER, message.request_id, exc)
            if session.closed or not self.realm.has(session):
                return None
            if self._taken(session, message):  # while on_register awaited
                return None
            registration_id = IdGenerator.random()
            cluster = self._reach.others()
            if cluster is not None:
                self._reserved.add(message.procedure)
                return self._register_across(cluster, session, message, registration_id)
            self._registered_now(session, message, registration_id)
            return None

        procedure = Procedure(message.procedure, self.realm)
        return run_handler(self.component.on_register, (session, procedure), done)

    def unregister(self, session: WampConnection, message: Unregister) -> MaybeAwaitable:
        uri = self._of_session.get(session, {}).pop(message.registration_id, None)
        if uri is None:
            session.send_error(
                UNREGISTER,
                message.request_id,
                NO_SUCH_REGISTRATION,
                [f"no registration {message.registration_id} in this session"],
            )
            return None
        self._forget_registration(uri, session)
        cluster = self._reach.others()
        if cluster is None:
            session.send_message([UNREGISTERED, message.request_id])
            return None

        async def release() -> None:
            await self._release(cluster, [uri])
            session.send_message([UNREGISTERED, message.request_id])

        return release()

    def call(self, session: WampConnection, message: Call) -> MaybeAwaitable:
        call_id = message.request_id
        calls = self._calls.setdefault(session, {})
        if call_id in calls:
            session.abort(PROTOCOL_VIOLATION, f"CALL request id {call_id} is in use")
            return None
        calls[call_id] = None

        def done(exc: Exception | None) -> MaybeAwaitable:
            open_calls = self._calls.get(session, {})
            if exc is None:
                forwarded = open_calls.get(call_id)
                if isinstance(forwarded, RemoteCall) and forwarded.pending is not None:
                    return self._forward(forwarded)  # routed, and what it returned dropped
                return None
            answer = open_calls.get(call_id, False) is None and not session.closed
            if answer:
                del open_calls[call_id]
            return answer_failure(self.component, session, CALL, call_id, exc, reply=answer)

        procedure = Procedure(message.procedure, self.realm)
        args = (session, call_id, procedure, message.args, message.kwargs)
        return run_handler(self.component.on_call, args, done)

    def yield_result(self, session: WampConnection, message: Yield) -> None:
        caller_leg = self._take_invocation(session, message.request_id)
        if caller_leg is None:
            return
        if isinstance(caller_leg, RemoteCaller):
            self._across.reply(
                caller_leg, ClusterReply(caller_leg.ref, None, message.args, message.kwargs)
            )
            return
        _answer(*caller_leg, None, message.args, message.kwargs)

    def callee_error(self, session: WampConnection, message: Error) -> None:
        caller_leg = self._take_invocation(session, message.request_id)
        if caller_leg is None:
            return
        if isinstance(caller_leg, RemoteCaller):
            answer = ClusterReply(caller_leg.ref, message.error, message.args, message.kwargs)
            self._across.reply(caller_leg, answer)
            return
        _answer(*caller_leg, message.error, message.args, message.kwargs)

    def remove(self, session: WampConnection) -> MaybeAwaitable:
        """``session`` left: drop its registrations, fail the calls it was serving and forget
        the ones it made. With other workers, what is returned gives up the registrations'
        ownership (awaited, it keeps the next registration from being refused)."""
        uris = list(self._of_session.pop(session, {}).values())
        for uri in uris:
            self._forget_registration(uri, session)
        left = "the callee left before answering"
        for caller_leg in self._invocations.pop(session, {}).values():
            if isinstance(caller_leg, RemoteCaller):
                self._across.reply(caller_leg, ClusterReply(caller_leg.ref, CANCELED, [left], {}))
                continue
            caller, call_id = caller_leg
            calls = self._calls.get(caller)
            if calls is not None and calls.get(call_id) is not None:
                calls[call_id] = None  # reopen, so that call_error may answer it
                caller.call_error(call_id, CANCELED, left)
        for forwarded in self._calls.pop(session, {}).values():
            if isinstance(forwarded, RemoteCall):
                self._across.forget(forwarded)
            elif forwarded is not None:
                callee, invocation_id = forwarded
                self._invocations.get(callee, {}).pop(invocation_id, None)
        cluster = self._reach.others()
        return None if cluster is None or not uris else self._release(cluster, uris)

    def detach(self) -> None:
        """The realm is gone (nobody is in it): stop receiving its calls and answers."""
        self._across.detach()

    def missed(self, channel: str) -> None:
        """Messages of ``channel`` may have been lost (the broker reconnected): calls sent
        away whose answers may be among them fail."""
        self._across.missed(channel)

    # -- internals -----------------------------------------------------------------------------

    def _taken(self, session: WampConnection, message: Register) -> bool:
        """Answer ``procedure_already_exists`` if another session has the procedure."""
        if message.procedure not in self._registered and message.procedure not in self._reserved:
            return False
        session.send_error(
            REGISTER,
            message.request_id,
            PROCEDURE_ALREADY_EXISTS,
            [f"{message.procedure} is registered already"],
        )
        return True

    def _forget_registration(self, uri: str, session: WampConnection) -> None:
        registered = self._registered.get(uri)
        if registered is not None and registered[0] is session:
            del self._registered[uri]

    def _registered_now(
        self, session: WampConnection, message: Register, registration_id: int
    ) -> None:
        self._registered[message.procedure] = (session, registration_id)
        self._of_session.setdefault(session, {})[registration_id] = message.procedure
        session.send_message([REGISTERED, message.request_id, registration_id])

    def _invoke(
        self,
        callee: WampConnection,
        registration_id: int,
        args: list[Any],
        kwargs: dict[str, Any],
        caller_leg: _Leg | RemoteCaller,
    ) -> int | tuple[str, str]:
        """Send ``callee`` an INVOCATION: its id, or the error the caller gets instead."""
        invocations = self._invocations.setdefault(callee, {})
        if len(invocations) >= self.max_pending_calls:
            return LIMIT_EXCEEDED, "the callee has too many calls in flight"
        invocation_id = callee.next_request_id()
        message = Invocation(invocation_id, registration_id, {}, args, kwargs)
        try:
            callee.send_message(message.to_list())
        except EncodeError as exc:
            return INVALID_ARGUMENT, f"arguments cannot reach the callee: {exc}"
        invocations[invocation_id] = caller_leg
        return invocation_id

    def _take_invocation(
        self, callee: WampConnection, invocation_id: int
    ) -> _Leg | RemoteCaller | None:
        """The caller and call id a YIELD or ERROR from ``callee`` answers, if still wanted."""
        caller_leg = self._invocations.get(callee, {}).pop(invocation_id, None)
        if caller_leg is None:
            logger.debug(
                "session %s answered invocation %d, which nobody waits for",
                callee.session_id,
                invocation_id,
            )
            return None
        if isinstance(caller_leg, RemoteCaller):
            return caller_leg
        caller, call_id = caller_leg
        calls = self._calls.get(caller)
        if calls is None or calls.get(call_id) != (callee, invocation_id):
            return None
        del calls[call_id]
        return caller_leg

    # -- across workers ------------------------------------------------------------------------

    async def _register_across(
        self,
        cluster: MessageBroker,
        session: WampConnection,
        message: Register,
        registration_id: int,
    ) -> None:
        uri = message.procedure
        key = procedure_key(self.realm.name, uri)
        try:
            try:
                await self._across.listen(cluster)
                won = await cluster.acquire(key, b"%d" % registration_id)
            except BrokerError as exc:
                why = [f"{uri} could not be registered across workers: {exc}"]
                session.send_error(REGISTER, message.request_id, BROKER_UNAVAILABLE, why)
                return
            if not won:
                why = [f"{uri} is registered already (on another worker)"]
                session.send_error(REGISTER, message.request_id, PROCEDURE_ALREADY_EXISTS, why)
                return
        finally:
            self._reserved.discard(uri)
        if session.closed or not self.realm.has(session):
            await self._release(cluster, [uri])  # left while it was being acquired
            return
        self._registered_now(session, message, registration_id)

    async def _release(self, cluster: MessageBroker, uris: list[str]) -> None:
        for uri in uris:
            try:
                await cluster.release(procedure_key(self.realm.name, uri))
            except BrokerError as exc:
                # Its calls get no_such_procedure from here until this worker stops.
                logger.warning("could not release %s for the other workers: %s", uri, exc)

    async def _forward(self, remote: RemoteCall) -> None:
        """Send ``remote`` to the worker of its procedure's callee, or answer why not; once.
        A checkpoint."""
        problem = await self._across.send(remote)
        if problem is not None:
            self._fail_remote(remote, *problem)

    def _answered(self, remote: RemoteCall, message: ClusterReply) -> None:
        """The answer to a call of this worker's session, from the callee's worker."""
        if not self._is_open(remote):
            return  # the caller left meanwhile
        del self._calls[remote.caller][remote.call_id]
        _answer(remote.caller, remote.call_id, message.error, message.args, message.kwargs)

    def _invoke_for(self, call: ClusterCall) -> None:
        caller_leg = RemoteCaller(call.reply_to, call.ref)
        registered = self._registered.get(call.procedure)
        if registered is None or registered[1] != call.registration_id or not registered[0].joined:
            missing = [f"no callee registered for {call.procedure}"]
            self._across.reply(caller_leg, ClusterReply(call.ref, NO_SUCH_PROCEDURE, missing, {}))
            return
        invoked = self._invoke(
            registered[0], call.registration_id, call.args, call.kwargs, caller_leg
        )
        if isinstance(invoked, tuple):
            error, why = invoked
            self._across.reply(caller_leg, ClusterReply(call.ref, error, [why], {}))

    def _is_open(self, remote: RemoteCall) -> bool:
        return self._calls.get(remote.caller, {}).get(remote.call_id) is remote

    def _fail_remote(self, remote: RemoteCall, error: str, why: str) -> None:
        """Answer the caller of ``remote`` with ``error``, if it still waits."""
        calls = self._calls.get(remote.caller)
        if calls is not None and calls.get(remote.call_id) is remote:
            calls[remote.call_id] = None  # reopen, so that call_error may answer it
            remote.caller.call_error(remote.call_id, error, why)


def _answer(
    caller: WampConnection,
    call_id: int,
    error: str | None,
    args: list[Any],
    kwargs: dict[str, Any],
) -> None:
    """Send the callee's answer (a result, or the error URI ``error``) to the caller, from a
    callee on this worker or another. What the caller's serializer cannot carry is replaced by
    the reason: a result by ``invalid_argument``, an error's details by a note."""
    try:
        if error is None:
            caller.send_message(Result(call_id, {}, args, kwargs).to_list())
        else:
            caller.send_error(CALL, call_id, error, args, kwargs)
    except EncodeError as exc:
        if error is None:
            caller.send_error(
                CALL, call_id, INVALID_ARGUMENT, [f"the result cannot reach you: {exc}"]
            )
        else:
            caller.send_error(CALL, call_id, error, [f"error details lost: {exc}"])
