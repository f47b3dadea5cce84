"""A real redis-server for the tests: started on a free port (and a unix socket) in a
temporary directory, ready once it says so, stopped by PID."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)


@dataclass
class RedisProcess:
    process: subprocess.Popen[bytes]
    port: int
    socket_path: Path
    log: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _require() -> str:
    if REDIS_SERVER is None:
        if os.environ.get("RATCHETPY_REQUIRE_REDIS"):
            pytest.fail("redis-server is required (RATCHETPY_REQUIRE_REDIS) but not installed")
        pytest.skip("redis-server is not installed")
    return REDIS_SERVER


@contextmanager
def redis_server(directory: Path, *options: str, port: int | None = None) -> Iterator[RedisProcess]:
    """Run redis-server with ``options`` until the block ends (on ``port``, or a free one:
    give the same port to start it again where clients expect it)."""
    binary = _require()
    port = free_port() if port is None else port
    socket_path = directory / "redis.sock"
    command = [
        binary,
        "--port", str(port), "--bind", "127.0.0.1",
        "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(directory), "--save", "", "--appendonly", "no",
        "--logfile", "", "--daemonize", "no",
        *options,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    log: list[str] = []
    deadline = time.monotonic() + 20
    buffered = b""
    try:
        while "Ready to accept connections" not in "".join(log):
            left = deadline - time.monotonic()
            readable, _, _ = select.select([process.stdout], [], [], max(0.0, left))
            if not readable:
                raise AssertionError("redis-server did not start: " + "".join(log))
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError("redis-server exited: " + "".join(log))
            buffered += chunk
            *lines, rest = buffered.split(b"\n")
            buffered = rest
            log.extend(line.decode(errors="replace") + "\n" for line in lines)
        yield RedisProcess(process, port, socket_path, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


class SilentServer:
    """A "Redis" on a free loopback port that accepts connections and never says a word, like
    a connection a NAT forgot: what a probe must find out. ``accepted`` counts connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.url = ""

    async def start(self, nursery: trio.Nursery) -> str:
        """Serve in ``nursery``; returns the URL to connect to (no login, no name: nothing
        has to be answered at connect time)."""

        async def silent(stream: trio.SocketStream) -> None:
            self.accepted += 1
            async with stream:
                await trio.sleep_forever()

        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        self.url = f"redis://127.0.0.1:{listeners[0].socket.getsockname()[1]}/0"
        return self.url


def command(port: int, *args: str) -> object:
    """One Redis command from a thread that is not trio's (a blocking socket, hiredis'
    parser): what a test outside trio asks Redis."""
    import hiredis

    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        while (reply := reader.gets()) is False:
            chunk = sock.recv(65536)
            assert chunk, "redis-server closed the connection"
            reader.feed(chunk)
    return reply
