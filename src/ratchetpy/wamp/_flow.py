"""How the router runs user handlers that may be ``def`` or ``async def``, and how it answers
when one refuses or fails.

A handler's continuation runs when its result is complete, in the connection's own task, which
keeps each session's requests in order. Sans-IO: awaiting is left to whoever drives the
component (WsServer, then IoServer).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..components.base import MaybeAwaitable, report_error
from ..exceptions import EncodeError, WampError
from .component import WampComponent
from .messages import INVALID_ARGUMENT, RUNTIME_ERROR
from .realm import WampConnection

__all__ = ["after", "answer_failure", "log_failure", "run_handler", "sequence"]

logger = logging.getLogger("ratchetpy.wamp")

#: What runs once a handler is done: ``None`` if it returned, else what it raised.
Done = Callable[[Exception | None], MaybeAwaitable]


def after(result: Any, done: Done) -> MaybeAwaitable:
    """Call ``done(None)`` once a handler's result is complete, or ``done(exc)`` if it raised.

    A plain handler's result is complete at once; an ``async def``'s is awaited first (the
    connection's next message waits meanwhile, which keeps each session's requests in order).
    """
    if not inspect.isawaitable(result):
        return done(None)

    async def wait() -> None:
        try:
            await result
        except Exception as exc:
            follow_up = done(exc)
        else:
            follow_up = done(None)
        if follow_up is not None:
            await follow_up

    return wait()


def run_handler(handler: Callable[..., Any], args: tuple[Any, ...], done: Done) -> MaybeAwaitable:
    """Call ``handler(*args)``, then ``done`` as :func:`after` says."""
    try:
        result = handler(*args)
    except Exception as exc:
        return done(exc)
    return after(result, done)


def sequence(steps: Iterable[Callable[[], MaybeAwaitable]]) -> MaybeAwaitable:
    """Run steps in order; from the first that returns an awaitable on, await each."""
    iterator = iter(steps)
    for step in iterator:
        pending = step()
        if pending is not None:

            async def rest(first: Any = pending) -> None:
                await first
                for later in iterator:
                    follow_up = later()
                    if follow_up is not None:
                        await follow_up

            return rest()
    return None


def answer_failure(
    component: WampComponent,
    session: WampConnection,
    request_type: int,
    request_id: int,
    exc: Exception,
    *,
    reply: bool = True,
) -> MaybeAwaitable:
    """A handler refused (:class:`~ratchetpy.WampError`) or failed (anything else) while
    serving a request: tell the client if it waits for an answer (``reply``), and the
    component's ``on_error`` if it was a failure."""
    if isinstance(exc, WampError):
        logger.debug("request %d of session %s refused: %s", request_id, session.session_id, exc)
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
    return report_error(component, session, exc)


def log_failure(component: WampComponent, session: WampConnection) -> Done:
    """A ``done`` for handlers nobody waits on (``on_unsubscribe``, ``on_close``): a failure
    goes to the component's ``on_error``, nothing to the client."""

    def done(exc: Exception | None) -> MaybeAwaitable:
        return None if exc is None else report_error(component, session, exc)

    return done
