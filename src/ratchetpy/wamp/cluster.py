"""WAMP publications between workers, sans-IO: what one worker's broker sends the others.

A publication is delivered by every worker to its own subscribers, so what travels is the
event and the publisher's filters, not a list of recipients: each worker applies ``exclude``
and ``eligible`` (session ids, which are random in [1, 2^53] and so unique across workers)
and ``exclude_authid`` / ``eligible_authid`` (user ids) to the sessions it holds.

The body is a JSON array in WAMP's JSON conventions (binary values as ``"\\u0000"`` +
base64), read back with the router's strict decoder::

    [1, topic, publication_id, args, kwargs, exclude, eligible, exclude_authid, eligible_authid]

``eligible`` and ``eligible_authid`` are ``null`` for "everyone". It travels on the broker
channel ``wamp:<realm>:<topic>``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..broker import MessageBroker, current_broker
from ..exceptions import SerializationError
from .messages import MAX_ID
from .serializers import JsonSerializer

__all__ = [
    "ClusterPublication",
    "ClusterReach",
    "Route",
    "channel_of",
    "sessions_scope",
    "subscribers_scope",
]

logger = logging.getLogger("ratchetpy.wamp")

_VERSION = 1
_JSON = JsonSerializer()


def channel_of(realm: str, topic: str) -> str:
    """The broker channel of ``topic`` in ``realm``."""
    return f"wamp:{realm}:{topic}"


def sessions_scope(realm: str) -> str:
    """The presence scope of the sessions of ``realm`` (members: session ids, users: authid)."""
    return f"wamp-sessions:{realm}"


def subscribers_scope(realm: str, topic: str) -> str:
    """The presence scope of the subscribers of ``topic`` (members: session ids)."""
    return f"wamp-subscribers:{realm}:{topic}"


class ClusterReach:
    """How the broker or dealer of one realm reaches the other workers: through the broker of
    the server whose session joined the realm first (:meth:`bind`), else the one of the
    server running the current task."""

    __slots__ = ("_cluster", "_realm", "_warned")

    def __init__(self, realm: str) -> None:
        self._realm = realm
        self._cluster: MessageBroker | None = None
        self._warned = False

    def bind(self, cluster: MessageBroker) -> None:
        """Reach the other workers through ``cluster``; later calls change nothing."""
        if self._cluster is None:
            self._cluster = cluster

    def bound(self) -> MessageBroker | None:
        """The broker of this realm's server (a :class:`~ratchetpy.broker.MemoryBroker` in one
        process), or ``None`` before any session joined outside a server."""
        return self._cluster or current_broker()

    def others(self) -> MessageBroker | None:
        """The broker to the other workers, or ``None`` when there are none."""
        cluster = self._cluster
        if cluster is None:
            cluster = self._cluster = current_broker()
            if cluster is None and not self._warned:
                # Driven from outside any server before any session joined: whether other
                # workers exist cannot be known, and they would be left out silently.
                self._warned = True
                logger.warning(
                    "realm %s used outside a server before any session joined: other "
                    "workers are not reached (broadcast from a handler, a timer or "
                    "call_soon_threadsafe)",
                    self._realm,
                )
        return cluster if cluster is not None and cluster.distributed else None


class Route:
    """How a client's publication reaches other workers: the filters it gave (before they
    were narrowed to this worker's sessions) and, for an acknowledged one, what still has to
    be accepted by the broker before PUBLISHED."""

    __slots__ = ("eligible", "eligible_authid", "exclude_authid", "unacknowledged")

    def __init__(self, options: dict[str, Any], *, acknowledged: bool) -> None:
        eligible = options.get("eligible")
        self.eligible = None if eligible is None else tuple(eligible)
        self.exclude_authid = tuple(options.get("exclude_authid", ()))
        allowed = options.get("eligible_authid")
        self.eligible_authid = None if allowed is None else tuple(allowed)
        self.unacknowledged: list[tuple[str, bytes]] | None = [] if acknowledged else None


@dataclass(frozen=True, slots=True)
class ClusterPublication:
    """One publication as the other workers receive it."""

    topic: str
    publication_id: int
    args: list[Any]
    kwargs: dict[str, Any]
    exclude: tuple[int, ...] = ()
    eligible: tuple[int, ...] | None = None
    exclude_authid: tuple[str, ...] = ()
    eligible_authid: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        topic: str,
        args: list[Any],
        kwargs: dict[str, Any],
        publication_id: int,
        *,
        exclude: Iterable[int],
        eligible: Iterable[int] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
        route: Route | None = None,
    ) -> ClusterPublication:
        """A broadcast's publication for the other workers. ``route``: the :class:`Route` of
        the client publication it passes on, if it does."""
        excluded_users = tuple(exclude_authid)
        allowed_users = None if eligible_authid is None else tuple(eligible_authid)
        allowed = None if eligible is None else tuple(sorted(eligible))
        if route is not None:
            # A client's filters by user were narrowed to this worker's sessions for Ratchet's
            # lists; the other workers apply them to theirs.
            excluded_users += route.exclude_authid
            if route.eligible_authid is not None:
                allowed_users = route.eligible_authid
                allowed = route.eligible
        return cls(
            topic,
            publication_id,
            args,
            kwargs,
            tuple(sorted(exclude)),
            allowed,
            excluded_users,
            allowed_users,
        )

    def encode(self) -> bytes:
        """The body to publish; :class:`~ratchetpy.EncodeError` for a payload JSON cannot
        carry."""
        message = [
            _VERSION,
            self.topic,
            self.publication_id,
            self.args,
            self.kwargs,
            list(self.exclude),
            None if self.eligible is None else list(self.eligible),
            list(self.exclude_authid),
            None if self.eligible_authid is None else list(self.eligible_authid),
        ]
        return _JSON.encode(message).encode()

    @classmethod
    def decode(cls, body: bytes) -> ClusterPublication:
        """Read a body another worker published; ValueError if it is not one."""
        try:
            message = _JSON.decode(body.decode())
        except (SerializationError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a WAMP publication: {exc}") from None
        if len(message) != 9 or message[0] != _VERSION:
            raise ValueError("not a WAMP publication of this version")
        _, topic, publication_id, args, kwargs, exclude, eligible, excluded, allowed = message
        if not isinstance(topic, str) or not _is_id(publication_id):
            raise ValueError("a WAMP publication without a topic or an id")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("a WAMP publication whose arguments are not a list and a dict")
        return cls(
            topic,
            publication_id,
            args,
            kwargs,
            _ids(exclude),
            None if eligible is None else _ids(eligible),
            _names(excluded),
            None if allowed is None else _names(allowed),
        )


def _is_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


def _ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_id(item) for item in value):
        raise ValueError("a WAMP publication with a session id list that is not one")
    return tuple(value)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("a WAMP publication with a user id list that is not one")
    return tuple(value)
