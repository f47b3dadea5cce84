"""WAMP publications across workers, without sockets: two routers whose brokers are linked
in process (support.brokers). Each worker delivers to its own subscribers with the publisher's
filters, user-id filters included; SUBSCRIBED and PUBLISHED wait for the broker and fail
visibly when it is down; a worker listens to a topic only while it has subscribers. (The same
over Redis with Autobahn|Python clients: test_autobahn_python.)"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import support.wamp
from ratchetpy.client import sign
from ratchetpy.testing import RecordingConnection, http_request, resolve
from ratchetpy.wamp import PublishEndpoint, WampServer
from ratchetpy.wamp.cluster import ClusterPublication, channel_of
from ratchetpy.wamp.messages import EVENT, PUBLISH, PUBLISHED, SUBSCRIBE
from support.brokers import LinkedBroker, LinkedBrokers, serving
from support.wamp import Peer, error_of

TOPIC = "com.example.news"
CHANNEL = channel_of("realm1", TOPIC)
SECRET = "a shared secret of the test, 32 bytes"


class Worker(support.wamp.Worker):
    """A worker's router whose new clients subscribe to TOPIC unless told not to."""

    async def peer(self, user_id: str | None = None, *, subscribe: bool = True) -> Peer:
        peer = await super().peer(user_id)
        if subscribe:
            with serving(self.broker):
                await peer.subscribe(TOPIC)
        return peer


@pytest.fixture
def workers() -> tuple[Worker, Worker]:
    one, two = LinkedBrokers(2).brokers
    return Worker(one), Worker(two)


async def publish(peer: Peer, broker: LinkedBroker, *args: Any, **options: Any) -> list[Any]:
    """PUBLISH (acknowledged) as ``peer``; returns the answer."""
    with serving(broker):
        await peer.send(PUBLISH, 7, {"acknowledge": True, **options}, TOPIC, list(args))
    return peer.take()


def events(peer: Peer) -> list[list[Any]]:
    return [message[4] for message in peer.take() if message[0] == EVENT]


def test_a_publication_travels_as_json_with_the_publishers_filters() -> None:
    publication = ClusterPublication(
        TOPIC, 42, ["hi", b"\x00\xff"], {"n": 2**70}, (5, 6), None, ("bob",), ("al",)
    )
    assert ClusterPublication.decode(publication.encode()) == publication
    for body, why in [
        (b"\xff", "not a WAMP publication"),
        (b"[2]", "of this version"),
        (b"[1, 7, 1, [], {}, [], null, [], null]", "without a topic"),
        (b'[1, "t", 0, [], {}, [], null, [], null]', "without a topic or an id"),
        (b'[1, "t", 1, {}, {}, [], null, [], null]', "arguments are not"),
        (b'[1, "t", 1, [], {}, [0], null, [], null]', "session id list"),
        (b'[1, "t", 1, [], {}, [], null, [3], null]', "user id list"),
        (b'{"a": 1, "a": 2}', "not a WAMP publication"),
    ]:
        with pytest.raises(ValueError, match=why):
            ClusterPublication.decode(body)


async def test_subscribers_on_both_workers_get_it_once_with_filters_by_session_and_user(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    alice_here = await one.peer("alice")
    alice_there = await two.peer("alice")
    bob_there = await two.peer("bob")
    publisher = await one.peer("carol", subscribe=False)
    assert publisher.ws.take() == []

    answer = await publish(publisher, one.broker, "to all")
    assert answer[0][0] == PUBLISHED
    publication_id = answer[0][2]
    for peer in (alice_here, alice_there, bob_there):
        (event,) = [m for m in peer.take() if m[0] == EVENT]
        assert event[2] == publication_id and event[4] == ["to all"]  # one id everywhere

    await publish(publisher, one.broker, "not alice", exclude_authid=["alice"])
    await publish(publisher, one.broker, "alice only", eligible_authid=["alice"])
    await publish(publisher, one.broker, "not bob", exclude=[bob_there.session_id])
    both = [alice_there.session_id, bob_there.session_id]
    await publish(publisher, one.broker, "bob of those", eligible=both, eligible_authid=["bob"])
    assert events(alice_here) == [["alice only"], ["not bob"]]
    assert events(alice_there) == [["alice only"], ["not bob"]]
    assert events(bob_there) == [["not alice"], ["bob of those"]]


async def test_a_broadcast_from_server_code_reaches_the_other_worker_filtered_there(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    await one.peer("alice", subscribe=False)  # realm one exists, no local subscriber
    alice_there, bob_there = await two.peer("alice"), await two.peer("bob")
    topic = one.server.realm().topics[TOPIC]
    assert topic.broadcast("for bob", exclude_authid=["alice"]) == 0  # nobody here
    assert events(alice_there) == [] and events(bob_there) == [["for bob"]]


async def test_subscribed_waits_for_the_broker_and_a_refusal_keeps_nothing(
    workers: tuple[Worker, Worker],
) -> None:
    one, _ = workers
    peer = await one.peer(subscribe=False)
    one.broker.down = True
    with serving(one.broker):
        await peer.send(SUBSCRIBE, 3, {}, TOPIC)
    (answer,) = peer.take()
    assert error_of(answer) == (SUBSCRIBE, 3, "ratchetpy.error.broker_unavailable")
    assert "could not reach the other workers" in answer[5][0]
    assert TOPIC not in one.server.realm().topics
    assert CHANNEL not in one.broker.handlers  # the topic's channel is not listened to
    one.broker.down = False
    await peer.subscribe(TOPIC)
    assert CHANNEL in one.broker.handlers
    await peer.leave()
    assert CHANNEL not in one.broker.handlers  # the last subscriber here left


async def test_an_acknowledged_publication_the_broker_refused_is_an_error_not_published(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    local, remote = await one.peer(), await two.peer()
    publisher = await one.peer(subscribe=False)
    one.broker.down = True
    (answer,) = await publish(publisher, one.broker, "acked")
    assert error_of(answer) == (PUBLISH, 7, "ratchetpy.error.broker_unavailable")
    assert "reached this worker's subscribers only" in answer[5][0]
    assert events(local) == [["acked"]] and events(remote) == []
    # Unacknowledged: delivered here, refused (and counted) for the others.
    with serving(one.broker):
        await publisher.send(PUBLISH, 8, {}, TOPIC, ["fire and forget"])
    assert publisher.take() == []
    assert events(local) == [["fire and forget"]] and one.broker.refused == 1


async def test_a_body_from_another_worker_that_is_no_publication_is_dropped_and_logged(
    workers: tuple[Worker, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    one, two = workers
    peer = await two.peer()
    with caplog.at_level(logging.WARNING, "ratchetpy.wamp"):
        one.broker.publish_nowait(CHANNEL, b"[1, 2, 3]")
    assert "dropped a publication to com.example.news from another worker" in caplog.text
    assert events(peer) == []
    other = ClusterPublication("com.example.other", 1, ["x"], {}).encode()
    one.broker.publish_nowait(CHANNEL, other)  # a body naming another topic: not this one's
    assert events(peer) == []


async def test_the_publish_endpoint_answers_200_once_the_other_workers_were_reached(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    local, remote = await one.peer(), await two.peer()
    endpoint = PublishEndpoint(one.server, secret=None, insecure_no_auth=True)
    conn = RecordingConnection()

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = http_request(
            "/publish",
            method="POST",
            headers=[("Content-Type", "application/json")],
            body=json.dumps(body).encode(),
        )
        with serving(one.broker):
            response = await resolve(endpoint.on_open(conn, request))
        return response.status, json.loads(response.body)

    status, answer = await post({"topic": TOPIC, "args": ["pushed"]})
    assert status == 200 and answer["receivers"] == 1  # this worker's subscribers
    assert events(local) == [["pushed"]] and events(remote) == [["pushed"]]
    one.broker.down = True
    status, answer = await post({"topic": TOPIC, "args": ["half"]})
    assert status == 503 and answer["error"] == "broker_unavailable"
    assert "reached this worker's subscribers only" in answer["reason"]
    assert events(local) == [["half"]] and events(remote) == []


async def test_a_realm_used_outside_any_server_says_other_workers_are_not_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = WampServer()
    with caplog.at_level(logging.WARNING, "ratchetpy.wamp"):
        assert server.publish(TOPIC, ["from a task of my own"]) == 0
        server.publish(TOPIC, ["again"])
    assert caplog.text.count("other workers are not reached") == 1  # said once


async def test_a_signed_request_accepted_by_one_worker_is_a_replay_on_the_other(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    local, remote = await one.peer(), await two.peer()
    endpoints = [PublishEndpoint(worker.server, secret=SECRET) for worker in workers]
    body = json.dumps({"topic": TOPIC, "args": ["once"]}).encode()
    headers = [("Content-Type", "application/json"), *sign(body, SECRET).items()]

    async def post(worker: Worker, endpoint: PublishEndpoint) -> tuple[int, dict[str, Any]]:
        request = http_request("/publish", method="POST", headers=headers, body=body)
        with serving(worker.broker):
            response = await resolve(endpoint.on_open(RecordingConnection(), request))
        return response.status, json.loads(response.body)

    assert (await post(one, endpoints[0]))[0] == 200
    status, answer = await post(two, endpoints[1])  # captured and sent to another worker
    assert (status, answer["error"]) == (409, "replayed")
    assert "by another worker" in answer["reason"]
    assert events(local) == [["once"]] and events(remote) == [["once"]]  # once, everywhere

    # The broker cannot tell: refused before anything was delivered, and not remembered.
    body = json.dumps({"topic": TOPIC, "args": ["later"]}).encode()
    headers = [("Content-Type", "application/json"), *sign(body, SECRET).items()]
    two.broker.down = True
    status, answer = await post(two, endpoints[1])
    assert (status, answer["error"]) == (503, "broker_unavailable")
    assert events(local) == [] and events(remote) == []
    two.broker.down = False
    assert (await post(two, endpoints[1]))[0] == 200
    assert events(local) == [["later"]] and events(remote) == [["later"]]
