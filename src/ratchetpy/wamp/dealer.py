"""The dealer of a WAMP realm: procedures, their callees and the calls in flight. Sans-IO.

A call travels CALL (caller -> router) -> INVOCATION (router -> callee) -> YIELD or ERROR
(callee -> router) -> RESULT or ERROR (router -> caller). :class:`Dealer` owns every
registration of one realm and two small records per call in flight: on the caller's side its
call id -> (callee, invocation id), ``None`` while the component answers the call itself; on
the callee's side the invocation id -> (caller, call id). Whichever side leaves first clears
both, so a vanished peer leaves nothing behind and a late YIELD for a departed caller is
dropped. The dealer is also the realm's :class:`~ratchetpy.wamp.ProcedureManager`: a read-only
mapping of the registered procedures that a :class:`~ratchetpy.wamp.Procedure` asks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from ..components.base import MaybeAwaitable
from ..exceptions import EncodeError, LocalProtocolError
from ._flow import answer_failure, run_handler
from .component import WampComponent
from .messages import (
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
        # callee leg it was forwarded to
        self._calls: dict[WampConnection, dict[int, _Leg | None]] = {}
        # each callee's invocations: invocation id -> the caller leg
        self._invocations: dict[WampConnection, dict[int, _Leg]] = {}

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
    ) -> None:
        calls = self._calls.get(caller)
        if calls is None or calls.get(call_id, False) is not None:
            return  # answered already, forwarded already, or never opened
        registered = self._registered.get(uri)
        if registered is None or not registered[0].joined:
            caller.call_error(call_id, NO_SUCH_PROCEDURE, f"no callee registered for {uri}")
            return
        callee, registration_id = registered
        invocations = self._invocations.setdefault(callee, {})
        if len(invocations) >= self.max_pending_calls:
            caller.call_error(
                call_id, LIMIT_EXCEEDED, f"the callee of {uri} has too many calls in flight"
            )
            return
        invocation_id = callee.next_request_id()
        message = Invocation(invocation_id, registration_id, {}, args, kwargs)
        try:
            callee.send_message(message.to_list())
        except EncodeError as exc:
            caller.call_error(
                call_id, INVALID_ARGUMENT, f"arguments cannot reach the callee: {exc}"
            )
            return
        invocations[invocation_id] = (caller, call_id)
        calls[call_id] = (callee, invocation_id)

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
            self._registered[message.procedure] = (session, registration_id)
            self._of_session.setdefault(session, {})[registration_id] = message.procedure
            session.send_message([REGISTERED, message.request_id, registration_id])
            return None

        procedure = Procedure(message.procedure, self.realm)
        return run_handler(self.component.on_register, (session, procedure), done)

    def unregister(self, session: WampConnection, message: Unregister) -> None:
        uri = self._of_session.get(session, {}).pop(message.registration_id, None)
        if uri is None:
            session.send_error(
                UNREGISTER,
                message.request_id,
                NO_SUCH_REGISTRATION,
                [f"no registration {message.registration_id} in this session"],
            )
            return
        self._forget_registration(uri, session)
        session.send_message([UNREGISTERED, message.request_id])

    def call(self, session: WampConnection, message: Call) -> MaybeAwaitable:
        call_id = message.request_id
        calls = self._calls.setdefault(session, {})
        if call_id in calls:
            session.abort(PROTOCOL_VIOLATION, f"CALL request id {call_id} is in use")
            return None
        calls[call_id] = None

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is None:
                return None
            open_calls = self._calls.get(session, {})
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
        caller, call_id = caller_leg
        try:
            caller.send_message(Result(call_id, {}, message.args, message.kwargs).to_list())
        except EncodeError as exc:
            why = [f"the result cannot reach you: {exc}"]
            caller.send_error(CALL, call_id, INVALID_ARGUMENT, why)

    def callee_error(self, session: WampConnection, message: Error) -> None:
        caller_leg = self._take_invocation(session, message.request_id)
        if caller_leg is None:
            return
        caller, call_id = caller_leg
        try:
            caller.send_error(CALL, call_id, message.error, message.args, message.kwargs)
        except EncodeError as exc:
            caller.send_error(CALL, call_id, message.error, [f"error details lost: {exc}"])

    def remove(self, session: WampConnection) -> None:
        """``session`` left: drop its registrations, fail the calls it was serving and forget
        the ones it made."""
        for uri in self._of_session.pop(session, {}).values():
            self._forget_registration(uri, session)
        for caller, call_id in self._invocations.pop(session, {}).values():
            calls = self._calls.get(caller)
            if calls is not None and calls.get(call_id) is not None:
                calls[call_id] = None  # reopen, so that call_error may answer it
                caller.call_error(call_id, CANCELED, "the callee left before answering")
        for forwarded in self._calls.pop(session, {}).values():
            if forwarded is not None:
                callee, invocation_id = forwarded
                self._invocations.get(callee, {}).pop(invocation_id, None)

    # -- internals -----------------------------------------------------------------------------

    def _taken(self, session: WampConnection, message: Register) -> bool:
        """Answer ``procedure_already_exists`` if another session has the procedure."""
        if message.procedure not in self._registered:
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

    def _take_invocation(self, callee: WampConnection, invocation_id: int) -> _Leg | None:
        """The caller and call id a YIELD or ERROR from ``callee`` answers, if still wanted."""
        caller_leg = self._invocations.get(callee, {}).pop(invocation_id, None)
        if caller_leg is None:
            logger.debug(
                "session %s answered invocation %d, which nobody waits for",
                callee.session_id,
                invocation_id,
            )
            return None
        caller, call_id = caller_leg
        calls = self._calls.get(caller)
        if calls is None or calls.get(call_id) != (callee, invocation_id):
            return None
        del calls[call_id]
        return caller_leg
