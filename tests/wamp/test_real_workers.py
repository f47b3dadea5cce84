"""WAMP between real worker processes through a real redis-server, with Autobahn|Python
clients: ``ratchetpy serve cluster_app:wamp_app --workers 2``.

- RPC: a procedure registered on one worker is called from the other, its results and errors
  come back, it cannot be registered twice, and a call whose callee's worker is killed
  (SIGKILL) fails with ``wamp.error.canceled`` instead of hanging.
- The session meta API: wamp.session.count / get and on_join / on_leave cover both workers,
  and the sessions of a killed worker are said to have left, once.

(Without processes: test_cluster_rpc and test_meta.)"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from support.processes import StartWorkers
from support.redis import RedisProcess

pytest.importorskip("txaio")

from autobahn.wamp.exception import ApplicationError

from support.autobahn import Session, join, run
from support.cluster_app import PID


async def one_on_each_worker(port: int, pids: list[int]) -> dict[int, Session]:
    """A session on every worker (which one accepts is the kernel's choice: bounded tries);
    the extra ones leave again."""
    found: dict[int, Session] = {}
    for _ in range(100):
        session = await join(port)
        pid = await session.call(PID)
        if pid in found:
            await session.leave()
        else:
            found[pid] = session
        if sorted(found) == sorted(pids):
            return found
    raise AssertionError(f"100 sessions did not reach every worker: {sorted(found)}")


def test_a_procedure_on_one_worker_is_called_from_the_other_until_that_worker_dies(
    supervisor: StartWorkers, redis: RedisProcess
) -> None:
    server = supervisor("cluster_app:wamp_app", workers=2)
    pids = server.worker_pids()

    async def scenario() -> None:
        sessions = await one_on_each_worker(server.port, pids)
        here, there = pids
        callee, caller = sessions[here], sessions[there]
        never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        invoked = asyncio.Event()

        async def slow() -> Any:
            invoked.set()
            return await never

        def add(a: int, b: int) -> list[int]:
            return [a + b, os.getpid()]

        def refuse() -> None:
            raise ApplicationError("com.example.refused", "not today")

        await callee.register(add, "com.example.add")
        await callee.register(refuse, "com.example.refuse")
        await callee.register(slow, "com.example.slow")

        assert await caller.call("com.example.add", 2, 3) == [5, os.getpid()]
        with pytest.raises(ApplicationError) as refused:
            await caller.call("com.example.refuse")
        assert refused.value.error == "com.example.refused"
        with pytest.raises(ApplicationError) as taken:
            await caller.register(add, "com.example.add")
        assert taken.value.error == "wamp.error.procedure_already_exists"
        results = await asyncio.gather(*(caller.call("com.example.add", n, n) for n in range(50)))
        assert [total for total, _ in results] == [2 * n for n in range(50)]

        waiting = asyncio.ensure_future(caller.call("com.example.slow"))
        await asyncio.wait_for(invoked.wait(), 10)  # it reached the callee
        os.kill(here, signal.SIGKILL)
        with pytest.raises(ApplicationError) as canceled:
            await asyncio.wait_for(waiting, 10)  # the registry's TTL (3 s) and two lookups
        assert canceled.value.error == "wamp.error.canceled"
        # Its registrations died with it: free for a worker that lives.
        await caller.register(add, "com.example.add")
        assert (await caller.call("com.example.add", 1, 1))[0] == 2
        await caller.leave()

    run(scenario())
    assert server.stop() == 0


def test_the_session_meta_api_covers_every_worker_and_outlives_a_killed_one(
    supervisor: StartWorkers, redis: RedisProcess
) -> None:
    server = supervisor("cluster_app:wamp_app", workers=2)
    pids = server.worker_pids()

    async def scenario() -> None:
        sessions = await one_on_each_worker(server.port, pids)
        here, there = pids
        watcher, doomed = sessions[here], sessions[there]
        joined: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        left: asyncio.Queue[list[Any]] = asyncio.Queue()
        await watcher.subscribe(lambda details: joined.put_nowait(details), "wamp.session.on_join")
        await watcher.subscribe(lambda *args: left.put_nowait(list(args)), "wamp.session.on_leave")

        others = [await join(server.port) for _ in range(6)]  # on either worker
        for _ in others:
            details = await asyncio.wait_for(joined.get(), 10)
            assert details["transport"]["type"] == "websocket"
        assert await watcher.call("wamp.session.count") == 8
        doomed_id = doomed.joined.result().session
        assert (await watcher.call("wamp.session.get", doomed_id))["session"] == doomed_id
        on_doomed = [s for s in others if await s.call(PID) == there]

        os.kill(there, signal.SIGKILL)
        gone = {doomed_id, *(s.joined.result().session for s in on_doomed)}
        said = set()
        while said != gone:
            args = await asyncio.wait_for(left.get(), 10)  # the registry's TTL and a reap
            assert args[0] not in said  # once each
            said.add(args[0])
        assert await watcher.call("wamp.session.count") == 8 - len(gone)
        with pytest.raises(ApplicationError) as missing:
            await watcher.call("wamp.session.get", doomed_id)
        assert missing.value.error == "wamp.error.no_such_session"
        for session in [watcher, *(s for s in others if s not in on_doomed)]:
            await session.leave()

    run(scenario())
    assert server.stop() == 0
