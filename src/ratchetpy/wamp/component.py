"""What the user writes for WAMP: a :class:`WampComponent` (Ratchet's ``WampServerInterface``).

Its handlers refuse a request by raising :class:`~ratchetpy.WampError`.

The base class is a complete router: it accepts every session, subscription and registration,
delivers publications to subscribers and routes calls to callees. Override a handler to
authorize, transform or answer requests yourself; call ``super()`` (or do what it does) to keep
the default behaviour.
"""

from __future__ import annotations

import logging
from typing import Any

from ..components.base import MaybeAwaitable
from .realm import Payload, Procedure, Topic, WampConnection

__all__ = ["WampComponent"]

logger = logging.getLogger("ratchetpy.wamp")


class WampComponent:
    """Base class for a WAMP application (Ratchet's ``WampServerInterface``).

    Serve it with ``App.route("/ws", MyApp())`` or ``WsServer(WampServer(MyApp()))``. Every
    handler may be ``def`` or ``async def``; a session's requests are handled one at a time,
    in order, so an ``async`` handler that awaits (a database lookup to authorize) delays only
    its own session. Each ``conn`` is a :class:`~ratchetpy.wamp.WampConnection`.

    To refuse a request, raise :class:`WampError` (``WampError("wamp.error.not_authorized",
    "members only")``). Any other exception answers the request with
    ``wamp.error.runtime_error`` and goes to :meth:`on_error`.
    """

    def on_open(self, conn: WampConnection) -> MaybeAwaitable:
        """A client asked to join a realm (``conn.realm``); the session starts when this returns.

        Raise :class:`WampError` to refuse the session: the client gets an ABORT with that
        error (``wamp.error.not_authorized``, say) and the connection is closed.
        """
        return None

    def on_close(self, conn: WampConnection) -> MaybeAwaitable:
        """The session ended (GOODBYE, ABORT or connection lost), after ``on_unsubscribe`` for
        each topic it was subscribed to."""
        return None

    def on_error(self, conn: WampConnection, exc: Exception) -> MaybeAwaitable:
        """A handler raised ``exc`` (not a :class:`WampError`) while serving ``conn``.

        The request was already answered with ``wamp.error.runtime_error``. The default logs
        the error with its traceback and keeps the session: one failed request is not a reason
        to drop a client.
        """
        logger.error(
            "WAMP handler error for session %s (connection #%s from %s)",
            conn.session_id,
            conn.resource_id,
            conn.remote_address,
            exc_info=exc,
        )
        return None

    def on_subscribe(self, conn: WampConnection, topic: Topic) -> MaybeAwaitable:
        """``conn`` asks to subscribe to ``topic``; returning accepts, raising refuses.

        The place for per-topic authorization: ``raise WampError("wamp.error.not_authorized",
        ...)``. ``conn`` is not yet among ``topic``'s subscribers while this runs.
        """
        return None

    def on_unsubscribe(self, conn: WampConnection, topic: Topic) -> MaybeAwaitable:
        """``conn`` no longer subscribes to ``topic`` (it unsubscribed or left)."""
        return None

    def on_publish(
        self,
        conn: WampConnection,
        topic: Topic,
        event: Payload,
        exclude: list[int],
        eligible: list[int] | None,
    ) -> MaybeAwaitable:
        """``conn`` published ``event`` to ``topic``.

        ``exclude`` holds the session ids not to deliver to (the publisher's own, unless it
        asked with ``exclude_me=False``, plus those it listed); ``eligible`` the only ones to
        deliver to, or ``None`` for all. The default delivers:
        ``topic.broadcast(event, exclude, eligible)``. Raise :class:`WampError` to refuse;
        the publisher hears of it if it asked for an acknowledgement.
        """
        topic.broadcast(event, exclude, eligible)
        return None

    def on_register(self, conn: WampConnection, procedure: Procedure) -> MaybeAwaitable:
        """``conn`` asks to become the callee of ``procedure``; returning accepts, raising
        refuses (by default any session may register any free procedure)."""
        return None

    def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> MaybeAwaitable:
        """``conn`` calls ``procedure`` with ``args`` and ``kwargs`` (Ratchet's ``onCall``;
        WAMP v2 adds keyword arguments).

        Answer with ``conn.call_result(call_id, ...)`` or ``conn.call_error(call_id, ...)``,
        now or later, or raise :class:`WampError`. The default routes the call to the callee
        that registered ``procedure`` on any worker (``return procedure.call(conn, call_id,
        args, kwargs)``), answering ``wamp.error.no_such_procedure`` when there is none.
        """
        return procedure.call(conn, call_id, args, kwargs)
