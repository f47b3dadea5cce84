"""The nginx configuration of docs/howto/behind-nginx.md, run for real in front of ratchetpy.

The ``nginx`` blocks are read out of the how-to (only the placeholders are replaced: ports, the
upstream address, the certificate paths), wrapped in a minimal ``nginx.conf`` under
``tmp_path`` and served by a real nginx. Skipped when nginx is not installed, unless
``RATCHETPY_REQUIRE_NGINX=1`` (then it fails).

Clients connect from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the loopback interface)
while nginx reaches the backend from 127.0.0.1, the only trusted proxy: so the address the
component sees proves that the real client's address came through, and the forged forwarding
headers the clients send show that those are not believed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from ratchetpy import (
    App,
    Connection,
    HttpComponent,
    HttpRequest,
    HttpResponse,
    MessageComponent,
    TrustedProxies,
    WsServer,
)
from support.examples import ROOT

HOWTO = ROOT / "docs" / "howto" / "behind-nginx.md"
CHAT = ROOT / "examples" / "chat.py"

CLIENT = "127.0.0.2"  # where the test's clients connect from
FORGED = {
    "X-Forwarded-For": "198.51.100.9",
    "Forwarded": "for=198.51.100.10;proto=https",
    "X-Forwarded-Proto": "https",
}


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        if os.environ.get("RATCHETPY_REQUIRE_NGINX") == "1":
            pytest.fail("RATCHETPY_REQUIRE_NGINX=1 but nginx is not installed")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    try:
        with socket.socket() as sock:
            sock.bind((CLIENT, 0))
    except OSError as exc:  # not Linux: only 127.0.0.1 is a loopback address
        pytest.skip(f"cannot connect from {CLIENT}: {exc}")
    return found


# -- the how-to's configuration ------------------------------------------------------------


def howto_block(marker: str) -> str:
    """The ``nginx`` block of the how-to that contains ``marker``."""
    text = HOWTO.read_text(encoding="utf-8")
    blocks = re.findall(r"^( *)```nginx\n(.*?)^\1```$", text, re.M | re.S)
    found = [textwrap.dedent(block) for _, block in blocks if marker in block]
    assert len(found) == 1, f"expected one nginx block with {marker!r} in {HOWTO}"
    return found[0]


def fill(block: str, replacements: dict[str, str]) -> str:
    """Replace placeholders of the how-to's block; each must occur in it."""
    for placeholder, value in replacements.items():
        assert placeholder in block, f"the how-to's block lost its {placeholder!r}"
        block = block.replace(placeholder, value)
    return block


def plain_site(backend: int, port: int) -> str:
    """The how-to's main block: nginx on ``port``, ratchetpy on ``backend``."""
    return fill(
        howto_block("map $http_upgrade $connection_upgrade"),
        {
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{backend};",
            "listen 80;": f"listen 127.0.0.1:{port};",
        },
    )


def tls_site(cert: Path, key: Path, https_port: int, redirect_port: int) -> str:
    """The how-to's TLS variant (it relies on the main block's map and upstream)."""
    return fill(
        howto_block("listen 443 ssl"),
        {
            "/etc/ssl/certs/chat.example.com.pem": str(cert),
            "/etc/ssl/private/chat.example.com.key": str(key),
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "listen 80;": f"listen 127.0.0.1:{redirect_port};",
        },
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes -------------------------------------------------------------------------------


class Log:
    """A process's stderr as it arrives, with a way to wait for a line."""

    def __init__(self) -> None:
        self.data = b""
        self.ended = False
        self._changed = trio.Event()

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(4096):
            self._add(bytes(chunk))
        self.ended = True
        self._add(b"")

    def _add(self, chunk: bytes) -> None:
        self.data += chunk
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, pattern: bytes, start: int = 0, timeout: float = 10
    ) -> re.Match[bytes]:
        with trio.fail_after(timeout):
            while (found := re.compile(pattern).search(self.data, start)) is None:
                assert not self.ended, f"the process exited: {self.text}"
                await self._changed.wait()
        return found

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


async def stop(proc: trio.Process) -> None:
    """SIGTERM (nginx: fast shutdown; ratchetpy: graceful), then SIGKILL if it lingers."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.terminate()
            with trio.move_on_after(5):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def nginx(
    binary: str, tmp_path: Path, site: str, main: str = ""
) -> AsyncIterator[tuple[trio.Process, Log]]:
    """Run nginx in the foreground with ``site`` included in its ``http`` block (and
    ``main`` in its main context)."""
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"{main}daemon off;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        "error_log stderr notice;\nevents {}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path / 'site.conf'};\n}}\n"
    )
    proc = await trio.lowlevel.open_process(
        [binary, "-c", str(conf), "-p", str(tmp_path), "-e", "stderr"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = Log()
    try:
        async with trio.open_nursery() as nursery:
            assert proc.stderr is not None
            nursery.start_soon(log.drain, proc.stderr)
            # The master opens the listening sockets before it starts the workers.
            await log.wait_for(rb"start worker process \d+")
            yield proc, log
            await stop(proc)
    except BaseException:
        print(f"nginx's log:\n{log.text}")  # pytest shows it with the failure
        raise
    finally:
        await stop(proc)


@asynccontextmanager
async def chat_example() -> AsyncIterator[tuple[trio.Process, int, Log]]:
    """examples/chat.py on a free port, as users run it."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(CHAT), "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = Log()
    try:
        async with trio.open_nursery() as nursery:
            assert proc.stderr is not None
            nursery.start_soon(log.drain, proc.stderr)
            found = await log.wait_for(rb"listening on (?:TLS on )?127\.0\.0\.1:(\d+)", timeout=20)
            yield proc, int(found.group(1)), log
            await stop(proc)
    finally:
        await stop(proc)


# -- clients ---------------------------------------------------------------------------------


def http_get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], str]:
    """A GET from 127.0.0.2 (blocking: run it in a thread)."""
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(CLIENT, 0))
    else:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, source_address=(CLIENT, 0), context=context
        )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


async def get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], str]:
    return await trio.to_thread.run_sync(http_get, port, path, headers, context)


def ws(url: str, **options: Any) -> connect:
    """A websockets client connecting from 127.0.0.2, not pinging on its own."""
    return connect(url, local_address=CLIENT, proxy=None, ping_interval=None, **options)


# -- an in-process backend that says what it sees ---------------------------------------------


class WhoAmI(MessageComponent):
    """Answers each message with the client's address and scheme as ratchetpy sees them."""

    def on_message(self, conn: Connection, msg: str | bytes) -> None:
        request = conn.http_request
        assert request is not None
        conn.send(f"{conn.remote_address} {request.scheme} {msg!s}")


class WhoAmIPage(HttpComponent):
    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, f"{conn.remote_address} {request.scheme}")


@asynccontextmanager
async def whoami_backend() -> AsyncIterator[tuple[App, int]]:
    """The ratchetpy side of the how-to: an App trusting nginx at 127.0.0.1."""
    app = App("localhost", 0, "127.0.0.1", trusted_proxies=["127.0.0.1"])
    app.route("/", WhoAmIPage())
    app.route("/whoami", WhoAmI())
    app.route("/pinged", WsServer(WhoAmI(), keepalive=0.3))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(app.serve)
        yield app, port
        nursery.cancel_scope.cancel()


# -- the tests -------------------------------------------------------------------------------


async def test_chat_example_through_nginx_pages_websockets_and_sigterm(
    nginx_binary: str, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        chat_example() as (chat, backend, chat_log),
        nginx(nginx_binary, tmp_path, plain_site(backend, port)),
    ):
        status, _, page = await get(port, "/")
        assert status == 200
        assert page == CHAT.with_name("chat.html").read_text(encoding="utf-8")
        status, _, body = await get(port, "/health")
        assert (status, json.loads(body)["status"]) == (200, "ok")

        # Same origin as a browser on the page nginx serves: allowed; another site: 403.
        url = f"ws://127.0.0.1:{port}/chat"
        origin = f"http://127.0.0.1:{port}"
        with pytest.raises(InvalidStatus) as refused:
            async with ws(url, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with ws(url, origin=origin) as a, ws(url, origin=origin) as b:
            await a.send("hello through nginx")
            assert await b.recv() == "hello through nginx"
            await b.send("and back")
            assert await a.recv() == "and back"

            # A graceful stop of ratchetpy reaches the browsers through nginx as 1001.
            chat.send_signal(signal.SIGTERM)
            for client in (a, b):
                with pytest.raises(ClientClosed):
                    await client.recv()
                assert client.close_code == 1001
        with trio.fail_after(10):
            assert await chat.wait() == 0, chat_log.text
        # While the backend is away, nginx answers 502 (clients retry later).
        status, _, _ = await get(port, "/")
        assert status == 502
    assert "shutting down gracefully" in chat_log.text


async def test_without_the_host_line_the_upstream_name_is_refused(
    nginx_binary: str, tmp_path: Path
) -> None:
    # nginx then sends its upstream's name as Host, which the App does not serve: the 421
    # names it (before, the same-origin rule refused the page with a 403).
    port = free_port()
    async with chat_example() as (_, backend, _):
        site = fill(plain_site(backend, port), {"proxy_set_header Host $host;": ""})
        async with nginx(nginx_binary, tmp_path, site):
            with pytest.raises(InvalidStatus) as refused:
                async with ws(f"ws://127.0.0.1:{port}/chat", origin=f"http://127.0.0.1:{port}"):
                    pass
            assert refused.value.response.status_code == 421
            assert b"host 'ratchetpy' is not served here" in refused.value.response.body


async def test_the_component_sees_the_real_client_not_forged_headers(
    nginx_binary: str, tmp_path: Path
) -> None:
    port = free_port()
    async with (
        whoami_backend() as (app, backend),
        nginx(nginx_binary, tmp_path, plain_site(backend, port)),
    ):
        status, _, body = await get(port, "/", FORGED)
        assert (status, body) == (200, f"{CLIENT} http")
        async with ws(f"ws://127.0.0.1:{port}/whoami", additional_headers=FORGED) as client:
            await client.send("hi")
            assert await client.recv() == f"{CLIENT} http hi"

        # Straight to the backend (not a trusted proxy): the headers are ignored.
        status, _, body = await get(backend, "/", FORGED)
        assert (status, body) == (200, f"{CLIENT} http")

        # Why the default mode is X-Forwarded-For: nginx passes the client's own
        # Forwarded header through, so believing it would believe the client.
        assert app.http.trusted_proxies is not None
        assert app.http.trusted_proxies.mode == "x-forwarded"
        app.http.trusted_proxies = TrustedProxies(["127.0.0.1"], mode="auto")
        status, _, body = await get(port, "/", FORGED)
        assert (status, body) == (200, "198.51.100.10 https")


async def test_tls_at_nginx_gives_https_to_the_component(nginx_binary: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    port, https_port, redirect_port = free_port(), free_port(), free_port()
    async with whoami_backend() as (_, backend):
        site = plain_site(backend, port) + tls_site(cert_file, key_file, https_port, redirect_port)
        async with nginx(nginx_binary, tmp_path, site):
            status, _, body = await get(https_port, "/", FORGED, context)
            assert (status, body) == (200, f"{CLIENT} https")
            url = f"wss://127.0.0.1:{https_port}/whoami"
            async with ws(url, ssl=context, origin=f"https://127.0.0.1:{https_port}") as client:
                await client.send("secure")
                assert await client.recv() == f"{CLIENT} https secure"
            # The plain port of the TLS variant sends browsers to https.
            status, headers, _ = await get(redirect_port, "/chat?x=1")
            assert status == 301
            assert headers["Location"] == "https://127.0.0.1/chat?x=1"


async def test_nginx_reload_keeps_upgraded_websockets(nginx_binary: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/whoami"
    async with (
        whoami_backend() as (_, backend),
        nginx(nginx_binary, tmp_path, plain_site(backend, port)) as (proc, log),
    ):
        async with ws(url) as client:
            await client.send("before")
            assert await client.recv() == f"{CLIENT} http before"
            mark = len(log.data)
            proc.send_signal(signal.SIGHUP)  # what nginx -s reload sends
            # The old worker has stopped accepting; it keeps the upgraded connection.
            old = await log.wait_for(rb"(\d+)#\d+: gracefully shutting down", mark)
            await log.wait_for(rb"start worker process \d+", mark)
            await client.send("after")
            assert await client.recv() == f"{CLIENT} http after"
            async with ws(url) as fresh:  # served by the new worker
                await fresh.send("new")
                assert await fresh.recv() == f"{CLIENT} http new"
            exited = rb"worker process %s exited" % old.group(1)
            assert re.search(exited, log.data) is None
        # Once its last connection is gone, the old worker exits.
        await log.wait_for(exited, mark)


async def test_worker_shutdown_timeout_bounds_a_reload(nginx_binary: str, tmp_path: Path) -> None:
    port = free_port()
    main = fill(howto_block("worker_shutdown_timeout"), {" 10m;": " 1s;"})
    async with (
        whoami_backend() as (_, backend),
        nginx(nginx_binary, tmp_path, plain_site(backend, port), main) as (proc, _),
        ws(f"ws://127.0.0.1:{port}/whoami") as client,
    ):
        await client.send("before")
        assert await client.recv() == f"{CLIENT} http before"
        reloaded = trio.current_time()
        proc.send_signal(signal.SIGHUP)
        with trio.fail_after(5), pytest.raises(ClientClosed):
            await client.recv()
        assert trio.current_time() - reloaded > 0.9
        assert client.close_code == 1006  # dropped by nginx, no close frame


async def test_keepalive_pings_outlive_proxy_read_timeout(
    nginx_binary: str, tmp_path: Path
) -> None:
    """The how-to's advice with short times: nginx drops a WebSocket on which the backend
    is silent for ``proxy_read_timeout``; ratchetpy's keepalive pings keep it alive."""
    port = free_port()
    async with whoami_backend() as (_, backend):
        site = fill(plain_site(backend, port), {"proxy_read_timeout 1h;": "proxy_read_timeout 1s;"})
        async with (
            nginx(nginx_binary, tmp_path, site),
            ws(f"ws://127.0.0.1:{port}/pinged") as pinged,
        ):
            # Two quiet connections cut one after the other: the pinged one, opened first,
            # has then been idle (no message either way) for twice the timeout.
            for _ in range(2):
                async with ws(f"ws://127.0.0.1:{port}/whoami") as quiet:
                    opened = trio.current_time()
                    with trio.fail_after(5), pytest.raises(ClientClosed):
                        await quiet.recv()
                    assert trio.current_time() - opened > 0.9  # cut by the timeout
                assert quiet.close_code == 1006  # dropped by nginx, no close frame
            await pinged.send("still there")
            assert await pinged.recv() == f"{CLIENT} http still there"
