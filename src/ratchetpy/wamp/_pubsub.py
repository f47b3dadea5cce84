"""The broker's requests: SUBSCRIBE, UNSUBSCRIBE, PUBLISH, for :class:`WampServer`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..components.base import MaybeAwaitable
from ._flow import run_handler
from .broker import Payload
from .connection import WampConnection
from .dealer import LIMIT_EXCEEDED
from .messages import (
    INVALID_ARGUMENT,
    NO_SUCH_SUBSCRIPTION,
    PUBLISH,
    PUBLISHED,
    SUBSCRIBE,
    SUBSCRIBED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    IdGenerator,
    Publish,
    Subscribe,
    Unsubscribe,
)

if TYPE_CHECKING:
    from .server import WampServer

__all__ = ["publish", "publish_filters", "subscribe", "unsubscribe"]


def subscribe(server: WampServer, session: WampConnection, message: Subscribe) -> MaybeAwaitable:
    realm = session.realm
    assert realm is not None
    if message.options.get("match", "exact") != "exact":
        session.send_error(
            SUBSCRIBE,
            message.request_id,
            INVALID_ARGUMENT,
            ["only exact topic matching is supported"],
        )
        return None
    for subscription_id, subscribed in session._subscriptions.items():
        if subscribed.id == message.topic:  # subscribing twice: the same subscription
            session._send_message([SUBSCRIBED, message.request_id, subscription_id])
            return None
    if len(session._subscriptions) >= server.max_subscriptions:
        session.send_error(
            SUBSCRIBE,
            message.request_id,
            LIMIT_EXCEEDED,
            [f"at most {server.max_subscriptions} subscriptions per session"],
        )
        return None
    topic = realm.topics.acquire(message.topic)

    def done(exc: Exception | None) -> MaybeAwaitable:
        if exc is not None or session.closed or session.realm is not realm:
            realm.topics.settle(topic, None)
            if exc is None:
                return None
            return server._answer_failure(session, SUBSCRIBE, message.request_id, exc)
        realm.topics.settle(topic, session)
        assert topic.subscription_id is not None
        session._subscriptions[topic.subscription_id] = topic
        session._send_message([SUBSCRIBED, message.request_id, topic.subscription_id])
        return None

    return run_handler(server.component.on_subscribe, (session, topic), done)


def unsubscribe(
    server: WampServer, session: WampConnection, message: Unsubscribe
) -> MaybeAwaitable:
    topic = session._subscriptions.pop(message.subscription_id, None)
    if topic is None:
        session.send_error(
            UNSUBSCRIBE,
            message.request_id,
            NO_SUCH_SUBSCRIPTION,
            [f"no subscription {message.subscription_id} in this session"],
        )
        return None
    assert session.realm is not None
    session.realm.topics.discard(topic, session)
    session._send_message([UNSUBSCRIBED, message.request_id])
    return run_handler(server.component.on_unsubscribe, (session, topic), server._log_only(session))


def publish(server: WampServer, session: WampConnection, message: Publish) -> MaybeAwaitable:
    realm = session.realm
    assert realm is not None and session.session_id is not None
    options = message.options
    acknowledge = options.get("acknowledge") is True
    try:
        exclude, eligible = publish_filters(session, options)
    except ValueError as exc:
        if acknowledge:
            session.send_error(PUBLISH, message.request_id, INVALID_ARGUMENT, [str(exc)])
        return None
    publication_id = IdGenerator.random()
    payload = Payload(message.args, message.kwargs, publication_id)
    topic = realm.topics[message.topic]

    def done(exc: Exception | None) -> MaybeAwaitable:
        if exc is not None:
            return server._answer_failure(
                session, PUBLISH, message.request_id, exc, reply=acknowledge
            )
        if acknowledge:
            session._send_message([PUBLISHED, message.request_id, publication_id])
        return None

    return run_handler(
        server.component.on_publish, (session, topic, payload, exclude, eligible), done
    )


def publish_filters(
    session: WampConnection, options: dict[str, Any]
) -> tuple[list[int], list[int] | None]:
    """Turn PUBLISH options into Ratchet's ``exclude`` / ``eligible`` session id lists."""
    assert session.session_id is not None and session.realm is not None
    exclude_me = options.get("exclude_me", True)
    if type(exclude_me) is not bool:
        raise ValueError("option exclude_me must be a bool")
    exclude = set(_ids(options, "exclude"))
    if exclude_me:
        exclude.add(session.session_id)
    eligible_option = options.get("eligible")
    eligible = None if eligible_option is None else set(_ids(options, "eligible"))
    sessions = session.realm.sessions
    excluded_users = set(_authids(options, "exclude_authid"))
    if excluded_users:
        exclude.update(i for i, s in sessions.items() if s.authid in excluded_users)
    if options.get("eligible_authid") is not None:
        users = set(_authids(options, "eligible_authid"))
        of_users = {i for i, s in sessions.items() if s.authid in users}
        eligible = of_users if eligible is None else eligible & of_users
    return sorted(exclude), None if eligible is None else sorted(eligible)


def _ids(options: dict[str, Any], name: str) -> list[int]:
    value = options.get(name, [])
    if type(value) is not list or any(type(item) is not int for item in value):
        raise ValueError(f"option {name} must be a list of session ids")
    return value


def _authids(options: dict[str, Any], name: str) -> list[str]:
    value = options.get(name, [])
    if type(value) is not list or any(type(item) is not str for item in value):
        raise ValueError(f"option {name} must be a list of strings")
    return value
