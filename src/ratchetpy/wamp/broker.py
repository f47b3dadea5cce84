"""The broker of a WAMP realm: topics, their subscribers, and fan-out. Sans-IO.

:class:`Broker` owns every subscription of one realm, in both directions (topic -> sessions,
session -> topics), answers SUBSCRIBE, UNSUBSCRIBE and PUBLISH, and is the realm's
:class:`~ratchetpy.wamp.TopicManager`: a :class:`~ratchetpy.wamp.Topic` asks it who subscribes
and has it broadcast. A topic exists from its first subscription (one still under way
included) to its last, so memory follows what clients subscribe to.

Every subscriber of a topic shares the topic's subscription id, which the spec allows. An EVENT
is then the same message for each of them, so a publication is serialized once per serializer
in use and framed once (:func:`ratchetpy.broadcast`), however many subscribers there are. The
broker keeps each topic's WebSocket connections grouped by serializer as subscribers come and
go, so an unfiltered broadcast does no per-subscriber Python work before the frames are queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..components.base import MaybeAwaitable
from ..components.connection import Connection
from ..components.ws_connection import broadcast as broadcast_frames
from ._flow import answer_failure, log_failure, run_handler
from .component import WampComponent
from .messages import (
    INVALID_ARGUMENT,
    LIMIT_EXCEEDED,
    MAX_ID,
    NO_SUCH_SUBSCRIPTION,
    PUBLISH,
    PUBLISHED,
    SUBSCRIBE,
    SUBSCRIBED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    Event,
    IdGenerator,
    Publish,
    Subscribe,
    Unsubscribe,
)
from .realm import Payload, Realm, Topic, WampConnection
from .serializers import Serializer

__all__ = ["Broker", "session_ids"]


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


class _Subscribers:
    """One topic as the broker keeps it: its id on the wire and who subscribes."""

    __slots__ = ("groups", "pending", "sessions", "subscription_id", "topic")

    def __init__(self, topic: Topic, subscription_id: int) -> None:
        self.topic = topic
        self.subscription_id = subscription_id
        # A dict keeps subscription order, which makes deliveries reproducible.
        self.sessions: dict[WampConnection, None] = {}
        self.groups: dict[Serializer, dict[Connection, None]] = {}
        self.pending = 0  # subscriptions waiting for an async on_subscribe

    def add(self, session: WampConnection) -> None:
        self.sessions[session] = None
        self.groups.setdefault(session.serializer, {})[session.websocket] = None

    def discard(self, session: WampConnection) -> None:
        self.sessions.pop(session, None)
        group = self.groups.get(session.serializer)
        if group is not None:
            group.pop(session.websocket, None)
            if not group:
                del self.groups[session.serializer]

    @property
    def unused(self) -> bool:
        return not self.sessions and not self.pending


class Broker:
    """The broker of ``realm``: asks ``component`` about each subscription and publication.

    ``max_subscriptions`` bounds what one session can make the broker remember; past it,
    SUBSCRIBE is answered with ``ratchetpy.error.limit_exceeded``.
    """

    def __init__(self, realm: Realm, component: WampComponent, *, max_subscriptions: int) -> None:
        self.realm = realm
        self.component = component
        self.max_subscriptions = max_subscriptions
        self._topics: dict[str, _Subscribers] = {}
        self._by_subscription: dict[int, _Subscribers] = {}
        # Each session's subscriptions: subscription id -> topic URI.
        self._of_session: dict[WampConnection, dict[int, str]] = {}

    def __repr__(self) -> str:
        return f"<Broker of {self.realm.name!r}: {len(self._topics)} topics>"

    # -- TopicManager: what topics, sessions and components ask ------------------------------

    def get(self, uri: str) -> Topic | None:
        state = self._topics.get(uri)
        return None if state is None else state.topic

    def __getitem__(self, uri: str) -> Topic:
        state = self._topics.get(uri)
        return Topic(uri, self.realm) if state is None else state.topic

    def __contains__(self, uri: object) -> bool:
        return uri in self._topics

    def __iter__(self) -> Iterator[Topic]:
        return iter(tuple(state.topic for state in self._topics.values()))

    def __len__(self) -> int:
        return len(self._topics)

    def by_subscription(self, subscription_id: int) -> Topic | None:
        state = self._by_subscription.get(subscription_id)
        return None if state is None else state.topic

    def subscription_id(self, uri: str) -> int | None:
        state = self._topics.get(uri)
        return None if state is None else state.subscription_id

    def subscribers(self, uri: str) -> tuple[WampConnection, ...]:
        state = self._topics.get(uri)
        return () if state is None else tuple(state.sessions)

    def subscriber_count(self, uri: str) -> int:
        state = self._topics.get(uri)
        return 0 if state is None else len(state.sessions)

    def is_subscribed(self, uri: str, session: object) -> bool:
        state = self._topics.get(uri)
        return state is not None and session in state.sessions

    def subscriptions_of(self, session: WampConnection) -> tuple[Topic, ...]:
        mine = self._of_session.get(session, {})
        return tuple(self._topics[uri].topic for uri in mine.values())

    def broadcast(
        self,
        uri: str,
        payload: Payload,
        exclude: Iterable[Any],
        eligible: Iterable[Any] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
    ) -> int:
        state = self._topics.get(uri)
        if state is None or not state.sessions:
            return 0
        if eligible is None and not exclude_authid and eligible_authid is None:
            # The common case, a client's publication: only its own session is excluded,
            # and usually it is not among the subscribers.
            left_out = self._subscribed(state, exclude)
            if not left_out:
                groups = [(serializer, list(group)) for serializer, group in state.groups.items()]
                self._send(state, payload, groups)
                return len(state.sessions)
            recipients = [conn for conn in state.sessions if conn not in left_out]
        else:
            recipients = _filtered(state, exclude, eligible, exclude_authid, eligible_authid)
        if not recipients:
            return 0
        by_serializer: dict[Serializer, list[Connection]] = {}
        for conn in recipients:
            by_serializer.setdefault(conn.serializer, []).append(conn.websocket)
        self._send(state, payload, list(by_serializer.items()))
        return len(recipients)

    # -- requests ------------------------------------------------------------------------------

    def subscribe(self, session: WampConnection, message: Subscribe) -> MaybeAwaitable:
        if message.options.get("match", "exact") != "exact":
            session.send_error(
                SUBSCRIBE,
                message.request_id,
                INVALID_ARGUMENT,
                ["only exact topic matching is supported"],
            )
            return None
        mine = self._of_session.get(session, {})
        for subscription_id, uri in mine.items():
            if uri == message.topic:  # subscribing twice: the same subscription
                session.send_message([SUBSCRIBED, message.request_id, subscription_id])
                return None
        if len(mine) >= self.max_subscriptions:
            session.send_error(
                SUBSCRIBE,
                message.request_id,
                LIMIT_EXCEEDED,
                [f"at most {self.max_subscriptions} subscriptions per session"],
            )
            return None
        state = self._acquire(message.topic)

        def done(exc: Exception | None) -> MaybeAwaitable:
            state.pending -= 1
            if exc is not None or session.closed or not self.realm.has(session):
                self._release(state)
                if exc is None:
                    return None
                return answer_failure(self.component, session, SUBSCRIBE, message.request_id, exc)
            state.add(session)
            self._of_session.setdefault(session, {})[state.subscription_id] = message.topic
            session.send_message([SUBSCRIBED, message.request_id, state.subscription_id])
            return None

        return run_handler(self.component.on_subscribe, (session, state.topic), done)

    def unsubscribe(self, session: WampConnection, message: Unsubscribe) -> MaybeAwaitable:
        uri = self._of_session.get(session, {}).pop(message.subscription_id, None)
        if uri is None:
            session.send_error(
                UNSUBSCRIBE,
                message.request_id,
                NO_SUCH_SUBSCRIPTION,
                [f"no subscription {message.subscription_id} in this session"],
            )
            return None
        topic = self._remove_subscriber(uri, session)
        session.send_message([UNSUBSCRIBED, message.request_id])
        done = log_failure(self.component, session)
        return run_handler(self.component.on_unsubscribe, (session, topic), done)

    def publish(self, session: WampConnection, message: Publish) -> MaybeAwaitable:
        options = message.options
        acknowledge = options.get("acknowledge") is True
        try:
            exclude, eligible = self.publish_filters(session, options)
        except ValueError as exc:
            if acknowledge:
                session.send_error(PUBLISH, message.request_id, INVALID_ARGUMENT, [str(exc)])
            return None
        publication_id = IdGenerator.random()
        payload = Payload(message.args, message.kwargs, publication_id)

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is not None:
                return answer_failure(
                    self.component, session, PUBLISH, message.request_id, exc, reply=acknowledge
                )
            if acknowledge:
                session.send_message([PUBLISHED, message.request_id, publication_id])
            return None

        args = (session, self[message.topic], payload, exclude, eligible)
        return run_handler(self.component.on_publish, args, done)

    def publish_filters(
        self, session: WampConnection, options: dict[str, Any]
    ) -> tuple[list[int], list[int] | None]:
        """Turn PUBLISH options into Ratchet's ``exclude`` / ``eligible`` session id lists;
        ValueError for options of the wrong type."""
        assert session.session_id is not None
        exclude_me = options.get("exclude_me", True)
        if type(exclude_me) is not bool:
            raise ValueError("option exclude_me must be a bool")
        exclude = set(_ids(options, "exclude"))
        if exclude_me:
            exclude.add(session.session_id)
        eligible_option = options.get("eligible")
        eligible = None if eligible_option is None else set(_ids(options, "eligible"))
        sessions = self.realm.sessions
        excluded_users = set(_authids(options, "exclude_authid"))
        if excluded_users:
            exclude.update(i for i, s in sessions.items() if s.authid in excluded_users)
        if options.get("eligible_authid") is not None:
            users = set(_authids(options, "eligible_authid"))
            of_users = {i for i, s in sessions.items() if s.authid in users}
            eligible = of_users if eligible is None else eligible & of_users
        return sorted(exclude), None if eligible is None else sorted(eligible)

    def remove(self, session: WampConnection) -> list[Topic]:
        """``session`` left: it subscribes to nothing any more. Returns the topics it did
        subscribe to, for ``on_unsubscribe``."""
        mine = self._of_session.pop(session, {})
        return [self._remove_subscriber(uri, session) for uri in mine.values()]

    # -- internals -----------------------------------------------------------------------------

    def _acquire(self, uri: str) -> _Subscribers:
        """The topic ``uri`` for a subscription under way, created if new.

        Kept from before the subscription is confirmed (``on_subscribe`` may be async) so that
        concurrent first subscribers end up on the same topic; ``pending`` counts them.
        """
        state = self._topics.get(uri)
        if state is None:
            subscription_id = IdGenerator.random(self._by_subscription)
            state = _Subscribers(Topic(uri, self.realm), subscription_id)
            self._topics[uri] = state
            self._by_subscription[subscription_id] = state
        state.pending += 1
        return state

    def _remove_subscriber(self, uri: str, session: WampConnection) -> Topic:
        state = self._topics[uri]
        state.discard(session)
        self._release(state)
        return state.topic

    def _release(self, state: _Subscribers) -> None:
        uri = state.topic.id
        if state.unused and self._topics.get(uri) is state:
            del self._topics[uri]
            del self._by_subscription[state.subscription_id]

    def _subscribed(self, state: _Subscribers, peers: Iterable[Any]) -> set[WampConnection]:
        """Those of ``peers`` (session ids or connections) that subscribe to ``state``."""
        if not peers:
            return set()
        sessions = self.realm.sessions
        found = set()
        for session_id in session_ids(peers):
            conn = sessions.get(session_id)
            if conn is not None and conn in state.sessions:
                found.add(conn)
        return found

    @staticmethod
    def _send(
        state: _Subscribers, payload: Payload, groups: list[tuple[Serializer, list[Connection]]]
    ) -> None:
        """Encode the EVENT once per serializer, all before sending any, then frame it once."""
        publication_id = payload.publication_id
        if publication_id is None:
            publication_id = IdGenerator.random()
        event = Event(state.subscription_id, publication_id, {}, payload.args, payload.kwargs)
        message = event.to_list()
        encoded = [(serializer.encode(message), group) for serializer, group in groups]
        for data, group in encoded:
            broadcast_frames(group, data)


def _filtered(
    state: _Subscribers,
    exclude: Iterable[Any],
    eligible: Iterable[Any] | None,
    exclude_authid: Iterable[str],
    eligible_authid: Iterable[str] | None,
) -> list[WampConnection]:
    excluded = session_ids(exclude)
    allowed = None if eligible is None else session_ids(eligible)
    excluded_users = set(exclude_authid)
    allowed_users = None if eligible_authid is None else set(eligible_authid)
    return [
        conn
        for conn in state.sessions
        if conn.session_id not in excluded
        and (allowed is None or conn.session_id in allowed)
        and (not excluded_users or conn.authid not in excluded_users)
        and (allowed_users is None or conn.authid in allowed_users)
    ]


def _ids(options: dict[str, Any], name: str) -> list[int]:
    value = options.get(name, [])
    if type(value) is not list or not all(
        type(item) is int and 1 <= item <= MAX_ID for item in value
    ):
        raise ValueError(f"option {name} must be a list of session ids (integers in [1, 2^53])")
    return value


def _authids(options: dict[str, Any], name: str) -> list[str]:
    value = options.get(name, [])
    if type(value) is not list or any(type(item) is not str for item in value):
        raise ValueError(f"option {name} must be a list of strings")
    return value
