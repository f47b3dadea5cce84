"""Shared fixtures: a server on a free loopback port, a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from ratchetpy import IoServer
from support.redis import RedisProcess, redis_server

Start = Callable[..., Awaitable[tuple[IoServer, int]]]


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[Start]:
    """``server, port = await start_server(app, **options)``: serve on 127.0.0.1, port 0."""

    async def start(app: Any, **options: Any) -> tuple[IoServer, int]:
        server = IoServer(app, port=0, address="127.0.0.1", **options)
        port = await nursery.start(server.serve)
        return server, port

    yield start


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A real redis-server of the test's own, on a free port (skipped where there is none)."""
    with redis_server(tmp_path) as server:
        yield server
