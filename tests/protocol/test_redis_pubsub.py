"""PubSubState without sockets: wanted against confirmed, resubscription after a reconnect,
and replies a subscriber connection cannot get."""

from __future__ import annotations

import pytest

from ratchetpy import RedisProtocolError, RedisReplyError
from ratchetpy.protocol.redis_pubsub import (
    Confirmed,
    ProbeAnswered,
    PubSubMessage,
    PubSubState,
    Resubscribed,
)
from ratchetpy.protocol.resp import encode_command


def test_wanting_gives_the_commands_and_redis_confirms() -> None:
    state = PubSubState()
    assert state.connection_made() == b""  # the first connection: nothing to resubscribe
    assert state.want("room") == encode_command("SUBSCRIBE", b"room")
    assert state.want(b"room") == b""  # already wanted
    assert state.missing() == {b"room"}
    assert state.receive([b"subscribe", b"room", 1]) == Confirmed(b"room", True)
    assert state.missing() == set()
    assert state.receive([b"message", b"room", b"hi"]) == PubSubMessage(b"room", b"hi")
    assert state.receive([b"pong", b""]) == ProbeAnswered()
    assert state.receive(b"PONG") == ProbeAnswered()  # subscribed to nothing: plain mode
    assert state.unwant("room") == encode_command("UNSUBSCRIBE", b"room")
    assert state.unwant("room") == b""
    # Messages already under way after the UNSUBSCRIBE are dropped.
    assert state.receive([b"message", b"room", b"late"]) is None
    assert state.receive([b"unsubscribe", b"room", 0]) == Confirmed(b"room", False)


def test_a_reconnect_resubscribes_everything_and_says_so_once_confirmed() -> None:
    state = PubSubState()
    state.connection_made()
    for name in ("a", "b"):
        state.want(name)
        state.receive([b"subscribe", name.encode(), 1])
    commands = state.connection_made()  # the connection was lost and made again
    assert commands == encode_command("SUBSCRIBE", b"a", b"b")
    assert state.confirmed == set() and state.resubscribing
    assert state.receive([b"subscribe", b"a", 1]) == Confirmed(b"a", True)
    assert state.receive([b"subscribe", b"b", 2]) == Resubscribed(frozenset({b"a", b"b"}))
    assert not state.resubscribing


def test_a_confirmation_counts_only_once_every_command_for_the_channel_is_answered() -> None:
    # want, unwant, want again in quick succession: the first confirmation is stale.
    state = PubSubState()
    state.connection_made()
    state.want("room")
    state.unwant("room")
    state.want("room")
    state.receive([b"subscribe", b"room", 1])
    assert b"room" in state.confirmed and not state.settled("room")
    state.receive([b"unsubscribe", b"room", 0])
    assert not state.settled("room")
    state.receive([b"subscribe", b"room", 1])
    assert state.settled("room")
    # After a reconnect only the new connection's replies count.
    state.want("other")  # its reply would have come on the old connection
    state.connection_made()
    state.receive([b"subscribe", b"other", 1])
    state.receive([b"subscribe", b"room", 2])
    assert state.settled("room") and state.settled("other")


def test_many_channels_are_subscribed_in_batches() -> None:
    state = PubSubState()
    state.connection_made()
    for n in range(1200):
        state.want(f"c{n}")
    commands = state.connection_made()
    assert commands.count(b"SUBSCRIBE") == 3


@pytest.mark.parametrize(
    "reply",
    [b"OK", b"pong", 5, None, [], [b"message", b"only-two"], [b"psubscribe", b"x", 1], [1, 2]],
    ids=repr,
)
def test_replies_a_subscriber_cannot_get_are_protocol_errors(reply: object) -> None:
    with pytest.raises(RedisProtocolError, match="unexpected reply"):
        PubSubState().receive(reply)


def test_an_error_reply_is_raised() -> None:
    with pytest.raises(RedisReplyError, match="NOPERM"):
        PubSubState().receive(RedisReplyError("NOPERM this user has no permissions"))
