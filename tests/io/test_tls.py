"""TLS (wss://, https://) with certificates made at test time by trustme; verifying clients."""

from __future__ import annotations

import http.client
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.trio.client import connect

from ratchetpy import (
    Connection,
    HttpComponent,
    HttpRequest,
    HttpServer,
    IoServer,
    MessageComponent,
    Page,
    Router,
    ServerError,
    WsServer,
)
from support.busy_stream import WRITE_LIMIT, Opened, read_steadily_then_close
from support.frames import client_frame, parse_server_frames, read_http_head, upgrade_request


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def server_ctx(cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()  # verifies the certificate and the host name
    ca.configure_trust(ctx)
    return ctx


class SecureEcho(MessageComponent):
    """Echoes, and notes whether each connection was TLS as the component sees it."""

    def __init__(self) -> None:
        self.secure: list[bool] = []
        self.opened = 0
        self.closed = trio.Event()

    def on_open(self, conn: Connection) -> None:
        self.opened += 1
        self.secure.append(conn.secure)

    def on_message(self, conn: Connection, msg: Any) -> None:
        conn.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.closed.set()


async def tls_stream(port: int, client_ctx: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    # https_compatible=False: a missing close_notify raises instead of passing for EOF.
    stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
    await stream.do_handshake()
    return stream


async def test_wss_echo_text_binary_and_a_large_message(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    size = 2 * 2**20
    app = HttpServer(WsServer(SecureEcho(), max_message_size=4 * size, compression=None))
    server, port = await start_server(app, ssl_context=server_ctx)
    big = os.urandom(size)  # incompressible, and bigger than any socket buffer
    async with connect(f"wss://localhost:{port}/", ssl=client_ctx, max_size=4 * size) as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff binary")
        assert await ws.recv() == b"\x00\xff binary"
        with trio.fail_after(10):
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send("after")
            assert await ws.recv() == "after"
    stats = server.stats()
    assert stats.bytes_in > size and stats.bytes_out > size


async def test_raw_tcp_component_over_tls_sees_secure_and_plaintext_counts(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    echo = SecureEcho()
    server, port = await start_server(echo, ssl_context=server_ctx)
    stream = await tls_stream(port, client_ctx)
    async with stream:
        await stream.send_all(b"hello over TLS")
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b"hello over TLS"
    with trio.fail_after(5):
        await echo.closed.wait()
    assert echo.secure == [True]
    stats = server.stats()
    assert (stats.bytes_in, stats.bytes_out, stats.connections_total) == (14, 14, 1)

    plain = SecureEcho()
    _, plain_port = await start_server(plain)
    async with await trio.open_tcp_stream("127.0.0.1", plain_port) as raw:
        await raw.send_all(b"x")
        with trio.fail_after(5):
            assert await raw.receive_some(10) == b"x"
    assert plain.secure == [False]


async def test_https_get_of_a_page(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class WhoAmI(HttpComponent):
        def on_open(self, conn: Connection, request: HttpRequest) -> None:
            body = f"secure={conn.secure} scheme={request.scheme}".encode()
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            conn.close()

    router = Router({"/": Page("<h1>over TLS</h1>"), "/who": WhoAmI()})
    _, port = await start_server(HttpServer(router), ssl_context=server_ctx)

    def get(path: str) -> tuple[int, bytes]:
        client = http.client.HTTPSConnection("localhost", port, context=client_ctx, timeout=10)
        try:
            client.request("GET", path)
            response = client.getresponse()
            return response.status, response.read()
        finally:
            client.close()

    assert await trio.to_thread.run_sync(get, "/") == (200, b"<h1>over TLS</h1>")
    assert await trio.to_thread.run_sync(get, "/who") == (200, b"secure=True scheme=https")


async def test_request_sent_with_the_last_handshake_flight_is_answered(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """Client Finished and the first request in one write: the server must not wait for more."""
    _, port = await start_server(SecureEcho(), ssl_context=server_ctx)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    async with await trio.open_tcp_stream("127.0.0.1", port) as tcp:
        with trio.fail_after(5):
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        await tcp.send_all(outgoing.read())
                    incoming.write(await tcp.receive_some(65536))
            tls.write(b"early bird")
            await tcp.send_all(outgoing.read())  # Finished and the data, one write
            answer = b""
            while not answer:
                incoming.write(await tcp.receive_some(65536))
                try:
                    answer = tls.read(100)
                except ssl.SSLWantReadError:
                    continue
    assert answer == b"early bird"


async def test_control_frames_keep_their_place_under_tls(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """write_urgent and discard_queued act on plaintext not yet encrypted, as on plain TCP."""

    class Urgent(MessageComponent):
        def on_message(self, conn: Any, msg: Any) -> None:
            conn.write(b"data1 ")
            conn.write(b"data2 ")
            if msg == b"discard":
                conn.write_urgent(b"CLOSE ", discard_queued=True)
            else:
                conn.write_urgent(b"PONG1 ")
                conn.write_urgent(b"PONG2 ")
            conn.write(b"end")

    _, port = await start_server(Urgent(), ssl_context=server_ctx)
    for request, expected in [
        (b"urgent", b"PONG1 PONG2 data1 data2 end"),
        (b"discard", b"CLOSE end"),
    ]:
        async with await tls_stream(port, client_ctx) as stream:
            await stream.send_all(request)
            received = b""
            with trio.fail_after(5):
                while len(received) < len(expected):
                    received += await stream.receive_some(100)
            assert received == expected


async def test_a_client_reading_a_busy_stream_over_tls_is_still_heard(
    start_server: Any,
    nursery: trio.Nursery,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """As over plain TCP: the paused reader resumes as the peer takes ciphertext, so a client
    that keeps up with a queue that never empties has its ping and its close answered."""
    component = Opened()
    app = HttpServer(WsServer(component, compression=None))
    _, port = await start_server(app, write_limit=WRITE_LIMIT, ssl_context=server_ctx)
    async with await tls_stream(port, client_ctx) as stream:
        await stream.send_all(upgrade_request())
        head, early = await read_http_head(stream)  # type: ignore[arg-type]
        assert head.startswith(b"HTTP/1.1 101"), head
        outcome = await read_steadily_then_close(stream, early, component, nursery)
    assert (outcome.close_code, outcome.pongs) == (1000, 1)


@pytest.mark.parametrize("separate_key", [False, True])
async def test_certfile_and_keyfile(
    start_server: Any,
    cert: trustme.LeafCert,
    client_ctx: ssl.SSLContext,
    tmp_path: Path,
    separate_key: bool,
) -> None:
    if separate_key:
        certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
        certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(keyfile))
        options = {"certfile": str(certfile), "keyfile": str(keyfile)}
    else:
        both = tmp_path / "both.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(both))
        options = {"certfile": str(both)}
    server, port = await start_server(HttpServer(WsServer(SecureEcho())), **options)
    assert server.ssl_context is not None
    async with connect(f"wss://localhost:{port}/", ssl=client_ctx) as ws:
        await ws.send("files")
        assert await ws.recv() == "files"


def test_tls_option_errors(server_ctx: ssl.SSLContext, tmp_path: Path) -> None:
    app = MessageComponent()
    with pytest.raises(ValueError, match="not both"):
        IoServer(app, ssl_context=server_ctx, certfile="cert.pem")
    with pytest.raises(ValueError, match="keyfile needs a certfile"):
        IoServer(app, keyfile="key.pem")
    with pytest.raises(ServerError, match="cannot load the certificate"):
        IoServer(app, certfile=str(tmp_path / "missing.pem"))


async def test_plain_http_on_the_tls_port_is_dropped_and_the_server_goes_on(
    start_server: Any,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy")
    echo = SecureEcho()
    _, port = await start_server(HttpServer(WsServer(echo)), ssl_context=server_ctx)
    async with await trio.open_tcp_stream("127.0.0.1", port) as raw:
        await raw.send_all(upgrade_request())
        with trio.fail_after(5):
            while await raw.receive_some(65536):  # at most a TLS alert, then EOF
                pass
    assert echo.opened == 0
    failures = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.INFO]
    assert failures[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with connect(f"wss://localhost:{port}/", ssl=client_ctx) as ws:
        await ws.send("next client")
        assert await ws.recv() == "next client"


async def test_a_client_that_never_handshakes_is_dropped_after_the_timeout(
    start_server: Any, server_ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy")
    echo = SecureEcho()
    server, port = await start_server(echo, ssl_context=server_ctx, tls_handshake_timeout=0.2)
    async with await trio.open_tcp_stream("127.0.0.1", port) as raw:
        with trio.fail_after(5):
            assert await raw.receive_some(100) == b""  # the server hung up
    assert echo.opened == 0
    assert any("not finished within 0.2 s" in r.getMessage() for r in caplog.records)
    assert not echo.closed.is_set()  # on_close only follows an on_open
    assert server.stats().connections == 0


async def test_graceful_shutdown_over_tls_sends_1001_and_close_notify(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, port = await start_server(HttpServer(WsServer(SecureEcho())), ssl_context=server_ctx)
    raw = await tls_stream(port, client_ctx)
    async with connect(f"wss://localhost:{port}/", ssl=client_ctx) as ws:
        await raw.send_all(upgrade_request())
        head, early = await read_http_head(raw)  # type: ignore[arg-type]
        assert head.startswith(b"HTTP/1.1 101")
        server.shutdown()
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1001
        # The raw client gets the close frame, answers it, then sees a clean TLS end (a
        # missing close_notify would raise BrokenResourceError here).
        data = early
        with trio.fail_after(5):
            while not parse_server_frames(data):
                data += await raw.receive_some(65536)
            frames = parse_server_frames(data)
            assert frames[-1][0] == 0x8 and int.from_bytes(frames[-1][1][:2], "big") == 1001
            await raw.send_all(client_frame(0x8, frames[-1][1][:2]))
            while await raw.receive_some(65536):
                pass
        await raw.aclose()
    with trio.fail_after(5):
        await server.aclose()


async def test_raw_close_sends_close_notify_and_ragged_eof_is_tolerated(
    start_server: Any,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Bye(SecureEcho):
        def on_message(self, conn: Connection, msg: Any) -> None:
            if msg == b"bye":
                conn.send(b"goodbye")
                conn.close()
            else:
                conn.send(msg)

    bye = Bye()
    _, port = await start_server(bye, ssl_context=server_ctx)
    stream = await tls_stream(port, client_ctx)
    await stream.send_all(b"bye")
    received = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(100):  # ends cleanly: close_notify came
            received += chunk
    assert received == b"goodbye"
    await stream.aclose()

    # A peer that just drops TCP (no close_notify) is an ordinary close, not an error.
    ragged = await tls_stream(port, client_ctx)
    await ragged.send_all(b"ping")
    with trio.fail_after(5):
        assert await ragged.receive_some(100) == b"ping"
    bye.closed = trio.Event()
    await ragged.transport_stream.aclose()
    with trio.fail_after(5):
        await bye.closed.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_slow_consumer_over_tls_is_closed_and_memory_stays_bounded(
    start_server: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    class Flood(MessageComponent):
        def __init__(self) -> None:
            self.clients: list[Connection] = []
            self.max_buffered = 0
            self.victim_closed = trio.Event()

        def on_open(self, conn: Connection) -> None:
            self.clients.append(conn)

        def on_message(self, conn: Connection, msg: Any) -> None:
            for _ in range(2000):
                for other in self.clients:
                    if other is not conn:
                        other.send("x" * 10_000)
                        self.max_buffered = max(self.max_buffered, other.buffered_amount)

        def on_close(self, conn: Connection) -> None:
            self.clients.remove(conn)
            self.victim_closed.set()

    flood = Flood()
    limit = 64 * 1024
    _, port = await start_server(
        HttpServer(WsServer(flood, compression=None)),
        ssl_context=server_ctx,
        write_limit=limit,
        close_timeout=0.5,
    )
    victim = await tls_stream(port, client_ctx)  # upgrades, then never reads
    await victim.send_all(upgrade_request())
    async with victim, connect(f"wss://localhost:{port}/", ssl=client_ctx) as producer:
        await producer.send("flood")
        with trio.fail_after(5):
            await flood.victim_closed.wait()
        # The limit, one message over it, and TLS record overhead.
        assert flood.max_buffered <= limit + 10_100 + 1024
        await producer.send("still served")
