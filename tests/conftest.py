"""Shared fixtures: a server on a free loopback port, a real redis-server, a supervisor of
worker processes serving a test app through that Redis."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ratchetpy import App, IoServer
from support.processes import SUPPORT, ServerProcess, StartWorkers
from support.redis import RedisProcess, redis_server

Start = Callable[..., Awaitable[tuple[IoServer, int]]]
ServeApp = Callable[[App], Awaitable[int]]


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[Start]:
    """``server, port = await start_server(app, **options)``: serve on 127.0.0.1, port 0."""

    async def start(app: Any, **options: Any) -> tuple[IoServer, int]:
        server = IoServer(app, port=0, address="127.0.0.1", **options)
        port = await nursery.start(server.serve)
        return server, port

    yield start


@pytest.fixture
async def serve_app(nursery: trio.Nursery) -> AsyncIterator[ServeApp]:
    """``port = await serve_app(app)``: serve an App (its own address and port) in the test's
    nursery, returning the port it got."""

    async def start(app: App) -> int:
        port: int = await nursery.start(app.serve)
        return port

    yield start


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A real redis-server of the test's own, on a free port (skipped where there is none)."""
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def supervisor(redis: RedisProcess) -> Iterator[StartWorkers]:
    """``start(target, *options)``: ``ratchetpy serve TARGET --workers 2 --broker URL`` on a
    free port, returned once every worker is ready; killed with its workers afterwards."""
    started: list[ServerProcess] = []

    def start(target: str = "cluster_app:Room", *options: str, workers: int = 2) -> ServerProcess:
        command = [sys.executable, "-m", "ratchetpy", "serve", target, "--port", "0"]
        command += ["--workers", str(workers), "--broker", redis.url, *options]
        server = ServerProcess(command, "supervisor", cwd=SUPPORT)
        started.append(server)
        server.wait_for_log(r"\d+ workers serving", timeout=30)
        return server

    yield start
    for server in started:
        server.kill()
