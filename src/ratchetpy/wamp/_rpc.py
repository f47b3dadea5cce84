"""The dealer's requests: REGISTER, UNREGISTER, CALL, and the callee's YIELD and ERROR, for
:class:`WampServer` (the bookkeeping of calls in flight is in :mod:`.dealer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..components.base import MaybeAwaitable
from ..exceptions import EncodeError
from ._flow import run_handler
from .connection import WampConnection
from .dealer import LIMIT_EXCEEDED, Procedure, take_invocation
from .messages import (
    CALL,
    INVALID_ARGUMENT,
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
    Register,
    Result,
    Unregister,
    Yield,
)

if TYPE_CHECKING:
    from .server import WampServer

__all__ = ["call", "callee_error", "register", "unregister", "yield_result"]


def register(server: WampServer, session: WampConnection, message: Register) -> MaybeAwaitable:
    realm = session.realm
    assert realm is not None
    options = message.options
    if options.get("match", "exact") != "exact" or options.get("invoke", "single") != "single":
        session.send_error(
            REGISTER,
            message.request_id,
            INVALID_ARGUMENT,
            ["only exact matching and single registrations are supported"],
        )
        return None
    if _taken(session, message):
        return None
    if len(session._registrations) >= server.max_registrations:
        session.send_error(
            REGISTER,
            message.request_id,
            LIMIT_EXCEEDED,
            [f"at most {server.max_registrations} registrations per session"],
        )
        return None
    procedure = Procedure(message.procedure, realm)

    def done(exc: Exception | None) -> MaybeAwaitable:
        if exc is not None:
            return server._answer_failure(session, REGISTER, message.request_id, exc)
        if session.closed or session.realm is not realm:
            return None
        if _taken(session, message):  # while on_register awaited
            return None
        registration_id = IdGenerator.random()
        procedure.callee = session
        procedure.registration_id = registration_id
        realm.procedures[procedure.id] = procedure
        session._registrations[registration_id] = procedure
        session._send_message([REGISTERED, message.request_id, registration_id])
        return None

    return run_handler(server.component.on_register, (session, procedure), done)


def _taken(session: WampConnection, message: Register) -> bool:
    """Answer ``procedure_already_exists`` if another session has the procedure."""
    assert session.realm is not None
    if message.procedure not in session.realm.procedures:
        return False
    session.send_error(
        REGISTER,
        message.request_id,
        PROCEDURE_ALREADY_EXISTS,
        [f"{message.procedure} is registered already"],
    )
    return True


def unregister(server: WampServer, session: WampConnection, message: Unregister) -> MaybeAwaitable:
    procedure = session._registrations.pop(message.registration_id, None)
    if procedure is None:
        session.send_error(
            UNREGISTER,
            message.request_id,
            NO_SUCH_REGISTRATION,
            [f"no registration {message.registration_id} in this session"],
        )
        return None
    assert session.realm is not None
    if session.realm.procedures.get(procedure.id) is procedure:
        del session.realm.procedures[procedure.id]
    procedure.callee = None
    session._send_message([UNREGISTERED, message.request_id])
    return None


def call(server: WampServer, session: WampConnection, message: Call) -> MaybeAwaitable:
    realm = session.realm
    assert realm is not None
    call_id = message.request_id
    if call_id in session._open_calls:
        server._abort(session, PROTOCOL_VIOLATION, f"CALL request id {call_id} is in use")
        return None
    procedure = realm.procedures.get(message.procedure) or Procedure(message.procedure, realm)
    session._open_calls[call_id] = None

    def done(exc: Exception | None) -> MaybeAwaitable:
        if exc is None:
            return None
        answer = session._open_calls.get(call_id, False) is None and not session.closed
        if answer:
            del session._open_calls[call_id]
        return server._answer_failure(session, CALL, call_id, exc, reply=answer)

    return run_handler(
        server.component.on_call,
        (session, call_id, procedure, message.args, message.kwargs),
        done,
    )


def yield_result(server: WampServer, session: WampConnection, message: Yield) -> None:
    pending = take_invocation(session, message.request_id)
    if pending is None:
        return
    caller, call_id = pending
    try:
        caller._send_message(Result(call_id, {}, message.args, message.kwargs).to_list())
    except EncodeError as exc:
        caller.send_error(CALL, call_id, INVALID_ARGUMENT, [f"the result cannot reach you: {exc}"])


def callee_error(server: WampServer, session: WampConnection, message: Error) -> None:
    pending = take_invocation(session, message.request_id)
    if pending is None:
        return
    caller, call_id = pending
    try:
        caller.send_error(CALL, call_id, message.error, message.args, message.kwargs)
    except EncodeError as exc:
        caller.send_error(CALL, call_id, message.error, [f"error details lost: {exc}"])
