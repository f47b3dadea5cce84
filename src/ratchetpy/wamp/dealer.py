"""The dealer half of the WAMP router: procedures, their callees and calls in flight. Sans-IO.

A call travels CALL (caller -> router) -> INVOCATION (router -> callee) -> YIELD or ERROR
(callee -> router) -> RESULT or ERROR (router -> caller). The router keeps two small records per
call in flight: on the caller's side, its call id -> (callee, invocation id); on the callee's
side, the invocation id -> (caller, call id). Whichever side leaves first clears both, so a
vanished peer leaves nothing behind and a late YIELD for a departed caller is dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..exceptions import EncodeError
from .messages import CANCELED, INVALID_ARGUMENT, NO_SUCH_PROCEDURE, Invocation

if TYPE_CHECKING:
    from .connection import WampConnection
    from .server import Realm

__all__ = ["LIMIT_EXCEEDED", "Procedure"]

logger = logging.getLogger("ratchetpy.wamp")

#: Error URI for a request refused because a per-session limit was reached (not a standard
#: URI: the Basic Profile defines none for this).
LIMIT_EXCEEDED = "ratchetpy.error.limit_exceeded"


class Procedure:
    """A procedure URI in one realm and the callee registered for it, if any.

    ``id`` is the URI (``str(procedure)`` too); ``callee`` the registered
    :class:`~ratchetpy.wamp.WampConnection` or ``None``. Ratchet's ``onCall`` received such an
    object as ``$topic``.
    """

    __slots__ = ("callee", "id", "realm", "registration_id")

    def __init__(
        self,
        uri: str,
        realm: Realm,
        callee: WampConnection | None = None,
        registration_id: int | None = None,
    ) -> None:
        self.id = uri
        self.realm = realm
        self.callee = callee
        self.registration_id = registration_id

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        callee = f"session {self.callee.session_id}" if self.callee is not None else "no callee"
        return f"<Procedure {self.id!r} in {self.realm.name!r}: {callee}>"

    def call(
        self,
        caller: WampConnection,
        call_id: int,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Route an open call to the registered callee (what the default ``on_call`` does).

        Without a callee the caller gets ``wamp.error.no_such_procedure``. The callee's YIELD
        or ERROR becomes the caller's RESULT or ERROR. Not a checkpoint.
        """
        if caller._open_calls.get(call_id, False) is not None:
            return  # answered already, forwarded already, or never opened
        callee = self.callee
        if callee is None or self.registration_id is None or not callee.joined:
            caller.call_error(call_id, NO_SUCH_PROCEDURE, f"no callee registered for {self.id}")
            return
        if len(callee._invocations) >= callee._server.max_pending_calls:
            caller.call_error(
                call_id, LIMIT_EXCEEDED, f"the callee of {self.id} has too many calls in flight"
            )
            return
        invocation_id = callee._request_ids.next()
        message = Invocation(invocation_id, self.registration_id, {}, args or [], kwargs or {})
        try:
            callee._send_message(message.to_list())
        except EncodeError as exc:
            caller.call_error(
                call_id, INVALID_ARGUMENT, f"arguments cannot reach the callee: {exc}"
            )
            return
        callee._invocations[invocation_id] = (caller, call_id)
        caller._open_calls[call_id] = (callee, invocation_id)


def cancel_calls_of(session: WampConnection) -> None:
    """``session`` is leaving: fail the calls it was serving and forget the ones it made."""
    invocations = session._invocations
    session._invocations = {}
    for caller, call_id in invocations.values():
        if caller._open_calls.get(call_id) is not None:
            caller._open_calls[call_id] = None  # reopen, so that call_error may answer it
            caller.call_error(call_id, CANCELED, "the callee left before answering")
    open_calls = session._open_calls
    session._open_calls = {}
    for forwarded in open_calls.values():
        if forwarded is not None:
            callee, invocation_id = forwarded
            callee._invocations.pop(invocation_id, None)


def take_invocation(
    callee: WampConnection, invocation_id: int
) -> tuple[WampConnection, int] | None:
    """The caller and call id a YIELD or ERROR from ``callee`` answers, if still wanted."""
    pending = callee._invocations.pop(invocation_id, None)
    if pending is None:
        logger.debug(
            "session %s answered invocation %d, which nobody waits for",
            callee.session_id,
            invocation_id,
        )
        return None
    caller, call_id = pending
    if caller._open_calls.get(call_id) != (callee, invocation_id):
        return None
    del caller._open_calls[call_id]
    return caller, call_id
