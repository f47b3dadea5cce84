"""``IoServer.run()`` as users run it: a real process, stopped with SIGTERM or SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.trio.client import connect

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def start_example(name: str) -> tuple[trio.Process, int, list[bytes]]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / name), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    output = b""
    with trio.fail_after(20):
        while (found := re.search(rb"listening on 127\.0\.0\.1:(\d+)", output)) is None:
            chunk = await proc.stderr.receive_some(4096)
            assert chunk, f"the example exited early: {output.decode(errors='replace')}"
            output += chunk
    return proc, int(found.group(1)), [output]


async def drain_stderr(proc: trio.Process, into: list[bytes]) -> None:
    assert proc.stderr is not None
    while chunk := await proc.stderr.receive_some(4096):
        into.append(chunk)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_every_client_with_1001_and_exits_cleanly(signum: int) -> None:
    proc, port, log = await start_example("chat.py")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_stderr, proc, log)
        uri = f"ws://127.0.0.1:{port}/chat"
        async with connect(uri) as a, connect(uri) as b:
            await a.send("before shutdown")
            assert await b.recv() == "before shutdown"
            proc.send_signal(signum)
            for ws in (a, b):
                with pytest.raises(ClientClosed):
                    await ws.recv()
                assert ws.close_code == 1001
        with trio.fail_after(10):
            returncode = await proc.wait()
    assert returncode == 0, b"".join(log).decode(errors="replace")
    assert b"shutting down gracefully" in b"".join(log)
