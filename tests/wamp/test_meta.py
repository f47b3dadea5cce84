"""The WAMP session meta API (wamp/meta.py), with Crossbar.io's names: the router answers
wamp.session.count / list / get and wamp.subscription.lookup / count_subscribers /
list_subscribers itself, and publishes wamp.session.on_join / on_leave. In one router, and
across workers whose brokers are linked in process (support.brokers), where a worker that
died has its sessions said to have left by the worker that noticed. (Between real worker
processes through Redis, with Autobahn|Python: test_real_workers.)"""

from __future__ import annotations

from typing import Any

from ratchetpy.broker import MemoryBroker
from ratchetpy.wamp import WampServer
from ratchetpy.wamp.messages import CALL, EVENT, RESULT, SUBSCRIBE
from support.brokers import LinkedBrokers, serving
from support.wamp import Peer, Worker, error_of

ON_JOIN, ON_LEAVE = "wamp.session.on_join", "wamp.session.on_leave"


async def call(worker: Worker, peer: Peer, procedure: str, *args: Any) -> Any:
    """``peer`` calls ``procedure``; the result (or the ERROR message)."""
    await worker.send(peer, CALL, 99, {}, procedure, list(args))
    answer = peer.take_one()
    return answer[3][0] if answer[0] == RESULT else answer


def events(peer: Peer) -> list[list[Any]]:
    return [message[4] for message in peer.take() if message[0] == EVENT]


async def test_one_router_answers_the_session_meta_api() -> None:
    worker = Worker(MemoryBroker())  # type: ignore[arg-type]
    watcher = await worker.peer()
    await worker.send(watcher, SUBSCRIBE, 1, {}, ON_JOIN)
    await worker.send(watcher, SUBSCRIBE, 2, {}, ON_LEAVE)
    watcher.take()
    alice = await worker.peer("alice")
    (joined,) = events(watcher)
    assert joined[0]["session"] == alice.session_id
    assert joined[0]["authid"] == "alice" and joined[0]["authrole"] == "user"
    assert joined[0]["transport"]["type"] == "websocket"

    assert await call(worker, watcher, "wamp.session.count") == 2
    assert await call(worker, watcher, "wamp.session.count", ["user"]) == 1
    listed = await call(worker, watcher, "wamp.session.list")
    assert listed == sorted([watcher.session_id, alice.session_id])
    assert await call(worker, watcher, "wamp.session.list", ["anonymous"]) == [watcher.session_id]
    assert await call(worker, watcher, "wamp.session.get", alice.session_id) == joined[0]
    missing = await call(worker, watcher, "wamp.session.get", 12345)
    assert error_of(missing)[2] == "wamp.error.no_such_session"
    refused = await call(worker, watcher, "wamp.session.count", "not a list")
    assert error_of(refused)[2] == "wamp.error.invalid_argument"

    with serving(worker.broker):
        subscription = await alice.subscribe("com.example.news")
    found = await call(worker, watcher, "wamp.subscription.lookup", "com.example.news")
    assert found == subscription
    assert await call(worker, watcher, "wamp.subscription.lookup", "com.example.none") is None
    assert await call(worker, watcher, "wamp.subscription.count_subscribers", subscription) == 1
    subscribers = await call(worker, watcher, "wamp.subscription.list_subscribers", subscription)
    assert subscribers == [alice.session_id]
    unknown = await call(worker, watcher, "wamp.subscription.count_subscribers", 7)
    assert error_of(unknown)[2] == "wamp.error.no_such_subscription"

    with serving(worker.broker):
        await alice.leave()
    assert events(watcher) == [[alice.session_id, "alice", "user"]]
    assert await call(worker, watcher, "wamp.session.count") == 1


async def test_without_the_meta_api_its_procedures_are_ordinary_ones() -> None:
    worker = Worker(LinkedBrokers(1).brokers[0], WampServer(meta_api=False))
    peer = await worker.peer()
    answer = await call(worker, peer, "wamp.session.count")
    assert error_of(answer)[2] == "wamp.error.no_such_procedure"


async def test_sessions_of_every_worker_are_counted_and_a_dead_workers_said_to_have_left() -> None:
    links = LinkedBrokers(2)
    one, two = Worker(links.brokers[0]), Worker(links.brokers[1])
    watcher = await one.peer()
    await one.send(watcher, SUBSCRIBE, 1, {}, ON_LEAVE)
    watcher.take()
    there = [await two.peer("bob"), await two.peer()]
    with serving(two.broker):
        await there[0].subscribe("com.example.news")
    with serving(one.broker):
        await watcher.subscribe("com.example.news")
    assert await call(one, watcher, "wamp.session.count") == 3
    assert await call(two, there[1], "wamp.session.get", watcher.session_id) is not None
    # Subscription ids are per worker: the caller asks with the one its worker gave.
    mine = watcher.conn.realm.topics.subscription_id("com.example.news")  # type: ignore[union-attr]
    assert await call(one, watcher, "wamp.subscription.count_subscribers", mine) == 2

    links.kill(two.broker.worker_id)  # SIGKILL: only the registry knows
    left = sorted(events(watcher))
    assert left == sorted(
        [[there[0].session_id, "bob", "user"], [there[1].session_id, None, "anonymous"]]
    )
    assert await call(one, watcher, "wamp.session.count") == 1
    assert await call(one, watcher, "wamp.subscription.count_subscribers", mine) == 1


async def test_the_sessions_of_a_user_are_found_on_every_worker() -> None:
    links = LinkedBrokers(2)
    one, two = Worker(links.brokers[0]), Worker(links.brokers[1])
    here, there, other = await one.peer("alice"), await two.peer("alice"), await two.peer("bob")
    with serving(one.broker):
        found = await one.server.sessions_of("alice")
    assert [details["session"] for details in found] == sorted([here.session_id, there.session_id])
    assert one.server.connections_of("alice") == (here.conn,)  # this worker's only
    assert other.session_id not in [details["session"] for details in found]
    assert await WampServer(meta_api=False).sessions_of("alice") == []


async def test_a_user_comes_online_once_on_any_worker_and_goes_offline_after_the_last_tab() -> None:
    links = LinkedBrokers(2)
    one, two = Worker(links.brokers[0]), Worker(links.brokers[1])
    watcher = await one.peer()
    with serving(one.broker):
        online = await watcher.subscribe("ratchetpy.session.on_user_online")
        offline = await watcher.subscribe("ratchetpy.session.on_user_offline")

    def told() -> list[tuple[str, list[Any]]]:
        return [
            ("online" if message[1] == online else "offline", message[4])
            for message in watcher.take()
            if message[0] == EVENT and message[1] in (online, offline)
        ]

    first, second = await one.peer("alice"), await two.peer("alice")
    await two.peer()  # anonymous: no user to tell of
    assert told() == [("online", ["alice"])]  # once, for two tabs on two workers
    with serving(one.broker):
        await first.leave()
    assert told() == []
    with serving(two.broker):
        await second.leave()
    assert told() == [("offline", ["alice"])]  # after the last
