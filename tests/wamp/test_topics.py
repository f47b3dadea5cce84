"""The application's side of the broker: the component's on_subscribe and on_publish (refusing,
async, failing), Topic and the TopicManager protocol (realm.py) as the broker implements them,
Topic.broadcast, WampConnection.event and WampServer.publish."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from ratchetpy.exceptions import WampError
from ratchetpy.wamp import Payload, Topic, TopicManager, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import (
    ERROR,
    EVENT,
    NOT_AUTHORIZED,
    PUBLISH,
    RUNTIME_ERROR,
    SUBSCRIBE,
    SUBSCRIBED,
)
from support.wamp import Peer, Recorder, error_of, joined

# -- on_subscribe ------------------------------------------------------------------------------


async def test_on_subscribe_refusing() -> None:
    class MembersOnly(WampComponent):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            if topic.id.startswith("private."):
                raise WampError(NOT_AUTHORIZED, "members only", kwargs={"hint": "log in"})

    server = WampServer(MembersOnly())
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 4, {}, "private.room")
    answer = peer.take_one()
    assert answer == [ERROR, SUBSCRIBE, 4, {}, NOT_AUTHORIZED, ["members only"], {"hint": "log in"}]
    topics = server.realm().topics
    assert "private.room" not in topics and len(topics) == 0
    assert peer.conn.subscriptions == ()
    assert not peer.ws.closed
    assert await peer.subscribe("public.room") >= 1


async def test_on_subscribe_sees_the_topic_before_the_subscriber_is_added() -> None:
    seen: list[tuple[bool, int]] = []

    class Check(WampComponent):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            seen.append((conn in topic, len(topic)))

    server = WampServer(Check())
    a, b = await joined(server, 2)
    await a.subscribe("t")
    await b.subscribe("t")
    assert seen == [(False, 0), (False, 1)]


async def test_async_on_subscribe() -> None:
    gate = trio.Event()

    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await gate.wait()

    server = WampServer(Slow())
    a, b = await joined(server, 2)
    topics = server.realm().topics
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send, SUBSCRIBE, 1, {}, "t")
        nursery.start_soon(b.send, SUBSCRIBE, 1, {}, "t")
        await trio.testing.wait_all_tasks_blocked()
        topic = topics.get("t")
        assert topic is not None and len(topic) == 0  # kept while subscriptions are under way
        assert a.take() == [] and b.take() == []
        gate.set()
    first, second = a.take_one(), b.take_one()
    assert first[:2] == second[:2] == [SUBSCRIBED, 1]
    assert first[2] == second[2] == topic.subscription_id
    assert topics.get("t") is topic and set(topic) == {a.conn, b.conn}


async def test_async_on_subscribe_refusing_forgets_the_topic() -> None:
    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await trio.lowlevel.checkpoint()
            raise WampError(NOT_AUTHORIZED)

    server = WampServer(Slow())
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 1, {}, "t")
    assert peer.take_one() == [ERROR, SUBSCRIBE, 1, {}, NOT_AUTHORIZED]
    assert len(server.realm().topics) == 0


async def test_session_leaving_during_async_on_subscribe() -> None:
    gate = trio.Event()

    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await gate.wait()

    server = WampServer(Slow())
    (peer,) = await joined(server, 1)
    pending = server.on_message(peer.ws, json.dumps([SUBSCRIBE, 1, {}, "t"]))
    assert pending is not None
    assert "t" in server.realm().topics
    await peer.leave()
    gate.set()
    with trio.fail_after(1):
        await pending
    assert len(server.realm().topics) == 0
    assert peer.take() == []


async def test_on_subscribe_failing_goes_to_on_error() -> None:
    class Broken(Recorder):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            raise RuntimeError("boom")

    component = Broken()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 1, {}, "t")
    answer = peer.take_one()
    assert error_of(answer) == (SUBSCRIBE, 1, RUNTIME_ERROR)
    assert "boom" not in json.dumps(answer)  # internals stay on the server
    ((conn, exc),) = component.errors
    assert conn is peer.conn and str(exc) == "boom"
    assert len(server.realm().topics) == 0


# -- on_publish --------------------------------------------------------------------------------


async def test_on_publish_refusing() -> None:
    class ReadOnly(WampComponent):
        def on_publish(
            self,
            conn: WampConnection,
            topic: Topic,
            event: Payload,
            exclude: list[int],
            eligible: list[int] | None,
        ) -> None:
            raise WampError(NOT_AUTHORIZED, "read only")

    server = WampServer(ReadOnly())
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", ["x"])
    assert pub.take() == [] and sub.take() == []
    await pub.send(PUBLISH, 2, {"acknowledge": True}, "t", ["x"])
    assert pub.take_one() == [ERROR, PUBLISH, 2, {}, NOT_AUTHORIZED, ["read only"]]
    assert sub.take() == []


async def test_on_publish_receives_ratchet_style_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    class Spy(WampComponent):
        def on_publish(
            self,
            conn: WampConnection,
            topic: Topic,
            event: Payload,
            exclude: list[int],
            eligible: list[int] | None,
        ) -> None:
            calls.append((conn, topic, event, exclude, eligible))
            # A Ratchet-style app transforms the event and broadcasts it itself.
            topic.broadcast({"said": event.args[0], "by": conn.session_id}, exclude, eligible)

    server = WampServer(Spy())
    pub, sub = await joined(server, 2)
    await sub.subscribe("chat")
    await pub.send(PUBLISH, 1, {"exclude": [42]}, "chat", ["hi"], {"k": 1})
    ((conn, topic, event, exclude, eligible),) = calls
    assert conn is pub.conn and topic.id == "chat" and len(topic) == 1
    assert event.args == ["hi"] and event.kwargs == {"k": 1}
    assert pub.session_id is not None
    assert exclude == sorted([42, pub.session_id]) and eligible is None
    assert sub.take_one()[4] == [{"said": "hi", "by": pub.session_id}]


async def test_on_publish_to_a_topic_nobody_subscribes_gets_an_unkept_topic() -> None:
    topics: list[Topic] = []

    class Spy(WampComponent):
        def on_publish(self, conn: Any, topic: Topic, *rest: Any) -> None:
            topics.append(topic)
            assert topic.broadcast("x") == 0

    server = WampServer(Spy())
    (pub,) = await joined(server, 1)
    await pub.send(PUBLISH, 1, {}, "nobody")
    assert topics[0].id == "nobody" and len(topics[0]) == 0
    assert "nobody" not in server.realm().topics


async def test_async_on_publish_failing() -> None:
    class Broken(Recorder):
        async def on_publish(self, *args: Any) -> None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("publish failed")

    component = Broken()
    server = WampServer(component)
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", ["x"])
    assert pub.take() == [] and sub.take() == []
    assert [str(exc) for _, exc in component.errors] == ["publish failed"]
    await pub.send(PUBLISH, 2, {"acknowledge": True}, "t", ["x"])
    assert error_of(pub.take_one()) == (PUBLISH, 2, RUNTIME_ERROR)
    assert len(component.errors) == 2


# -- topics ------------------------------------------------------------------------------------


async def test_topic_and_topic_manager() -> None:
    server = WampServer()
    a, b = await joined(server, 2)
    topics = server.realm().topics
    assert isinstance(topics, TopicManager)
    assert len(topics) == 0 and list(topics) == [] and topics.get("t") is None
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    await a.subscribe("u")
    topic = topics["t"]
    assert isinstance(topic, Topic)
    assert topics.get("t") is topic and topics.by_subscription(subscription) is topic
    assert "t" in topics and "nope" not in topics
    assert len(topics) == 2 and {t.id for t in topics} == {"t", "u"}
    assert str(topic) == "t" and topic.id == "t" and topic.realm is server.realm()
    assert len(topic) == 2 and list(topic) == [a.conn, b.conn]
    assert a.conn in topic and b.conn in topic and "x" not in topic
    assert "'t'" in repr(topic) and "2 subscribers" in repr(topic)
    assert "realm1" in repr(topics)
    # An unknown topic: a fresh, unkept, empty one.
    fresh = topics["nope"]
    assert len(fresh) == 0 and fresh.subscription_id is None and fresh.broadcast("x") == 0
    assert "nope" not in topics and topics.get("nope") is None
    # Iterating while subscribers change is safe (snapshots).
    a_conn, b_conn = a.conn, b.conn
    seen = []
    for conn in topic:
        seen.append(conn)
        if conn is a_conn:
            await a.leave()
    assert seen == [a_conn, b_conn] and list(topic) == [b_conn]


async def test_topic_broadcast() -> None:
    server = WampServer()
    a, b, c = await joined(server, 3)
    for peer in (a, b, c):
        await peer.subscribe("t")
    topic = server.realm().topics["t"]
    assert topic.broadcast("hello") == 3
    event = a.take_one()
    assert event[4] == ["hello"] and len(event) == 5
    assert b.take_one() == event and c.take_one() == event
    # exclude / eligible take session ids or connections.
    assert topic.broadcast("x", exclude=[a.conn, b.session_id]) == 1
    assert c.take_one()[4] == ["x"]
    assert topic.broadcast("x", eligible=[a.session_id]) == 1
    assert a.take_one()[4] == ["x"]
    assert topic.broadcast("x", eligible=[]) == 0  # WAMP's meaning: no one
    assert topic.broadcast(Payload(["p"], {"k": 1})) == 3
    assert a.take_one()[4:] == [["p"], {"k": 1}]
    b.take(), c.take()
    with pytest.raises(TypeError):
        topic.broadcast("x", exclude=["not a session"])
    assert a.take() == []


async def test_event_to_one_subscriber() -> None:
    server = WampServer()
    a, b, c = await joined(server, 3)
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    topic = server.realm().topics["t"]
    assert a.conn.event(topic, {"just": "you"}) is True
    event = a.take_one()
    assert event[:2] == [EVENT, subscription] and event[4] == [{"just": "you"}]
    assert b.take() == []
    assert a.conn.event("t", "by uri") is True
    assert a.take_one()[4] == ["by uri"]
    # Not a subscriber: nothing sent.
    assert c.conn.event(topic, "x") is False
    assert c.conn.event("t", "x") is False
    assert a.conn.event("other", "x") is False
    assert a.take() == [] and c.take() == []


# -- WampServer.publish ------------------------------------------------------------------------


async def test_server_publish() -> None:
    server = WampServer()
    alice = Peer(server, user_id="alice")
    await alice.join()
    bob = Peer(server, user_id="bob")
    await bob.join()
    (anon,) = await joined(server, 1)
    for peer in (alice, bob, anon):
        await peer.subscribe("news")
    assert server.publish("news", ["a"], {"b": 1}) == 3
    events = [p.take_one() for p in (alice, bob, anon)]
    assert events[0] == events[1] == events[2]
    assert events[0][4:] == [["a"], {"b": 1}]
    assert server.publish("news", ["x"], eligible_authid=["bob"]) == 1
    assert bob.take_one()[4] == ["x"] and alice.take() == [] and anon.take() == []
    assert server.publish("news", exclude_authid=["bob"], exclude=[alice.session_id]) == 1
    assert len(anon.take_one()) == 4
    assert server.publish("news", [1], eligible=[alice.conn, bob.session_id]) == 2
    alice.take(), bob.take()
    assert server.publish("news", [1], publication_id=4242) == 3
    assert {p.take_one()[2] for p in (alice, bob, anon)} == {4242}
    assert server.publish("nobody.listens", ["x"]) == 0
    assert server.publish("news", ["x"], realm="realm1") == 3
    with pytest.raises(ValueError):
        server.publish("news", ["x"], realm="nope")


async def test_server_publish_does_not_go_through_on_publish() -> None:
    class ReadOnly(WampComponent):
        def on_publish(self, *args: Any) -> None:
            raise WampError(NOT_AUTHORIZED)

    server = WampServer(ReadOnly())
    (sub,) = await joined(server, 1)
    await sub.subscribe("t")
    assert server.publish("t", [1]) == 1
    assert sub.take_one()[4] == [1]
