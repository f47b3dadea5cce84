"""``IoServer.run()`` as users run it: a real process, stopped with SIGTERM or SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import trio
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.trio.client import connect

from support.examples import EXAMPLES


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


async def test_app_run_in_a_thread_serves_and_stops_through_call_soon_threadsafe() -> None:
    # People run the socket server in a thread next to a Flask development server; signals
    # reach only the main thread, so run() there serves without signal handlers.
    import threading

    from ratchetpy import App
    from support.components import Echo

    app = App(None, 0)
    app.route("/echo", Echo())
    serving = threading.Event()
    app.add_timer(0, serving.set)  # timers start with serve(): the port is bound by then
    failures: list[BaseException] = []

    def run() -> None:
        try:
            app.run()
        except BaseException as exc:  # reported to the test below, not lost in the thread
            failures.append(exc)
            serving.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(serving.wait, abandon_on_cancel=True)
        assert not failures, failures
        async with connect(f"ws://127.0.0.1:{app.port}/echo") as ws:
            await ws.send("from the main thread")
            assert await ws.recv() == "from the main thread"
            app.call_soon_threadsafe(app.shutdown)
            with pytest.raises(ClientClosed):
                await ws.recv()
            assert ws.close_code == 1001
    finally:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
    assert not failures, failures


async def test_echo_example_echoes_on_every_path() -> None:
    proc, port, log = await start_example("echo.py")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain_stderr, proc, log)
        for path in ("/", "/echo", "/any/deeper/path?x=1"):
            async with connect(f"ws://127.0.0.1:{port}{path}") as ws:
                await ws.send(path)
                assert await ws.recv() == path
                await ws.send(path.encode())
                assert await ws.recv() == path.encode()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await proc.wait() == 0
