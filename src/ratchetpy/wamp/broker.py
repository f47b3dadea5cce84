"""The broker of a WAMP realm: topics, their subscribers, and fan-out. Sans-IO.

:class:`Broker` owns every subscription of one realm, in both directions (topic -> sessions,
session -> topics), answers SUBSCRIBE, UNSUBSCRIBE and PUBLISH, and is the realm's
:class:`~ratchetpy.wamp.TopicManager`: a :class:`~ratchetpy.wamp.Topic` asks it who subscribes
and has it broadcast. A topic exists from its first subscription (one still under way
included) to its last, so memory follows what clients subscribe to.

With a distributed broker between workers (:mod:`ratchetpy.broker`), a topic with local
subscribers is listened to on the channel ``wamp:<realm>:<topic>``; SUBSCRIBED is sent once
the broker confirmed that channel, and every broadcast is also passed on to the other
workers, each of which delivers to its own subscribers with the publisher's filters
(:mod:`ratchetpy.wamp.cluster`). An acknowledged PUBLISH is answered PUBLISHED only once the
broker accepted it.

Every subscriber of a topic shares the topic's subscription id, which the spec allows. An EVENT
is then the same message for each of them, so a publication is serialized once per serializer
in use and framed once (:func:`ratchetpy.broadcast`), however many subscribers there are. The
broker keeps each topic's WebSocket connections grouped by serializer as subscribers come and
go, so an unfiltered broadcast does no per-subscriber Python work before the frames are queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..broker import MessageBroker
from ..components.base import MaybeAwaitable
from ..components.connection import Connection
from ..components.ws_connection import broadcast as broadcast_frames
from ..exceptions import BrokerError
from ._flow import answer_failure, log_failure, run_handler
from .cluster import ClusterPublication, ClusterReach, Route, channel_of, subscribers_scope
from .component import WampComponent
from .filters import filtered, publish_filters, session_ids
from .messages import (
    BROKER_UNAVAILABLE,
    INVALID_ARGUMENT,
    LIMIT_EXCEEDED,
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

logger = logging.getLogger("ratchetpy.wamp")


class _Subscribers:
    """One topic as the broker keeps it: its id on the wire and who subscribes."""

    __slots__ = (
        "groups",
        "listener",
        "listening",
        "pending",
        "sessions",
        "subscription_id",
        "topic",
    )

    def __init__(self, topic: Topic, subscription_id: int) -> None:
        self.topic = topic
        self.subscription_id = subscription_id
        # The broker to other workers this topic's channel is listened to on, if any.
        self.listening: MessageBroker | None = None
        self.listener: Callable[[bytes], None] | None = None
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

    def __init__(
        self,
        realm: Realm,
        component: WampComponent,
        *,
        max_subscriptions: int,
        track_subscribers: bool = True,
    ) -> None:
        self.realm = realm
        self.component = component
        self.max_subscriptions = max_subscriptions
        self._topics: dict[str, _Subscribers] = {}
        self._by_subscription: dict[int, _Subscribers] = {}
        # Each session's subscriptions: subscription id -> topic URI.
        self._of_session: dict[WampConnection, dict[int, str]] = {}
        self._reach = ClusterReach(realm.name)
        # who subscribes, in the broker's presence (for wamp.subscription.count_subscribers)
        self.track_subscribers = track_subscribers

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
        others = self._others()
        if others is None:
            if state is None or not state.sessions:
                return 0
            return self._deliver(state, payload, exclude, eligible, exclude_authid, eligible_authid)
        # Encoded for the others first and passed on last: a payload that cannot be encoded
        # for someone (here or there) raises before anyone received it.
        publication_id = payload.publication_id or IdGenerator.random()
        body = self._for_others(
            uri, payload, publication_id, exclude, eligible, exclude_authid, eligible_authid
        )
        route = payload.route
        if payload.publication_id is None:  # one id for this worker's events and theirs
            payload = Payload(payload.args, payload.kwargs, publication_id, route=route)
        receivers = 0
        if state is not None and state.sessions:
            receivers = self._deliver(
                state, payload, exclude, eligible, exclude_authid, eligible_authid
            )
        channel = channel_of(self.realm.name, uri)
        if route is not None and route.unacknowledged is not None:
            route.unacknowledged.append((channel, body))  # awaited before the acknowledgement
        else:
            others.publish_nowait(channel, body)
        return receivers

    def deliver_here(self, uri: str, args: list[Any]) -> int:
        """Send an event of ``uri`` to this worker's subscribers only (what every worker does
        with an event all workers learn of themselves: the meta events). Not a checkpoint."""
        state = self._topics.get(uri)
        if state is None or not state.sessions:
            return 0
        return self._deliver(state, Payload(args, {}, None), (), None, (), None)

    def _deliver(
        self,
        state: _Subscribers,
        payload: Payload,
        exclude: Iterable[Any],
        eligible: Iterable[Any] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
    ) -> int:
        """Send ``payload`` to this worker's subscribers of ``state`` that pass the filters."""
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
            recipients = filtered(
                state.sessions, exclude, eligible, exclude_authid, eligible_authid
            )
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
            if exc is not None or session.closed or not self.realm.has(session):
                state.pending -= 1
                self._release(state)
                if exc is None:
                    return None
                return answer_failure(self.component, session, SUBSCRIBE, message.request_id, exc)
            if state.listening is not None:
                return self._subscribe_across(state.listening, session, state, message)
            state.pending -= 1
            self._subscribed_now(session, state, message)
            return None

        return run_handler(self.component.on_subscribe, (session, state.topic), done)

    async def _subscribe_across(
        self,
        others: MessageBroker,
        session: WampConnection,
        state: _Subscribers,
        message: Subscribe,
    ) -> None:
        """SUBSCRIBED once the other workers' publications reach this one: the spec's order
        of acknowledgement before events holds across workers too."""
        try:
            await others.wait_listening(channel_of(self.realm.name, state.topic.id))
        except BrokerError as exc:
            state.pending -= 1
            self._release(state)
            if not session.closed:
                reason = f"the subscription could not reach the other workers: {exc}"
                session.send_error(SUBSCRIBE, message.request_id, BROKER_UNAVAILABLE, [reason])
            return
        state.pending -= 1
        if session.closed or not self.realm.has(session):
            self._release(state)
            return
        self._subscribed_now(session, state, message)

    def _subscribed_now(
        self, session: WampConnection, state: _Subscribers, message: Subscribe
    ) -> None:
        state.add(session)
        self._of_session.setdefault(session, {})[state.subscription_id] = message.topic
        presence = self._reach.bound() if self.track_subscribers else None
        if presence is not None:  # for wamp.subscription.count_subscribers on any worker
            presence.present(
                subscribers_scope(self.realm.name, message.topic), str(session.session_id)
            )
        session.send_message([SUBSCRIBED, message.request_id, state.subscription_id])

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
            exclude, eligible = publish_filters(session, options, self.realm.sessions)
        except ValueError as exc:
            if acknowledge:
                session.send_error(PUBLISH, message.request_id, INVALID_ARGUMENT, [str(exc)])
            return None
        publication_id = IdGenerator.random()
        others = self._others()
        route = None if others is None else Route(options, acknowledged=acknowledge)
        payload = Payload(message.args, message.kwargs, publication_id, route=route)

        def done(exc: Exception | None) -> MaybeAwaitable:
            if exc is not None:
                return answer_failure(
                    self.component, session, PUBLISH, message.request_id, exc, reply=acknowledge
                )
            if route is not None and route.unacknowledged:
                return self._acknowledge_across(session, message, route, publication_id)
            if acknowledge:
                session.send_message([PUBLISHED, message.request_id, publication_id])
            return None

        args = (session, self[message.topic], payload, exclude, eligible)
        return run_handler(self.component.on_publish, args, done)

    async def _acknowledge_across(
        self,
        session: WampConnection,
        message: Publish,
        route: Route,
        publication_id: int,
    ) -> None:
        """PUBLISHED once the broker accepted what the handler broadcast, else an ERROR: an
        acknowledgement means the other workers were reached."""
        try:
            await self.pass_on(route)
        except BrokerError as exc:
            reason = f"the publication reached this worker's subscribers only: {exc}"
            session.send_error(PUBLISH, message.request_id, BROKER_UNAVAILABLE, [reason])
            return
        session.send_message([PUBLISHED, message.request_id, publication_id])

    async def pass_on(self, route: Route) -> None:
        """Pass on to the other workers what was broadcast with ``route`` and wait until the
        broker accepted it. A checkpoint with other workers; raises
        :class:`~ratchetpy.BrokerError` if the broker did not accept it."""
        others = self._others()
        if others is None or not route.unacknowledged:
            return
        for channel, body in route.unacknowledged:
            await others.publish(channel, body)

    def remove(self, session: WampConnection) -> list[Topic]:
        """``session`` left: it subscribes to nothing any more. Returns the topics it did
        subscribe to, for ``on_unsubscribe``."""
        mine = self._of_session.pop(session, {})
        return [self._remove_subscriber(uri, session) for uri in mine.values()]

    # -- internals -----------------------------------------------------------------------------

    def bind(self, cluster: MessageBroker) -> None:
        """Reach the other workers through ``cluster`` (the broker of the server whose
        session joined first); later calls change nothing."""
        self._reach.bind(cluster)

    @property
    def cluster(self) -> MessageBroker | None:
        """The broker of this realm's server (presence, other workers), if known yet."""
        return self._reach.bound()

    def _others(self) -> MessageBroker | None:
        return self._reach.others()

    def _for_others(
        self,
        uri: str,
        payload: Payload,
        publication_id: int,
        exclude: Iterable[Any],
        eligible: Iterable[Any] | None,
        exclude_authid: Iterable[str],
        eligible_authid: Iterable[str] | None,
    ) -> bytes:
        publication = ClusterPublication.of(
            uri,
            payload.args,
            payload.kwargs,
            publication_id,
            exclude=session_ids(exclude),
            eligible=None if eligible is None else session_ids(eligible),
            exclude_authid=exclude_authid,
            eligible_authid=eligible_authid,
            route=payload.route,
        )
        return publication.encode()

    def _received(self, uri: str, body: bytes) -> None:
        """A publication of another worker: delivered to this worker's subscribers."""
        try:
            publication = ClusterPublication.decode(body)
        except ValueError as exc:
            logger.warning("dropped a publication to %s from another worker: %s", uri, exc)
            return
        state = self._topics.get(uri)
        if state is None or not state.sessions or publication.topic != uri:
            return
        payload = Payload(publication.args, publication.kwargs, publication.publication_id)
        self._deliver(
            state,
            payload,
            publication.exclude,
            publication.eligible,
            publication.exclude_authid,
            publication.eligible_authid,
        )

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
            others = self._others()
            if others is not None:

                def listener(body: bytes) -> None:
                    self._received(uri, body)

                state.listening, state.listener = others, listener
                others.listen(channel_of(self.realm.name, uri), listener)
        state.pending += 1
        return state

    def _remove_subscriber(self, uri: str, session: WampConnection) -> Topic:
        state = self._topics[uri]
        state.discard(session)
        presence = self._reach.bound() if self.track_subscribers else None
        if presence is not None:
            presence.absent(subscribers_scope(self.realm.name, uri), str(session.session_id))
        self._release(state)
        return state.topic

    def _release(self, state: _Subscribers) -> None:
        uri = state.topic.id
        if state.unused and self._topics.get(uri) is state:
            del self._topics[uri]
            del self._by_subscription[state.subscription_id]
            if state.listening is not None and state.listener is not None:
                state.listening.unlisten(channel_of(self.realm.name, uri), state.listener)

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
