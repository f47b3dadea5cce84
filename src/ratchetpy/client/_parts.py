"""What a client session hands out: :class:`CallResult`, :class:`Subscription` and
:class:`Registration`. A subscription owns the queue of events waiting for its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio

from ..wamp.messages import is_valid_uri

__all__ = ["CallResult", "Registration", "Subscription"]

#: A subscription's queued events: ``(args, kwargs)`` of each.
EventQueue = trio.MemorySendChannel[tuple[list[Any], dict[str, Any]]]


class CallResult:
    """Several values, or keyword values, as one call result.

    A registered function returns ``CallResult(1, 2, unit="cm")`` to answer with more than
    one value; :meth:`Session.call` returns one when the result is more than a single
    positional value. Compare ``args`` (a list) and ``kwargs`` (a dict).
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = list(args)
        self.kwargs = kwargs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallResult):
            return NotImplemented
        return (self.args, self.kwargs) == (other.args, other.kwargs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CallResult(args={self.args!r}, kwargs={self.kwargs!r})"

    @staticmethod
    def of(args: list[Any], kwargs: dict[str, Any]) -> Any:
        """What :meth:`Session.call` returns for a RESULT with ``args`` and ``kwargs``: nothing,
        the one value, or a :class:`CallResult` of all of them."""
        if kwargs or len(args) > 1:
            return CallResult(*args, **kwargs)
        return args[0] if args else None


class Subscription:
    """A handler subscribed to ``topic`` (``id`` is the router's subscription id)."""

    def __init__(
        self,
        topic: str,
        subscription_id: int,
        handler: Callable[..., Any],
        events: EventQueue,
        end: Callable[[Subscription], Awaitable[None]],
    ) -> None:
        self.topic = topic
        self.id = subscription_id
        self.handler = handler
        self._events = events
        self._end = end

    def __repr__(self) -> str:
        return f"<Subscription {self.id} to {self.topic!r}>"

    async def unsubscribe(self) -> None:
        """Stop calling the handler (events already queued are still handled) and, if it was
        the session's last handler for the topic, tell the router. A checkpoint; raises
        :class:`~ratchetpy.WampRequestError` if the router refuses,
        :class:`~ratchetpy.SessionClosed` if the session is gone.
        """
        await self._end(self)

    async def deliver(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Queue an event for the handler; waits while the handler is behind. An event for a
        subscription that ended (unsubscribed, or its handler failed) is dropped."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._events.send((args, kwargs))

    def stop(self) -> None:
        """No more events: the handler's task handles what is queued, then ends."""
        self._events.close()


class Registration:
    """``procedure`` served by ``function`` (``id`` is the router's registration id)."""

    def __init__(
        self,
        procedure: str,
        registration_id: int,
        function: Callable[..., Any],
        end: Callable[[Registration], Awaitable[None]],
    ) -> None:
        self.procedure = procedure
        self.id = registration_id
        self.function = function
        self._end = end

    def __repr__(self) -> str:
        return f"<Registration {self.id} of {self.procedure!r}>"

    async def unregister(self) -> None:
        """Stop serving the procedure. A checkpoint; raises
        :class:`~ratchetpy.WampRequestError` if the router refuses,
        :class:`~ratchetpy.SessionClosed` if the session is gone."""
        await self._end(self)


def checked_uri(value: object, what: str) -> str:
    """``value`` if it is a WAMP URI (by the router's rule), else ValueError naming ``what``."""
    if not isinstance(value, str) or not is_valid_uri(value):
        raise ValueError(f"{what} must be a WAMP URI (dot-separated words), not {value!r}")
    return value
