"""The broker (broker.py) on the wire, driven directly by support.wamp's Peer: SUBSCRIBE and
UNSUBSCRIBE, subscription ids, PUBLISH with its acknowledge, exclude and eligible filters
(by session and by authid), the subscription limit, and events across JSON and msgpack."""

from __future__ import annotations

from typing import Any

import pytest

from ratchetpy.wamp import LIMIT_EXCEEDED, WampServer
from ratchetpy.wamp.messages import (
    EVENT,
    INVALID_ARGUMENT,
    INVALID_URI,
    MAX_ID,
    NO_SUCH_SUBSCRIPTION,
    PUBLISH,
    PUBLISHED,
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
)
from ratchetpy.wamp.serializers import JsonSerializer
from support.wamp import MSGPACK, TOO_BIG_FOR_MSGPACK, Peer, Recorder, error_of, joined

# -- subscribing -------------------------------------------------------------------------------


async def test_invalid_uri_in_subscribe_is_an_error_and_the_session_stays() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(SUBSCRIBE, 5, {}, "com..example")
    answer = peer.take_one()
    assert error_of(answer) == (SUBSCRIBE, 5, INVALID_URI)
    assert not peer.ws.closed
    assert await peer.subscribe("com.example") >= 1


async def test_subscribing_twice_gives_the_same_subscription() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.join()
    first = await peer.subscribe("t")
    assert await peer.subscribe("t") == first
    topic = server.realm().topics["t"]
    assert len(topic) == 1
    assert peer.conn.subscriptions == (topic,)


async def test_subscribers_share_one_subscription_id() -> None:
    server = WampServer()
    peers = [Peer(server) for _ in range(3)]
    ids = set()
    for peer in peers:
        await peer.join()
        ids.add(await peer.subscribe("com.example.news"))
    assert len(ids) == 1
    topic = server.realm().topics.get("com.example.news")
    assert topic is not None and topic.subscription_id in ids
    assert topic.subscribers == tuple(p.conn for p in peers)


async def test_different_topics_get_different_subscription_ids() -> None:
    peer = Peer(WampServer())
    await peer.join()
    assert await peer.subscribe("a") != await peer.subscribe("b")


async def test_unsubscribe() -> None:
    component = Recorder()
    server = WampServer(component)
    peer = Peer(server)
    await peer.join()
    subscription = await peer.subscribe("t")
    await peer.send(UNSUBSCRIBE, 9, subscription)
    assert peer.take_one() == [UNSUBSCRIBED, 9]
    assert component.log[-1] == ("unsubscribe", peer.conn, "t")
    assert "t" not in server.realm().topics and len(server.realm().topics) == 0
    assert peer.conn.subscriptions == ()
    # Unsubscribing again: no longer known.
    await peer.send(UNSUBSCRIBE, 10, subscription)
    assert error_of(peer.take_one()) == (UNSUBSCRIBE, 10, NO_SUCH_SUBSCRIPTION)


async def test_unsubscribe_unknown_subscription() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(UNSUBSCRIBE, 3, 12345)
    assert error_of(peer.take_one()) == (UNSUBSCRIBE, 3, NO_SUCH_SUBSCRIPTION)


async def test_cannot_unsubscribe_someone_elses_subscription() -> None:
    server = WampServer()
    a, b = Peer(server), Peer(server)
    await a.join()
    await b.join()
    subscription = await a.subscribe("t")
    await b.send(UNSUBSCRIBE, 1, subscription)
    assert error_of(b.take_one()) == (UNSUBSCRIBE, 1, NO_SUCH_SUBSCRIPTION)
    assert a.conn in server.realm().topics["t"]


async def test_topic_stays_while_others_subscribe_and_goes_with_the_last() -> None:
    server = WampServer()
    a, b = Peer(server), Peer(server)
    await a.join()
    await b.join()
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    topics = server.realm().topics
    await a.send(UNSUBSCRIBE, 100, subscription)
    assert a.take_one() == [UNSUBSCRIBED, 100]
    assert "t" in topics and len(topics["t"]) == 1
    await b.leave()
    assert "t" not in topics and topics.get("t") is None
    assert topics.by_subscription(subscription) is None
    # A new first subscriber gets a topic afresh.
    assert await a.subscribe("t") >= 1
    assert len(topics) == 1


async def test_subscribe_with_pattern_matching_is_refused() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.join()
    await peer.send(SUBSCRIBE, 1, {"match": "prefix"}, "com.example")
    assert error_of(peer.take_one()) == (SUBSCRIBE, 1, INVALID_ARGUMENT)
    assert len(server.realm().topics) == 0


async def test_max_subscriptions() -> None:
    server = WampServer(max_subscriptions=2)
    peer = Peer(server)
    await peer.join()
    await peer.subscribe("a")
    await peer.subscribe("b")
    await peer.send(SUBSCRIBE, 50, {}, "c")
    assert error_of(peer.take_one()) == (SUBSCRIBE, 50, LIMIT_EXCEEDED)
    assert "c" not in server.realm().topics
    assert await peer.subscribe("a") >= 1  # subscribing again to one it has is fine


# -- publishing --------------------------------------------------------------------------------


async def test_publish_to_an_invalid_uri() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(PUBLISH, 1, {}, "bad uri", ["x"])
    assert peer.take() == []
    await peer.send(PUBLISH, 2, {"acknowledge": True}, "bad uri", ["x"])
    assert error_of(peer.take_one()) == (PUBLISH, 2, INVALID_URI)
    assert not peer.ws.closed


async def test_publish_reaches_subscribers_but_not_the_publisher_by_default() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    pub_subscription = await pub.subscribe("t")
    subscription = await sub.subscribe("t")
    assert pub_subscription == subscription
    await pub.send(PUBLISH, 1, {}, "t", ["hi"], {"k": 1})
    assert pub.take() == []
    event = sub.take_one()
    assert event[0] == EVENT and event[1] == subscription and event[3] == {}
    assert event[4:] == [["hi"], {"k": 1}]
    assert 1 <= event[2] <= MAX_ID


async def test_publish_without_arguments_sends_a_short_event() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t")
    assert len(sub.take_one()) == 4
    await pub.send(PUBLISH, 2, {}, "t", [], {"only": "kw"})
    assert sub.take_one()[4:] == [[], {"only": "kw"}]


async def test_publish_to_a_topic_nobody_subscribes() -> None:
    server = WampServer()
    (pub,) = await joined(server, 1)
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "nobody.here", ["x"])
    answer = pub.take_one()
    assert answer[:2] == [PUBLISHED, 1]
    assert len(server.realm().topics) == 0


async def test_publish_exclude_me_false_reaches_the_publisher() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    await pub.subscribe("t")
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {"exclude_me": False}, "t", [1])
    assert pub.take_one()[0] == EVENT
    assert sub.take_one()[0] == EVENT


async def test_acknowledged_publish_has_the_publication_id_of_its_events() -> None:
    server = WampServer()
    pub, a, b = await joined(server, 3)
    await a.subscribe("t")
    await b.subscribe("t")
    await pub.send(PUBLISH, 77, {"acknowledge": True}, "t", ["x"])
    published = pub.take_one()
    assert published[:2] == [PUBLISHED, 77]
    assert a.take_one()[2] == published[2] == b.take_one()[2]
    # Each publication gets its own id.
    await pub.send(PUBLISH, 78, {"acknowledge": True}, "t", ["y"])
    assert pub.take_one()[2] != published[2]


async def test_publish_exclude_and_eligible() -> None:
    server = WampServer()
    pub, a, b, c = await joined(server, 4)
    for peer in (a, b, c):
        await peer.subscribe("t")

    async def receivers(options: dict[str, Any]) -> set[int | None]:
        await pub.send(PUBLISH, 1, options, "t", ["x"])
        assert pub.take() == []
        got = set()
        for peer in (a, b, c):
            messages = peer.take()
            if messages:
                assert [m[0] for m in messages] == [EVENT]
                got.add(peer.session_id)
        return got

    ids = {p: p.session_id for p in (a, b, c)}
    assert await receivers({}) == {ids[a], ids[b], ids[c]}
    assert await receivers({"exclude": [ids[a]]}) == {ids[b], ids[c]}
    assert await receivers({"eligible": [ids[a], ids[b]]}) == {ids[a], ids[b]}
    assert await receivers({"eligible": [ids[a], ids[b]], "exclude": [ids[a]]}) == {ids[b]}
    assert await receivers({"eligible": []}) == set()
    assert await receivers({"eligible": [123456789]}) == set()
    # The publisher is eligible but excluded by default.
    assert await receivers({"eligible": [pub.session_id]}) == set()


async def test_publish_by_authid() -> None:
    server = WampServer()
    pub = Peer(server, user_id="pub")
    await pub.join()
    alice1, alice2 = await joined(server, 2, user_id="alice")
    (bob,) = await joined(server, 1, user_id="bob")
    (anon,) = await joined(server, 1)
    everyone = (alice1, alice2, bob, anon)
    for peer in everyone:
        await peer.subscribe("t")

    async def receivers(options: dict[str, Any]) -> set[Peer]:
        await pub.send(PUBLISH, 1, options, "t", ["x"])
        return {peer for peer in everyone if peer.take()}

    assert await receivers({"eligible_authid": ["alice"]}) == {alice1, alice2}
    assert await receivers({"eligible_authid": ["alice", "bob"]}) == {alice1, alice2, bob}
    assert await receivers({"exclude_authid": ["alice"]}) == {bob, anon}
    assert await receivers({"eligible_authid": []}) == set()
    assert await receivers({"eligible_authid": ["alice"], "eligible": [bob.session_id]}) == set()
    assert await receivers(
        {"eligible_authid": ["alice"], "eligible": [alice2.session_id, bob.session_id]}
    ) == {alice2}
    assert await receivers({"exclude_authid": ["alice"], "exclude": [bob.session_id]}) == {anon}


@pytest.mark.parametrize(
    "options",
    [
        {"exclude_me": "yes"},
        {"exclude_me": 0},
        {"exclude": "123"},
        {"exclude": [True]},
        {"exclude": [1.5]},
        {"eligible": {"a": 1}},
        {"eligible": ["1"]},
        {"eligible_authid": "alice"},
        {"eligible_authid": [1]},
        {"exclude_authid": [None]},
        {"eligible": [2**60]},  # the probe's: WAMP ids live in [1, 2^53]
        {"exclude": [0]},
        {"exclude": [-1]},
    ],
)
async def test_publish_with_bad_options(options: dict[str, Any]) -> None:
    server = WampServer()
    pub, sub = await joined(server, 2, user_id="alice")
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, options, "t", ["x"])
    assert pub.take() == []
    await pub.send(PUBLISH, 2, {**options, "acknowledge": True}, "t", ["x"])
    answer = pub.take_one()
    assert error_of(answer) == (PUBLISH, 2, INVALID_ARGUMENT)
    assert sub.take() == []
    assert not pub.ws.closed


# -- serializers -------------------------------------------------------------------------------


async def test_event_is_encoded_once_per_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    server = WampServer()
    pub = (await joined(server, 1))[0]
    json_subs = await joined(server, 5)
    msgpack_subs = await joined(server, 3, subprotocol=MSGPACK)
    for peer in json_subs + msgpack_subs:
        await peer.subscribe("t")

    encoded: list[list[Any]] = []
    original = JsonSerializer.encode

    def counting(self: JsonSerializer, message: list[Any]) -> str:
        encoded.append(message)
        return original(self, message)

    monkeypatch.setattr(JsonSerializer, "encode", counting)
    await pub.send(PUBLISH, 1, {}, "t", ["x" * 100])
    assert [m[0] for m in encoded] == [EVENT]  # one JSON encoding for five subscribers
    json_frames = [peer.ws.sent[0] for peer in json_subs]
    assert all(frame is json_frames[0] for frame in json_frames)
    msgpack_frames = [peer.ws.sent[0] for peer in msgpack_subs]
    assert all(frame is msgpack_frames[0] for frame in msgpack_frames)
    assert isinstance(msgpack_frames[0], bytes)
    events = [peer.take_one() for peer in json_subs + msgpack_subs]
    assert all(event == events[0] for event in events)
    assert events[0][4] == ["x" * 100]


async def test_json_and_msgpack_subscribers_get_the_same_event() -> None:
    server = WampServer()
    pub = Peer(server, MSGPACK)
    await pub.join()
    (js,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await js.subscribe("t")
    await mp.subscribe("t")
    payload = [1, "two", None, True, 2.5, {"n": [1, 2]}]
    await pub.send(PUBLISH, 1, {}, "t", payload, {"k": "v"})
    assert js.take_one() == mp.take_one()


async def test_binary_payload_crosses_serializers() -> None:
    server = WampServer()
    pub = Peer(server, MSGPACK)
    await pub.join()
    (js,) = await joined(server, 1)
    await js.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", [b"\x00\x01binary"])
    event = js.take_one()
    assert event[4] == ["\x00AAFiaW5hcnk="]  # WAMP's JSON convention for bytes


async def test_publication_that_one_serializer_cannot_carry_reaches_nobody() -> None:
    server = WampServer()
    (pub,) = await joined(server, 1)
    (js,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await js.subscribe("t")
    await mp.subscribe("t")
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert error_of(pub.take_one()) == (PUBLISH, 1, INVALID_ARGUMENT)
    assert js.take() == [] and mp.take() == []
    # Unacknowledged: silently refused, and nothing goes to on_error.
    component = server.component
    await pub.send(PUBLISH, 2, {}, "t", [TOO_BIG_FOR_MSGPACK])
    assert pub.take() == [] and js.take() == [] and mp.take() == []
    assert server.component is component and not pub.ws.closed
    # JSON subscribers alone can have it.
    await mp.leave()
    await pub.send(PUBLISH, 3, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert pub.take_one()[0] == PUBLISHED
    assert js.take_one()[4] == [TOO_BIG_FOR_MSGPACK]


async def test_unencodable_publication_does_not_reach_on_error() -> None:
    component = Recorder()
    server = WampServer(component)
    (pub,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await mp.subscribe("t")
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert error_of(pub.take_one())[2] == INVALID_ARGUMENT
    assert component.errors == []
