"""Workers and their supervisor, as real processes on loopback with a real redis-server:
``ratchetpy serve ... --workers 2 --broker redis://...`` serves one port and one room from
two processes; a worker killed with SIGKILL is restarted while the other's clients lose
nothing; SIGHUP replaces every worker without refusing a connection; SIGTERM (and the
supervisor's death) close every client with 1001; start-up failures exit with the reason.
Clients are the websockets library's."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import ClientConnection, connect

from conftest import SUPPORT, StartWorkers
from ratchetpy import BrokerError
from ratchetpy.client import publish
from ratchetpy.io.redis import RedisConnection
from support.examples import EXAMPLES
from support.http_get import http_get
from support.processes import ServerProcess
from support.redis import RedisProcess, command, free_port, redis_server


class Member:
    """A websockets client of the room in a task of its own (where its connection's nursery
    nests): ``pid`` is the worker serving it, ``inbox`` what it received, ``close_code``
    how it ended (``None`` while open, ``1006`` for a connection lost without a close)."""

    def __init__(self, ws: ClientConnection, pid: int) -> None:
        self.ws = ws
        self.pid = pid
        self._inbox, self.inbox = trio.open_memory_channel[str | bytes](1000)
        self.close_code: int | None = None
        self.ended = trio.Event()

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self) -> str | bytes:
        with trio.fail_after(10):
            return await self.inbox.receive()

    async def wait_ended(self) -> int:
        with trio.fail_after(10):
            await self.ended.wait()
        assert self.close_code is not None
        return self.close_code

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self._inbox.send_nowait(message)
        except ConnectionClosed:
            pass
        close = self.ws.protocol.close_rcvd
        self.close_code = 1006 if close is None else close.code
        self.ended.set()


async def _member(port: int, path: str, *, task_status: trio.TaskStatus[Member]) -> None:
    async with connect(f"ws://127.0.0.1:{port}{path}") as ws:
        with trio.fail_after(10):
            first = json.loads(await ws.recv())
            while "pid" not in first:  # (what the room said before it said who serves it)
                first = json.loads(await ws.recv())
        member = Member(ws, first["pid"])
        task_status.started(member)
        await member._read()


async def join(nursery: trio.Nursery, port: int, path: str = "/") -> Member:
    """A new member, once it is one (it knows its worker's pid)."""
    member: Member = await nursery.start(_member, port, path)
    return member


async def members_on_every_worker(
    nursery: trio.Nursery, port: int, pids: list[int], *, each: int = 2
) -> dict[int, list[Member]]:
    """Connect until every worker serves ``each`` members (which one accepts is the kernel's
    choice: bounded attempts); the extra ones are closed again."""
    by_pid: dict[int, list[Member]] = {pid: [] for pid in pids}
    for _ in range(200):
        if all(len(members) >= each for members in by_pid.values()):
            return by_pid
        member = await join(nursery, port)
        if len(by_pid[member.pid]) < each:
            by_pid[member.pid].append(member)
        else:
            await member.ws.aclose()
    raise AssertionError(f"200 connections did not reach every worker: {by_pid}")


async def numbered(sender: Member, count: int, tag: str) -> None:
    for n in range(count):
        await sender.send(f"{tag} {n}")


async def receive_numbered(receiver: Member, count: int, tag: str) -> None:
    """``count`` messages ``tag 0`` .. ``tag N-1``, in order: none missing, none twice."""
    got = [await receiver.recv() for _ in range(count)]
    assert got == [f"{tag} {n}" for n in range(count)]


async def cluster_stats(port: int) -> dict[str, Any]:
    """GET /stats from whichever worker accepts the connection."""
    response = await trio.to_thread.run_sync(http_get, port, "/stats")
    assert response[0] == 200, response
    result: dict[str, Any] = json.loads(response[1])
    return result


async def numsub(redis: RedisProcess, channel: str = "ratchetpy:group:room") -> int:
    """How many workers subscribe to ``channel`` (the room's, by default)."""
    async with await RedisConnection.open(redis.url) as admin:
        return int((await admin.execute("PUBSUB", "NUMSUB", channel))[1])


async def test_two_workers_serve_one_port_and_one_room(
    supervisor: StartWorkers, redis: RedisProcess, nursery: trio.Nursery
) -> None:
    server = supervisor()
    pids = server.worker_pids()
    assert len(pids) == 2
    by_pid = await members_on_every_worker(nursery, server.port, pids)
    assert await numsub(redis) == 2  # both workers have members, both listen
    everyone = [member for members in by_pid.values() for member in members]
    for sender in (by_pid[pids[0]][0], by_pid[pids[1]][0]):  # a publisher on each worker
        async with trio.open_nursery() as exchange:
            exchange.start_soon(numbered, sender, 50, "from")
            for receiver in everyone:
                if receiver is not sender:
                    exchange.start_soon(receive_numbered, receiver, 50, "from")
    assert await trio.to_thread.run_sync(server.stop) == 0
    assert server.errors() == []


async def test_a_killed_worker_is_restarted_and_the_others_lose_nothing(
    supervisor: StartWorkers, redis: RedisProcess, nursery: trio.Nursery
) -> None:
    server = supervisor("cluster_app:make_app")
    survivor, victim = server.worker_pids()
    by_pid = await members_on_every_worker(nursery, server.port, [survivor, victim])
    stats = await cluster_stats(server.port)
    assert sorted(worker["pid"] for worker in stats["workers"]) == sorted([survivor, victim])
    with trio.fail_after(10):
        while stats["total"]["connections"] < 4:  # each worker announces once a second
            await trio.sleep(0.1)
            stats = await cluster_stats(server.port)
    assert stats["total"]["workers"] == 2
    assert all(worker["connections"] >= 2 for worker in stats["workers"])  # the sums add up
    sender, receiver = by_pid[survivor]
    doomed = by_pid[victim][0]
    await numbered(sender, 20, "before")
    await receive_numbered(receiver, 20, "before")
    await receive_numbered(doomed, 20, "before")
    os.kill(victim, signal.SIGKILL)
    assert await doomed.wait_ended() == 1006  # gone without a closing handshake
    await numbered(sender, 20, "during")
    await receive_numbered(receiver, 20, "during")
    ready = await trio.to_thread.run_sync(
        lambda: server.wait_for_log(r"worker \d+ \(pid (\d+)\) ready", count=3)
    )
    new = int(ready[-1].group(1))  # the third worker started: the replacement
    assert f"(pid {victim}) exited with status -9" in "".join(server.lines)
    # Its clients come back and are served by either worker, the new one included.
    back = await members_on_every_worker(nursery, server.port, [survivor, new], each=1)
    await numbered(back[new][0], 5, "back")
    for member in (sender, receiver, back[survivor][0]):
        await receive_numbered(member, 5, "back")
    assert await numsub(redis) == 2  # the dead worker's subscription went with it
    # Its entry in the registry expires: within the announcement's ttl (3 s) of its death.
    with trio.fail_after(10):
        while victim in [w["pid"] for w in (await cluster_stats(server.port))["workers"]]:
            await trio.sleep(0.1)  # (the expiry is Redis' to tell)
    pids = sorted(w["pid"] for w in (await cluster_stats(server.port))["workers"])
    assert pids == sorted([survivor, new])
    assert await trio.to_thread.run_sync(server.stop) == 0


async def test_sighup_replaces_every_worker_and_refuses_no_connection(
    supervisor: StartWorkers, nursery: trio.Nursery
) -> None:
    server = supervisor()
    before = set(server.worker_pids())
    outcomes = {"served": 0, "closed 1001": 0}
    done = trio.Event()

    async def keep_connecting() -> None:
        # A refused connection or a failed handshake raises out of here: the test fails.
        while not done.is_set():
            async with trio.open_nursery() as own:
                try:
                    member = await join(own, server.port)
                except ConnectionClosed as exc:
                    # Accepted by a worker that is draining: closed properly, not refused.
                    assert exc.rcvd is not None and exc.rcvd.code == 1001, exc
                    outcomes["closed 1001"] += 1
                    continue
                outcomes["served"] += 1
                await member.ws.aclose()

    async with trio.open_nursery() as load:
        for _ in range(4):
            load.start_soon(keep_connecting)
        server.proc.send_signal(signal.SIGHUP)
        await trio.to_thread.run_sync(
            lambda: server.wait_for_log("rolling restart done", timeout=30)
        )
        done.set()
    after = set(server.worker_pids())
    assert len(after) == 2 and not after & before
    assert outcomes["served"] > 0
    assert await trio.to_thread.run_sync(server.stop) == 0
    assert server.errors() == []


async def wait_numsub(redis: RedisProcess, expected: int, timeout: float = 10) -> float:
    """Poll Redis until ``expected`` workers subscribe to the room; returns how long it took
    (the workers resubscribe on their own schedule, which only Redis can tell)."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while True:
            with contextlib.suppress(BrokerError):
                if await numsub(redis) == expected:
                    return trio.current_time() - start
            await trio.sleep(0.02)


async def test_every_worker_resubscribes_after_client_kill_and_a_redis_restart(
    supervisor: StartWorkers, redis: RedisProcess, nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = supervisor()
    one, two = server.worker_pids()
    by_pid = await members_on_every_worker(nursery, server.port, [one, two])
    (sender, local), (remote, _) = by_pid[one], by_pid[two]
    assert await numsub(redis) == 2

    # Redis drops every subscriber connection: both workers come back and subscribe again.
    async with await RedisConnection.open(redis.url) as admin:
        assert await admin.execute("CLIENT", "KILL", "TYPE", "pubsub") == 2
    await wait_numsub(redis, 2)
    await numbered(sender, 10, "after kill")
    await receive_numbered(remote, 10, "after kill")
    await receive_numbered(local, 10, "after kill")

    # Redis goes away: local delivery goes on; what other workers should get waits at most
    # the buffer time, then is refused (logged), never queued up for longer.
    redis.process.kill()
    redis.process.wait()
    await numbered(sender, 10, "while down")
    await receive_numbered(local, 10, "while down")  # this worker's members got them all
    await trio.to_thread.run_sync(
        lambda: server.wait_for_log("could not be passed on to other workers", timeout=10)
    )
    (tmp_path / "again").mkdir()
    with redis_server(tmp_path / "again", port=redis.port) as again:
        resubscribed = await wait_numsub(again, 2)
        # Subscribed again is not publishing again: the sender's worker reconnects its publish
        # connection on its own backoff, and what it publishes before that waits at most the
        # buffer time, then is refused. Under load that can come after the resubscription.
        back = rf"\[{one}\] ratchetpy\.broker: publish connection to .* back after"
        await trio.to_thread.run_sync(lambda: server.wait_for_log(back, timeout=10))
        await numbered(sender, 10, "back")
        await receive_numbered(local, 10, "back")
        # The other worker got what waited less than the buffer time (a second) for Redis, in
        # order, then what was sent after; what waited longer was refused and logged (at
        # least the first); nothing came twice.
        got = [await remote.recv()]
        while got[-1] != "back 9":
            got.append(await remote.recv())
        refused = 10 - sum(1 for text in got if text.startswith("while down"))
        assert refused >= 1
        assert got == [f"while down {n}" for n in range(refused, 10)] + [
            f"back {n}" for n in range(10)
        ]
        assert await trio.to_thread.run_sync(server.stop) == 0
    print(f"resubscribed {resubscribed:.2f} s after Redis was back")


@pytest.mark.parametrize("how", ["SIGTERM", "supervisor killed"])
async def test_every_client_gets_1001_when_the_workers_stop(
    supervisor: StartWorkers, nursery: trio.Nursery, how: str
) -> None:
    server = supervisor()
    pids = server.worker_pids()
    by_pid = await members_on_every_worker(nursery, server.port, pids, each=1)
    if how == "SIGTERM":
        assert await trio.to_thread.run_sync(server.stop) == 0
    else:
        # No worker outlives its supervisor: each notices and shuts down gracefully.
        server.proc.kill()
    for members in by_pid.values():
        assert await members[0].wait_ended() == 1001
    for pid in pids:
        await exited(pid)


async def exited(pid: int) -> None:
    """Wait until process ``pid`` (not a child of ours) has exited: its pidfd turns readable."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    try:
        with trio.fail_after(10):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def _serve(*options: str, cwd: Path = SUPPORT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ratchetpy", "serve", *options, "--port", "0"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_workers_without_a_broker_are_refused_with_the_reason() -> None:
    result = _serve("cluster_app:Room", "--workers", "2")
    assert result.returncode == 2
    assert "--workers 2 needs --broker" in result.stderr
    assert "each worker is a server of its own" in result.stderr


def test_workers_that_cannot_reach_redis_do_not_start() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = _serve("cluster_app:Room", "--workers", "2", "--broker", url)
    assert result.returncode == 1
    assert "cannot connect to" in result.stderr
    assert "workers serving" not in result.stderr and "ready" not in result.stderr


def test_workers_that_fail_to_start_stop_the_supervisor(redis: RedisProcess) -> None:
    result = _serve("cluster_app:broken_in_workers", "--workers", "2", "--broker", redis.url)
    assert result.returncode == 1
    assert "this worker cannot start" in result.stderr  # the worker's own error
    assert "worker 1 could not start" in result.stderr


async def test_the_chat_example_is_one_room_across_workers(
    redis: RedisProcess, nursery: trio.Nursery
) -> None:
    command = [sys.executable, str(EXAMPLES / "chat.py"), "--port", "0"]
    chat = ServerProcess([*command, "--workers", "2", "--broker", redis.url], "chat.py")
    try:
        chat.wait_for_log(r"2 workers serving", timeout=30)
        members: list[Member] = []
        for _ in range(60):
            ws: ClientConnection = await nursery.start(_chat_member, chat.port)
            member = Member(ws, 0)
            nursery.start_soon(member._read)
            members.append(member)
            if len(members) >= 4 and await numsub(redis, "ratchetpy:group:chat") == 2:
                break
        else:
            raise AssertionError("60 connections did not reach both workers")
        async with trio.open_nursery() as exchange:
            exchange.start_soon(numbered, members[0], 30, "chat")
            for receiver in members[1:]:
                exchange.start_soon(receive_numbered, receiver, 30, "chat")
        assert await trio.to_thread.run_sync(chat.stop) == 0
        assert chat.errors() == []
    finally:
        chat.kill()


async def _chat_member(port: int, *, task_status: trio.TaskStatus[ClientConnection]) -> None:
    async with connect(f"ws://127.0.0.1:{port}/chat") as ws:
        with trio.fail_after(10):
            await (await ws.ping()).wait()  # answered once on_open (the join) is done
        task_status.started(ws)
        await trio.sleep_forever()


def test_four_workers_publishers_and_the_endpoint_reach_every_subscriber_once_in_order(
    supervisor: StartWorkers, redis: RedisProcess
) -> None:
    """Autobahn|Python sessions spread over four workers subscribe; three sessions publish
    (acknowledged) and a backend POSTs to the publish endpoint, each 30 numbered events:
    every subscriber gets every publisher's events once, in that publisher's order."""
    pytest.importorskip("txaio")
    from autobahn.wamp.types import PublishOptions

    from support.autobahn import join, run
    from support.cluster_app import PUBLISH_SECRET

    server = supervisor("cluster_app:wamp_app", workers=4)
    topic, count = "com.example.feed", 30
    channel = f"ratchetpy:wamp:realm1:{topic}"

    async def scenario() -> None:
        inboxes: list[list[tuple[str, int]]] = []
        expected = 4 * count
        full: list[asyncio.Event] = []  # set when a subscriber got all it should
        sessions = []

        async def subscriber() -> None:
            session = await join(server.port)
            inbox: list[tuple[str, int]] = []
            done = asyncio.Event()

            def on_event(who: str, n: int, inbox: list[tuple[str, int]] = inbox) -> None:
                inbox.append((who, n))
                if len(inbox) >= expected:
                    done.set()

            await session.subscribe(on_event, topic)
            full.append(done)
            sessions.append(session)
            inboxes.append(inbox)

        # The kernel chooses the worker; clients arriving together spread best. In batches,
        # until all four workers have subscribers (bounded).
        for _ in range(10):
            await asyncio.gather(*(subscriber() for _ in range(8)))
            reply = await asyncio.to_thread(command, redis.port, "PUBSUB", "NUMSUB", channel)
            if reply[1] == 4:  # type: ignore[index]
                break
        else:
            raise AssertionError(f"{len(sessions)} subscribers did not reach all four workers")
        publishers = [await join(server.port) for _ in range(3)]

        async def from_session(index: int) -> None:
            for n in range(count):
                await publishers[index].publish(
                    topic, f"session {index}", n, options=PublishOptions(acknowledge=True)
                )

        def from_backend() -> None:
            url = f"http://127.0.0.1:{server.port}/publish"
            for n in range(count):
                publish(url, topic, "backend", n, secret=PUBLISH_SECRET)

        await asyncio.gather(
            *(from_session(index) for index in range(3)), asyncio.to_thread(from_backend)
        )
        try:
            await asyncio.wait_for(asyncio.gather(*(done.wait() for done in full)), 10)
        except TimeoutError:
            raise AssertionError([len(inbox) for inbox in inboxes]) from None
        for inbox in inboxes:
            assert len(inbox) == expected  # nothing twice
            for who in ["backend", "session 0", "session 1", "session 2"]:
                assert [n for sender, n in inbox if sender == who] == list(range(count))
        for session in [*sessions, *publishers]:
            await session.leave()

    run(scenario())
    assert server.stop() == 0
    assert server.errors() == []


async def test_presence_is_one_view_of_every_worker_under_churn_and_a_killed_worker(
    supervisor: StartWorkers, nursery: trio.Nursery
) -> None:
    """Users connect to a room over two workers: ``who`` lists them all on either worker; a
    user opening and closing tabs on both workers at once is told online and offline
    alternately, never twice in a row; when a worker is killed its users who are nowhere
    else go offline, once, and the count drops."""
    server = supervisor("cluster_app:presence_app")
    pids = server.worker_pids()

    async def as_user(user: str, pid: int | None = None) -> Member:
        for _ in range(100):  # the kernel picks the worker: bounded tries
            member = await join(nursery, server.port, f"/?user={user}")
            if pid is None or member.pid == pid:
                return member
            await member.ws.aclose()
        raise AssertionError(f"100 connections did not reach worker {pid}")

    async def who(member: Member) -> dict[str, Any]:
        await member.send("who")
        while True:
            answer = json.loads(await member.recv())
            if "users" in answer:
                return answer

    doomed, survivor = pids
    watcher = await as_user("watcher", survivor)
    alice_there, alice_here = await as_user("alice", doomed), await as_user("alice", survivor)
    bob = await as_user("bob", doomed)
    everyone = {"users": ["alice", "bob", "watcher"], "count": 4}
    assert await who(watcher) == everyone == await who(alice_there)

    async def tab_of_dave() -> None:
        member = await as_user("dave")
        await member.ws.aclose()

    async with trio.open_nursery() as tabs:
        for _ in range(12):
            tabs.start_soon(tab_of_dave)
    for _ in range(100):  # every tab's leaving reached Redis (each try is a round trip)
        if (await who(alice_here))["count"] == 4:
            break
    else:
        raise AssertionError("dave's tabs are still counted")

    os.kill(doomed, signal.SIGKILL)
    told = []
    while (event := json.loads(await watcher.recv())) != {"offline": "bob"}:
        told.append(event)  # (alice is still here: she stays online)
    assert all(event.get("online", event.get("offline")) == "dave" for event in told)
    assert told[0] == {"online": "dave"} and told[-1] == {"offline": "dave"}
    assert all(a != b for a, b in itertools.pairwise(told))  # never twice in a row
    assert await who(watcher) == {"users": ["alice", "watcher"], "count": 2}
    assert await alice_there.wait_ended() == 1006 and await bob.wait_ended() == 1006
