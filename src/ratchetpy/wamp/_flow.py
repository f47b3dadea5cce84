"""How the router runs user handlers that may be ``def`` or ``async def``: continue when the
handler's result is complete, in the connection's own task, keeping each session's requests in
order. Sans-IO: awaiting is left to whoever drives the component (WsServer, then IoServer)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from ..components.base import MaybeAwaitable

__all__ = ["after", "run_handler", "sequence"]


def after(result: Any, done: Callable[[Exception | None], MaybeAwaitable]) -> MaybeAwaitable:
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


def run_handler(
    handler: Callable[..., Any],
    args: tuple[Any, ...],
    done: Callable[[Exception | None], MaybeAwaitable],
) -> MaybeAwaitable:
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
