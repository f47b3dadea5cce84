"""What a client session hands out (:class:`CallResult`, :class:`Subscription`,
:class:`Registration`) and the checks it applies to the router's messages, which are not
trusted any more than a client's are by the router."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from ..wamp.messages import MAX_ID, is_valid_uri

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["CallResult", "Registration", "Subscription"]


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


class _Malformed(Exception):
    """The router sent something that is not a WAMP message a client can receive."""


class _Pending:
    """A request waiting for its answer (or its ERROR)."""

    __slots__ = ("answer", "error", "event", "request_type")

    def __init__(self, request_type: int) -> None:
        self.request_type = request_type
        self.event = trio.Event()
        self.answer: list[Any] = []
        self.error: BaseException | None = None


class Subscription:
    """A handler subscribed to ``topic`` (``id`` is the router's subscription id)."""

    def __init__(
        self,
        session: Session,
        topic: str,
        subscription_id: int,
        handler: Callable[..., Any],
        events: trio.MemorySendChannel[tuple[list[Any], dict[str, Any]]],
    ) -> None:
        self.session = session
        self.topic = topic
        self.id = subscription_id
        self.handler = handler
        self._events = events

    def __repr__(self) -> str:
        return f"<Subscription {self.id} to {self.topic!r}>"

    async def unsubscribe(self) -> None:
        """Stop calling the handler (events already queued are still handled) and, if it was
        the session's last handler for the topic, tell the router. A checkpoint; raises
        :class:`WampRequestError` if the router refuses, SessionClosed if the session is gone.
        """
        await self.session._unsubscribe(self)


class Registration:
    """``procedure`` served by ``function`` (``id`` is the router's registration id)."""

    def __init__(
        self, session: Session, procedure: str, registration_id: int, function: Callable[..., Any]
    ) -> None:
        self.session = session
        self.procedure = procedure
        self.id = registration_id
        self.function = function

    def __repr__(self) -> str:
        return f"<Registration {self.id} of {self.procedure!r}>"

    async def unregister(self) -> None:
        """Stop serving the procedure. A checkpoint; raises :class:`WampRequestError` if the
        router refuses, SessionClosed if the session is gone."""
        await self.session._unregister(self)


def _uri(value: object, what: str) -> str:
    if not is_valid_uri(value):
        raise ValueError(f"{what} must be a WAMP URI (dot-separated words), not {value!r}")
    assert isinstance(value, str)
    return value


def _tail(head: list[Any], args: Iterable[Any], kwargs: Mapping[str, Any]) -> list[Any]:
    args = list(args)
    if kwargs:
        return [*head, args, dict(kwargs)]
    return [*head, args] if args else head


def _check(message: list[Any], name: str, fixed: int, optional: int = 0) -> None:
    if not fixed <= len(message) <= fixed + optional:
        raise _Malformed(f"{name} with {len(message)} elements")


def _id(message: list[Any], i: int, name: str) -> int:
    value = message[i]
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise _Malformed(f"{name} element {i} is not an id: {value!r:.40}")
    return value


def _payload(message: list[Any], start: int, name: str) -> tuple[list[Any], dict[str, Any]]:
    args = message[start] if len(message) > start else []
    kwargs = message[start + 1] if len(message) > start + 1 else {}
    if type(args) is not list or type(kwargs) is not dict:
        raise _Malformed(f"{name} with arguments that are not a list and a dict")
    return args, kwargs


def _result(args: list[Any], kwargs: dict[str, Any]) -> Any:
    if kwargs or len(args) > 1:
        return CallResult(*args, **kwargs)
    return args[0] if args else None
