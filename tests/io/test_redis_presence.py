"""Presence through a real redis-server (io/redis_presence.py): two workers' members of a
scope are listed and counted together; members joining and leaving are told to every
listening worker in the same order; a user comes online once, on their first member on any
worker, and goes offline once, after their last; a worker that died is reaped by the next
announcement of another (its members leave, its users go offline, once); a graceful leave
removes everything at once; a Redis that restarted empty gets every worker's presence back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ratchetpy import BrokerUnavailable
from ratchetpy.broker import PresenceEntry, PresenceEvent
from ratchetpy.io.redis import RedisConnection
from ratchetpy.io.redis_broker import RedisBroker
from support.redis import RedisProcess, free_port, redis_server

SCOPE = "group:room"


class Events:
    """What a worker's presence callbacks heard, waited for one at a time: the users' events
    (online, offline), or with ``members=True`` only the members' (join, leave)."""

    def __init__(self, *, members: bool = False) -> None:
        self.kinds = ("join", "leave") if members else ("online", "offline")
        self.send, self.receive = trio.open_memory_channel[PresenceEvent](1000)

    def __call__(self, event: PresenceEvent) -> None:
        if event.kind in self.kinds:
            self.send.send_nowait(event)

    async def next(self) -> tuple[str, str | None]:
        with trio.fail_after(5):
            event = await self.receive.receive()
        return event.kind, event.user if event.kind in ("online", "offline") else event.member

    def none_queued(self) -> bool:
        return self.receive.statistics().current_buffer_used == 0


async def started(url: str, nursery: trio.Nursery, *names: str) -> list[RedisBroker]:
    brokers = [RedisBroker(url, worker_id=name) for name in names]
    for broker in brokers:
        await nursery.start(broker.run)
        await broker.announce(b"{}", 3.0)
    return brokers


@pytest.fixture
async def workers(redis: RedisProcess, nursery: trio.Nursery) -> AsyncIterator[list[RedisBroker]]:
    yield await started(redis.url, nursery, "w1", "w2")


async def listening(broker: RedisBroker, events: Events) -> None:
    broker.on_presence(SCOPE, events)
    await broker.wait_listening(f"presence:{SCOPE}")


async def settled(*brokers: RedisBroker) -> None:
    """Every queued presence change written (what a read after them must see)."""
    for broker in brokers:
        assert await broker.flush(5) == 0


async def test_members_of_every_worker_are_listed_and_users_come_online_once(
    workers: list[RedisBroker],
) -> None:
    a, b = workers
    at_a, at_b = Events(), Events()
    await listening(a, at_a)
    await listening(b, at_b)

    a.present(SCOPE, "1", user="alice", info='{"tab": 1}')
    assert await at_a.next() == ("online", "alice") == await at_b.next()
    b.present(SCOPE, "7", user="alice")  # a second tab, on the other worker
    b.present(SCOPE, "8")  # anonymous
    await settled(a, b)
    entries = sorted(await a.presence(SCOPE), key=lambda e: (e.worker, e.member))
    assert entries == [
        PresenceEntry(SCOPE, "w1", "1", "alice", '{"tab": 1}'),
        PresenceEntry(SCOPE, "w2", "7", "alice", ""),
        PresenceEntry(SCOPE, "w2", "8", None, ""),
    ]
    assert await b.presence_count(SCOPE) == 3
    assert at_a.none_queued() and at_b.none_queued()  # not once per tab

    a.absent(SCOPE, "1")
    b.absent(SCOPE, "8")
    await settled(a, b)
    assert await a.presence_count(SCOPE) == 1 and at_a.none_queued()
    b.absent(SCOPE, "7")  # the last one
    assert await at_a.next() == ("offline", "alice") == await at_b.next()
    assert await a.presence(SCOPE) == []


async def test_two_first_tabs_at_once_on_two_workers_say_online_once(
    workers: list[RedisBroker],
) -> None:
    a, b = workers
    events = Events()
    await listening(a, events)
    for n in range(20):
        a.present(SCOPE, f"a{n}", user=f"user{n}")
        b.present(SCOPE, f"b{n}", user=f"user{n}")
    got = [await events.next() for _ in range(20)]
    assert sorted(got) == sorted(("online", f"user{n}") for n in range(20))
    await settled(a, b)
    assert events.none_queued()


async def test_a_dead_worker_is_reaped_once_its_members_leaving_and_its_users_offline(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    users, members = Events(), Events(members=True)
    await listening(a, users)
    a.on_presence(SCOPE, members)
    a.present(SCOPE, "1", user="alice")
    b.present(SCOPE, "2", user="alice")
    b.present(SCOPE, "3", user="bob")
    assert [await members.next() for _ in range(3)] == [("join", "1"), ("join", "2"), ("join", "3")]
    assert sorted([await users.next(), await users.next()]) == [
        ("online", "alice"),
        ("online", "bob"),
    ]
    await settled(a, b)
    async with await RedisConnection.open(redis.url) as admin:
        await admin.execute("DEL", "ratchetpy:worker:w2")  # what its expiry does, sooner
    assert await a.presence_count(SCOPE) == 1  # a dead worker's members count no more
    await a.announce(b"{}", 3.0)  # reaps w2
    assert sorted([await members.next(), await members.next()]) == [("leave", "2"), ("leave", "3")]
    assert await users.next() == ("offline", "bob")  # alice is still on w1
    await a.announce(b"{}", 3.0)  # once: nothing left to reap
    await settled(a)
    assert users.none_queued() and members.none_queued()
    async with await RedisConnection.open(redis.url) as admin:
        assert await admin.execute("KEYS", "ratchetpy:presence*:w2*") == []
    # Not dead after all (a pause longer than the ttl): it joins again, and says so.
    await b.announce(b"{}", 3.0)
    assert sorted([await members.next(), await members.next()]) == [("join", "2"), ("join", "3")]
    assert await users.next() == ("online", "bob")
    assert await a.presence_count(SCOPE) == 3


async def test_a_graceful_leave_takes_every_member_out_at_once(workers: list[RedisBroker]) -> None:
    a, b = workers
    events = Events()
    await listening(a, events)
    b.present(SCOPE, "2", user="bob")
    assert await events.next() == ("online", "bob")
    await settled(b)
    await b.leave()
    assert await events.next() == ("offline", "bob")
    assert await a.presence(SCOPE) == []
    b.present(SCOPE, "3", user="carol")  # after leaving: nothing more is written
    await settled(b)
    assert await a.presence(SCOPE) == []


async def test_a_redis_that_restarted_empty_gets_every_workers_presence_back(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    port = free_port()
    with redis_server(tmp_path, port=port) as server:
        a, b = await started(server.url, nursery, "w1", "w2")
        a.present(SCOPE, "1", user="alice")
        b.present(SCOPE, "2")
        await settled(a, b)
    with redis_server(tmp_path, port=port):
        for broker in (a, b):
            with trio.fail_after(10):
                await broker.publisher.wait_connected()
            await broker.announce(b"{}", 3.0)  # its key was gone: presence written again
        assert sorted(e.member for e in await a.presence(SCOPE)) == ["1", "2"]


async def test_a_user_id_presence_cannot_store_is_refused(workers: list[RedisBroker]) -> None:
    a, _ = workers
    for user in ["", "two\nlines"]:
        with pytest.raises(ValueError, match="non-empty and has no newline"):
            a.present(SCOPE, "1", user=user)


async def test_waiting_for_presence_while_redis_is_away_is_refused_and_repaired_later(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    port = free_port()
    with redis_server(tmp_path, port=port) as server:
        (a,) = await started(server.url, nursery, "w1")
    a.present(SCOPE, "1", user="alice")  # Redis is away
    with pytest.raises(BrokerUnavailable, match="presence"):
        await a.presence_written()
    with redis_server(tmp_path, port=port):
        with trio.fail_after(10):
            await a.publisher.wait_connected()
        await a.announce(b"{}", 3.0)  # repairs what was missed
        await a.presence_written()
        assert [entry.member for entry in await a.presence(SCOPE)] == ["1"]


async def test_listening_again_later_reports_no_missed_events(
    workers: list[RedisBroker], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = workers
    first, again = Events(members=True), Events(members=True)
    await listening(a, first)
    b.present(SCOPE, "1")
    assert await first.next() == ("join", "1")
    a.off_presence(SCOPE, first)
    b.present(SCOPE, "2")  # while a does not listen
    await settled(b)
    with caplog.at_level(logging.WARNING, logger="ratchetpy.broker"):
        await listening(a, again)
        b.present(SCOPE, "3")
        assert await again.next() == ("join", "3")
    assert "missed" not in caplog.text


async def test_a_scopes_numbering_that_expired_goes_on_above_the_old_numbers(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, b = workers
    events = Events(members=True)
    await listening(a, events)
    b.present(SCOPE, "1")
    assert await events.next() == ("join", "1")
    async with await RedisConnection.open(redis.url) as admin:
        ttl = await admin.execute("PTTL", f"ratchetpy:presence-seq:{SCOPE}")
        assert 86_000_000 < ttl <= 86_400_000  # a day without events
        await admin.execute("DEL", f"ratchetpy:presence-seq:{SCOPE}")  # what that expiry does
    b.present(SCOPE, "2")
    assert await events.next() == ("join", "2")  # not taken for an old one


async def test_a_scope_nobody_listens_to_costs_no_events(
    redis: RedisProcess, workers: list[RedisBroker]
) -> None:
    a, _ = workers
    a.present("wamp-subscribers:realm1:com.example.news", "7", user="alice")
    await settled(a)
    assert await a.presence_count("wamp-subscribers:realm1:com.example.news") == 1
    async with await RedisConnection.open(redis.url) as admin:
        numbered = await admin.execute("KEYS", "ratchetpy:presence-seq:*")
    assert numbered == []  # no event was published, so none was numbered
