"""The ``ratchetpy`` command as users run it: a real process serving a module's component or
App, stopped with SIGTERM, with bad command lines answered clearly."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

MODULE = textwrap.dedent(
    """
    from ratchetpy import App, MessageComponent, Page


    class Echo(MessageComponent):
        def on_message(self, conn, msg):
            conn.send(f"{conn.http_request.path}:{msg}")


    echo = Echo()


    def make_app():
        app = App("localhost", 9, "127.0.0.1")  # the command line's --port replaces 9
        app.route("/", Page("<p>hi</p>"))
        app.route("/echo", Echo())
        return app


    app = make_app()
    not_servable = 42
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(MODULE)
    return tmp_path


@asynccontextmanager
async def ratchetpy(
    cwd: Path, *args: str, how: str = "module"
) -> AsyncIterator[tuple[trio.Process, int, list[bytes]]]:
    """Run the command with ``--port 0``; yields the process, its port and its log so far."""
    command = (
        [sys.executable, "-m", "ratchetpy"]
        if how == "module"
        else [str(Path(sys.executable).with_name("ratchetpy"))]
    )
    proc = await trio.lowlevel.open_process(
        [*command, *args, "--port", "0"],
        cwd=str(cwd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = b""
    try:
        with trio.fail_after(20):
            while (found := re.search(rb"listening on [\d.]+:(\d+)", log)) is None:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"the command exited early: {log.decode(errors='replace')}"
                log += chunk
        output = [log]
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                assert proc.stderr is not None
                while chunk := await proc.stderr.receive_some(4096):
                    output.append(chunk)

            nursery.start_soon(drain)
            yield proc, int(found.group(1)), output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: trio.Process, log: list[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        code = await proc.wait()
    assert code == 0, b"".join(log).decode(errors="replace")


@pytest.mark.parametrize("how", ["module", "script"])
async def test_serves_a_component_on_every_path(project: Path, how: str) -> None:
    async with (
        ratchetpy(project, "serve", "myapp:echo", how=how) as (proc, port, log),
        connect(f"ws://127.0.0.1:{port}/any/where") as ws,
    ):
        await ws.send("hi")
        assert await ws.recv() == "/any/where:hi"
        await stop(proc, log)
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1001
    text = b"".join(log).decode()
    assert "WebSocket #1 from 127.0.0.1 opened on /any/where" in text


async def test_serves_a_component_class_at_a_path(project: Path) -> None:
    async with ratchetpy(project, "serve", "myapp:Echo", "--path", "/ws") as (proc, port, log):
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hi")
            assert await ws.recv() == "/ws:hi"
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/other"):
                pass
        assert info.value.response.status_code == 404
        await stop(proc, log)


@pytest.mark.parametrize("target", ["myapp:app", "myapp:make_app"])
async def test_serves_an_app_or_an_app_factory(project: Path, target: str) -> None:
    async with ratchetpy(
        project, "serve", target, "--origin", "https://trusted.test", "--log-level", "debug"
    ) as (proc, port, log):
        url = f"ws://127.0.0.1:{port}/echo"
        async with connect(url, origin="https://trusted.test") as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await ws.recv() == "/echo:hi"
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, origin="https://other.test"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        await stop(proc, log)
    text = b"".join(log).decode()
    assert "route /echo -> WebSocket Echo" in text
    assert "DEBUG" in text  # --log-level debug took effect


def status_for_host(port: int, host: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


@pytest.mark.parametrize("target", ["myapp:echo", "myapp:app"])
async def test_allowed_host_adds_hosts_to_the_defaults(project: Path, target: str) -> None:
    async with ratchetpy(project, "serve", target, "--allowed-host", "chat.test") as (
        proc,
        port,
        log,
    ):
        statuses = await trio.to_thread.run_sync(
            lambda: [
                status_for_host(port, host)
                for host in ("chat.test", f"localhost:{port}", "127.0.0.1", "evil.test")
            ]
        )
        # echo answers a plain GET with 426 (a WebSocket endpoint), the App's page with 200.
        served = 426 if target == "myapp:echo" else 200
        assert statuses == [served, served, served, 421]
        await stop(proc, log)
    text = b"".join(log).decode()
    assert "serving hosts" in text and "chat.test" in text


async def test_serves_tls_from_certificate_files(project: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(project / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(project / "cert.pem"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with ratchetpy(
        project, "serve", "myapp:echo", "--certfile", "cert.pem", "--keyfile", "key.pem"
    ) as (proc, port, log):
        async with connect(f"wss://localhost:{port}/secure", ssl=client_ctx) as ws:
            await ws.send("hi")
            assert await ws.recv() == "/secure:hi"
        await stop(proc, log)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratchetpy", *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["serve", "myapp"], 2, "expected MODULE:ATTR"),
        (["serve", "nosuchmodule:x"], 2, "cannot import 'nosuchmodule'"),
        (["serve", "myapp:missing"], 2, "has no attribute 'missing'"),
        (["serve", "myapp:not_servable"], 2, "not something ratchetpy can serve"),
        (["serve", "myapp:app", "--path", "/x"], 2, "an App has its own routes"),
        (["serve", "myapp:echo", "--certfile", "missing.pem"], 1, "ratchetpy: error:"),
        (["serve", "myapp:echo", "--port", "abc"], 2, "invalid int value"),
        (["serve", "myapp:echo", "--broker", "http://x"], 2, "--broker: a Redis URL starts"),
    ],
)
def test_bad_command_lines_say_what_is_wrong(
    project: Path, args: list[str], code: int, message: str
) -> None:
    result = run_cli(project, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr


def test_an_unreachable_broker_is_an_error_not_a_traceback(project: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        result = run_cli(project, "serve", "myapp:app", "--broker", f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1, result.stderr
    assert f"ratchetpy: error: cannot connect to redis://127.0.0.1:{port}/0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_an_error_not_a_traceback(project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(project, "serve", "myapp:echo", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help(project: Path) -> None:
    assert run_cli(project, "--version").stdout.startswith("ratchetpy ")
    assert "MODULE:ATTR" in run_cli(project, "serve", "--help").stdout
