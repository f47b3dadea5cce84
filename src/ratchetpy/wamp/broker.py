"""The broker half of the WAMP router: topics, their subscribers and fan-out. Sans-IO.

A :class:`Topic` is Ratchet's ``Topic``: a URI, the sessions subscribed to it and
:meth:`Topic.broadcast`. The :class:`TopicManager` of a realm (Ratchet's ``TopicManager``)
creates a topic at its first subscription and forgets it with its last subscriber, so memory
follows what clients actually subscribe to.

Every subscriber of a topic shares the topic's subscription id, which the spec allows. An EVENT
is then the same message for each of them, so a publication is serialized once per serializer
in use and framed once (:func:`ratchetpy.broadcast`), however many subscribers there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..components.ws_server import broadcast as _broadcast_frames
from .messages import Event, IdGenerator
from .serializers import Serializer

if TYPE_CHECKING:
    from .connection import WampConnection
    from .server import Realm

__all__ = ["Payload", "Topic", "TopicManager"]


@dataclass(frozen=True, slots=True)
class Payload:
    """What a publication (or a call) carries: positional ``args`` and keyword ``kwargs``.

    WAMP v1, which Ratchet speaks, carried one value per event; v2 carries both lists. A
    Ratchet-style ``topic.broadcast(value)`` sends ``args=[value]``, which AutobahnJS hands to
    the subscriber as ``args[0]``.

    ``publication_id`` is set on the payload a client published, so that the PUBLISHED
    acknowledgement and the events carry the same id; ``None`` asks for a fresh one.
    """

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    publication_id: int | None = None

    @classmethod
    def of(cls, msg: Any) -> Payload:
        """``msg`` itself if it is a payload, else a payload with ``msg`` as its only argument."""
        return msg if isinstance(msg, Payload) else cls([msg])


def session_ids(peers: Iterable[Any]) -> set[int]:
    """Session ids from a mix of ints and connections (anything with ``session_id``)."""
    ids: set[int] = set()
    for peer in peers:
        if type(peer) is int:
            ids.add(peer)
        else:
            session_id = getattr(peer, "session_id", None)
            if session_id is None:
                raise TypeError(f"expected a session id or a WAMP connection, got {peer!r}")
            ids.add(session_id)
    return ids


class Topic:
    """A topic URI in one realm and the sessions subscribed to it (Ratchet's ``Topic``).

    ``id`` is the URI (``str(topic)`` too); ``len(topic)`` counts subscribers (Ratchet's
    ``count()``); iterating yields the subscribed :class:`~ratchetpy.wamp.WampConnection`\\ s;
    ``conn in topic`` tests membership. ``subscription_id`` is what subscribers know the topic
    by on the wire (``None`` for a topic nobody subscribes to).
    """

    __slots__ = ("_groups", "_pending", "_subscribers", "id", "realm", "subscription_id")

    def __init__(self, uri: str, realm: Realm, subscription_id: int | None) -> None:
        self.id = uri
        self.realm = realm
        self.subscription_id = subscription_id
        # A dict keeps subscription order, which makes deliveries reproducible.
        self._subscribers: dict[WampConnection, None] = {}
        # The subscribers' WebSocket connections by serializer, kept up to date as they come
        # and go, so that an unfiltered broadcast does no per-subscriber Python work before
        # the frame is queued.
        self._groups: dict[Serializer, dict[Any, None]] = {}
        self._pending = 0  # subscriptions waiting for an async on_subscribe

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<Topic {self.id!r} in {self.realm.name!r}: {len(self._subscribers)} subscribers>"

    def __len__(self) -> int:
        return len(self._subscribers)

    def __iter__(self) -> Iterator[WampConnection]:
        return iter(tuple(self._subscribers))

    def __contains__(self, conn: object) -> bool:
        return conn in self._subscribers

    @property
    def subscribers(self) -> tuple[WampConnection, ...]:
        """The subscribed sessions, in subscription order."""
        return tuple(self._subscribers)

    def broadcast(
        self,
        msg: Any,
        exclude: Iterable[Any] = (),
        eligible: Iterable[Any] | None = None,
        *,
        exclude_authid: Iterable[str] = (),
        eligible_authid: Iterable[str] | None = None,
    ) -> int:
        """Send ``msg`` as an EVENT to this topic's subscribers; return how many it went to.

        ``msg`` is a :class:`Payload` or any value (sent as the only argument). ``exclude`` and
        ``eligible`` hold session ids or connections, as in Ratchet; ``eligible=None`` means
        everyone, while an empty ``eligible`` means no one (WAMP v2's meaning; Ratchet treated
        an empty list as everyone). ``exclude_authid`` / ``eligible_authid`` filter by
        authenticated user id (``conn.authid``): the way to reach every tab of one user.

        The event is serialized once per serializer in use and framed once; an unfiltered
        broadcast (or one whose excluded sessions do not subscribe) does no per-subscriber
        Python work beyond queuing the frame. If the payload
        cannot be encoded for one of the recipients' serializers (say, an int beyond 64 bits
        for msgpack), :class:`~ratchetpy.wamp.EncodeError` is raised and nobody receives it.
        Not a checkpoint; slow subscribers are handled as by ``send``.
        """
        payload = Payload.of(msg)
        if self.subscription_id is None or not self._subscribers:
            return 0
        if eligible is None and not exclude_authid and eligible_authid is None:
            # The common case, a client's publication: only its own session is excluded,
            # and usually it is not among the subscribers.
            left_out = self._subscribed(exclude)
            if not left_out:
                groups = [(serializer, list(group)) for serializer, group in self._groups.items()]
                self._send(payload, groups)
                return len(self._subscribers)
            recipients = [conn for conn in self._subscribers if conn not in left_out]
        else:
            recipients = self._recipients(exclude, eligible, exclude_authid, eligible_authid)
        if not recipients:
            return 0
        by_serializer: dict[Serializer, list[Any]] = {}
        for conn in recipients:
            by_serializer.setdefault(conn._serializer, []).append(conn._ws)
        self._send(payload, list(by_serializer.items()))
        return len(recipients)

    def _send(self, payload: Payload, groups: list[tuple[Serializer, list[Any]]]) -> None:
        """Encode the EVENT once per serializer, all before sending any, then frame it once."""
        publication_id = payload.publication_id
        if publication_id is None:
            publication_id = IdGenerator.random()
        assert self.subscription_id is not None  # checked by broadcast()
        event = Event(self.subscription_id, publication_id, {}, payload.args, payload.kwargs)
        message = event.to_list()
        encoded = [(serializer.encode(message), group) for serializer, group in groups]
        for data, group in encoded:
            _broadcast_frames(group, data)

    def _subscribed(self, peers: Iterable[Any]) -> set[WampConnection]:
        """Those of ``peers`` (session ids or connections) that subscribe to this topic."""
        if not peers:
            return set()
        sessions = self.realm.sessions
        found = set()
        for session_id in session_ids(peers):
            conn = sessions.get(session_id)
            if conn is not None and conn in self._subscribers:
                found.add(conn)
        return found

    def _recipients(
        self,
        exclude: Iterable[Any],
        eligible: Iterable[Any] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
    ) -> list[WampConnection]:
        subscribers = self._subscribers
        if not exclude and eligible is None and not exclude_authid and eligible_authid is None:
            return list(subscribers)
        excluded = session_ids(exclude)
        allowed = None if eligible is None else session_ids(eligible)
        excluded_users = set(exclude_authid)
        allowed_users = None if eligible_authid is None else set(eligible_authid)
        return [
            conn
            for conn in subscribers
            if conn.session_id not in excluded
            and (allowed is None or conn.session_id in allowed)
            and (not excluded_users or conn.authid not in excluded_users)
            and (allowed_users is None or conn.authid in allowed_users)
        ]


class TopicManager:
    """The topics of one realm, by URI (Ratchet's ``TopicManager``).

    ``manager.get(uri)`` gives the topic if anyone subscribes to it; ``manager[uri]`` gives it
    too, or a fresh empty :class:`Topic` that is not kept (broadcasting to it reaches nobody);
    iterating yields the topics with subscribers.
    """

    __slots__ = ("_by_subscription", "_by_uri", "_realm")

    def __init__(self, realm: Realm) -> None:
        self._realm = realm
        self._by_uri: dict[str, Topic] = {}
        self._by_subscription: dict[int, Topic] = {}

    def __repr__(self) -> str:
        return f"<TopicManager of {self._realm.name!r}: {len(self._by_uri)} topics>"

    def get(self, uri: str) -> Topic | None:
        """The topic ``uri`` if it exists (someone subscribes or a subscription is under way)."""
        return self._by_uri.get(uri)

    def __getitem__(self, uri: str) -> Topic:
        topic = self._by_uri.get(uri)
        return topic if topic is not None else Topic(uri, self._realm, None)

    def __contains__(self, uri: object) -> bool:
        return uri in self._by_uri

    def __iter__(self) -> Iterator[Topic]:
        return iter(tuple(self._by_uri.values()))

    def __len__(self) -> int:
        return len(self._by_uri)

    def by_subscription(self, subscription_id: int) -> Topic | None:
        """The topic known by ``subscription_id`` on the wire."""
        return self._by_subscription.get(subscription_id)

    # -- used by the router ------------------------------------------------------------------

    def acquire(self, uri: str) -> Topic:
        """The topic ``uri`` for a subscription under way, created if new.

        Kept from before the subscription is confirmed (``on_subscribe`` may be async) so that
        concurrent first subscribers end up on the same topic object; :meth:`settle` ends it.
        """
        topic = self._by_uri.get(uri)
        if topic is None:
            subscription_id = IdGenerator.random(self._by_subscription)
            topic = Topic(uri, self._realm, subscription_id)
            self._by_uri[uri] = topic
            self._by_subscription[subscription_id] = topic
        topic._pending += 1
        return topic

    def settle(self, topic: Topic, subscriber: WampConnection | None) -> None:
        """End a subscription under way: add ``subscriber``, or nobody if it was refused."""
        topic._pending -= 1
        if subscriber is not None:
            topic._subscribers[subscriber] = None
            topic._groups.setdefault(subscriber._serializer, {})[subscriber._ws] = None
        else:
            self._release(topic)

    def discard(self, topic: Topic, subscriber: WampConnection) -> None:
        """Remove ``subscriber`` from ``topic``, forgetting the topic if it is now unused."""
        topic._subscribers.pop(subscriber, None)
        group = topic._groups.get(subscriber._serializer)
        if group is not None:
            group.pop(subscriber._ws, None)
            if not group:
                del topic._groups[subscriber._serializer]
        self._release(topic)

    def _release(self, topic: Topic) -> None:
        if not topic._subscribers and not topic._pending and self._by_uri.get(topic.id) is topic:
            del self._by_uri[topic.id]
            if topic.subscription_id is not None:
                self._by_subscription.pop(topic.subscription_id, None)
