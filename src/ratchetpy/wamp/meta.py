"""The WAMP session meta API, with Crossbar.io's names and answers, across workers. Sans-IO.

The router answers these procedures itself (before the component's ``on_call``), for the
sessions of the caller's realm on every worker, from the broker's presence (scopes
:func:`~ratchetpy.wamp.cluster.sessions_scope` and
:func:`~ratchetpy.wamp.cluster.subscribers_scope`):

``wamp.session.count(filter_authroles=None)`` -> int
``wamp.session.list(filter_authroles=None)`` -> [session id, ...]
``wamp.session.get(session_id)`` -> session details, or ``wamp.error.no_such_session``
``wamp.subscription.lookup(topic)`` -> this worker's subscription id of ``topic``, or null
``wamp.subscription.count_subscribers(subscription_id)`` -> int, on every worker
``wamp.subscription.list_subscribers(subscription_id)`` -> [session id, ...], on every worker

and the router publishes ``wamp.session.on_join`` (``[details]``) and
``wamp.session.on_leave`` (``[session_id, authid, authrole]``: readers of the older
``[session_id]`` find it first) when a session joins or leaves any worker, or vanished with a
worker that died; and, ratchetpy's own, ``ratchetpy.session.on_user_online`` /
``on_user_offline`` (``[authid]``) when a user's first session in the realm on any worker
joins and after their last one left: once per user, not per tab. Session details are
``{"session", "authid", "authrole", "authmethod", "authprovider", "transport": {"type":
"websocket", "peer"}}``.
"""

from __future__ import annotations

import json
from typing import Any

from ..broker import MessageBroker, PresenceEntry
from ..components.base import MaybeAwaitable
from ..exceptions import BrokerError
from .broker import Broker
from .cluster import sessions_scope, subscribers_scope
from .messages import BROKER_UNAVAILABLE, CALL, INVALID_ARGUMENT, Call, Result
from .realm import WampConnection

__all__ = [
    "NO_SUCH_SESSION",
    "ON_JOIN",
    "ON_LEAVE",
    "ON_USER_OFFLINE",
    "ON_USER_ONLINE",
    "PROCEDURES",
    "answer",
    "details_of",
]

ON_JOIN = "wamp.session.on_join"
ON_LEAVE = "wamp.session.on_leave"
#: ratchetpy's own: a user's first session in the realm on any worker, and their last gone.
ON_USER_ONLINE = "ratchetpy.session.on_user_online"
ON_USER_OFFLINE = "ratchetpy.session.on_user_offline"
NO_SUCH_SESSION = "wamp.error.no_such_session"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"

_COUNT, _LIST, _GET = "wamp.session.count", "wamp.session.list", "wamp.session.get"
_LOOKUP = "wamp.subscription.lookup"
_COUNT_SUBSCRIBERS = "wamp.subscription.count_subscribers"
_LIST_SUBSCRIBERS = "wamp.subscription.list_subscribers"

#: The procedures the router answers itself.
PROCEDURES = frozenset({_COUNT, _LIST, _GET, _LOOKUP, _COUNT_SUBSCRIBERS, _LIST_SUBSCRIBERS})


def details_of(session: WampConnection, authrole: str, authmethod: str) -> dict[str, Any]:
    """What ``wamp.session.get`` and ``wamp.session.on_join`` say of ``session``."""
    return {
        "session": session.session_id,
        "authid": session.authid,
        "authrole": authrole,
        "authmethod": authmethod,
        "authprovider": "ratchetpy",
        "transport": {"type": "websocket", "peer": f"tcp:{session.remote_address}"},
    }


def answer(
    session: WampConnection, message: Call, topics: Broker, presence: MessageBroker
) -> MaybeAwaitable:
    """Answer ``message``, a CALL of one of :data:`PROCEDURES` (an awaitable: presence is
    asked of the broker)."""
    return _answer(session, message, topics, presence)


async def _answer(
    session: WampConnection, message: Call, topics: Broker, presence: MessageBroker
) -> None:
    realm = topics.realm.name
    args, uri = message.args, message.procedure
    result: Any
    try:
        if uri in (_COUNT, _LIST, _GET):
            entries = await presence.presence(sessions_scope(realm))
            if uri == _GET:
                result = _get(entries, args)
                if result is None:
                    why = [f"no session {args[0] if args else None!r} in realm {realm}"]
                    session.send_error(CALL, message.request_id, NO_SUCH_SESSION, why)
                    return
            else:
                ids = _filtered(entries, args[0] if args else None)
                result = len(ids) if uri == _COUNT else ids
        elif uri == _LOOKUP:
            name = args[0] if args else None
            result = topics.subscription_id(name) if isinstance(name, str) else None
        else:
            topic = topics.by_subscription(args[0]) if args and type(args[0]) is int else None
            if topic is None:
                why = [f"no subscription {args[0] if args else None!r} on this worker"]
                session.send_error(CALL, message.request_id, NO_SUCH_SUBSCRIPTION, why)
                return
            scope = subscribers_scope(realm, topic.id)
            if uri == _COUNT_SUBSCRIBERS:
                result = await presence.presence_count(scope)
            else:
                result = sorted(int(e.member) for e in await presence.presence(scope))
    except BrokerError as exc:
        why = [f"the other workers could not be asked: {exc}"]
        session.send_error(CALL, message.request_id, BROKER_UNAVAILABLE, why)
        return
    except (TypeError, ValueError) as exc:
        session.send_error(CALL, message.request_id, INVALID_ARGUMENT, [str(exc)])
        return
    session.send_message(Result(message.request_id, {}, [result], {}).to_list())


def _details(entry: PresenceEntry) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(entry.info)
    return details


def _filtered(entries: list[PresenceEntry], authroles: Any) -> list[int]:
    if authroles is not None and not (
        isinstance(authroles, list) and all(isinstance(role, str) for role in authroles)
    ):
        raise TypeError("filter_authroles is a list of authroles")
    return sorted(
        int(entry.member)
        for entry in entries
        if authroles is None or _details(entry).get("authrole") in authroles
    )


def _get(entries: list[PresenceEntry], args: list[Any]) -> dict[str, Any] | None:
    if not args or type(args[0]) is not int:
        raise TypeError("wamp.session.get takes a session id")
    wanted = str(args[0])
    for entry in entries:
        if entry.member == wanted:
            return _details(entry)
    return None
