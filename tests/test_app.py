"""App over real sockets: routes of every kind on one port, path parameters, origin policy,
hosts, trusted proxies, limits and statistics, seen by the `websockets` client and the
standard library's `http.client`."""

from __future__ import annotations

import http.client
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from conftest import ServeApp
from ratchetpy import (
    App,
    Authenticate,
    Connection,
    HttpRequest,
    HttpResponse,
    MessageComponent,
    Page,
    StaticFiles,
    WampComponent,
    WampServer,
    WsServer,
)
from ratchetpy.app import _describe
from ratchetpy.components.guards import LOOPBACK_HOSTS


class Rooms(MessageComponent):
    """Echoes with the room from the route and the client's address."""

    def on_message(self, conn: Connection, msg: Any) -> None:
        assert conn.http_request is not None
        room = conn.http_request.path_params["room"]
        conn.send(f"{room}|{conn.remote_address}|{msg}")


def request(port: int, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        client.request(method, path, headers=headers)
        response = client.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        client.close()


def make_app(tmp_path: Path, **options: Any) -> App:
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = App("localhost", 0, "127.0.0.1", **options)
    app.route("/", Page("<h1>page</h1>"))
    app.route("/rooms/{room}", Rooms())
    app.route("/open/{room}", Rooms(), allowed_origins=["*"])
    app.route("/static/{path:path}", StaticFiles(tmp_path))
    app.route("/hello", lambda req: f"hello {req.query_params.get('name', ['?'])[0]}")

    async def create(req: HttpRequest) -> dict[str, Any]:
        await trio.sleep(0)
        return {"created": json.loads(req.body)}

    app.route("/items", create, methods=["POST"])
    app.route("/health", app.health)
    app.route("/stats", app.cluster_stats)
    app.route("/admin", lambda req: "admin", http_host="admin.localhost")
    return app


async def test_websocket_route_with_path_parameters(serve_app: ServeApp, tmp_path: Path) -> None:
    port = await serve_app(make_app(tmp_path))
    async with connect(f"ws://127.0.0.1:{port}/rooms/caf%C3%A9") as ws:
        await ws.send("hi")
        assert await ws.recv() == "café|127.0.0.1|hi"


async def test_http_routes_of_every_kind(serve_app: ServeApp, tmp_path: Path) -> None:
    port = await serve_app(make_app(tmp_path))

    def check() -> None:
        assert request(port, "GET", "/")[2] == b"<h1>page</h1>"
        assert request(port, "GET", "/hello?name=ann")[2] == b"hello ann"
        status, headers, body = request(port, "GET", "/static/app.js")
        assert status == 200 and body == b"console.log(1)"
        assert headers["Content-Type"].startswith("text/javascript")
        assert request(port, "GET", "/static/")[2] == b"<h1>home</h1>"
        assert request(port, "GET", "/static/../../etc/passwd")[0] in (400, 404)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        client.request("POST", "/items", body=b'{"a": 1}')
        response = client.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"created": {"a": 1}}
        client.close()
        status, headers, body = request(port, "DELETE", "/items")
        assert status == 405 and headers["Allow"] == "POST"
        status, headers, body = request(port, "GET", "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, _, body = request(port, "GET", "/stats")  # one process: itself
        stats = json.loads(body)
        assert status == 200 and stats["total"]["workers"] == 1
        (only,) = stats["workers"]
        assert only["address"] == f"127.0.0.1:{port}" and only["pid"] == os.getpid()
        assert stats["total"]["connections_total"] == only["connections_total"] >= 1
        status, _, body = request(port, "GET", "/nothing")
        assert status == 404 and b"no route for /nothing" in body
        status, _, body = request(port, "GET", "/admin")
        assert status == 404 and b"served for host admin.localhost" in body
        assert request(port, "GET", "/admin", Host="admin.localhost")[2] == b"admin"

    await trio.to_thread.run_sync(check)


@pytest.mark.parametrize(
    ("path", "origin", "status"),
    [
        ("/rooms/a", "http://127.0.0.1:{port}", None),  # same origin as the page
        ("/rooms/a", "http://localhost:9999", None),  # the app's http_host
        ("/rooms/a", "http://evil.test", 403),
        ("/rooms/a", "null", 403),
        ("/open/a", "http://evil.test", None),  # allowed_origins=["*"]
    ],
)
async def test_origin_policy(
    serve_app: ServeApp, tmp_path: Path, path: str, origin: str, status: int | None
) -> None:
    port = await serve_app(make_app(tmp_path))
    origin = origin.format(port=port)
    url = f"ws://127.0.0.1:{port}{path}"
    if status is None:
        async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send("x")
            assert (await ws.recv()).endswith("|x")
        return
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, origin=origin):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == status
    assert f"origin '{origin}' is not allowed".encode() in info.value.response.body


@pytest.mark.parametrize(
    ("http_host", "address", "expected"),
    [
        ("example.com", "0.0.0.0", ["example.com", *LOOPBACK_HOSTS]),
        (None, "127.0.0.1", list(LOOPBACK_HOSTS)),
        (None, "::1", list(LOOPBACK_HOSTS)),
        (None, "localhost", list(LOOPBACK_HOSTS)),
        (None, "0.0.0.0", ["*"]),  # reached by names nobody told us
        (None, "", ["*"]),
    ],
)
def test_allowed_hosts_default(http_host: str | None, address: str, expected: list[str]) -> None:
    assert App(http_host, 0, address).hosts.allowed_hosts == expected
    given = App(http_host, 0, address, allowed_hosts=["chat.test"])
    assert given.hosts.allowed_hosts == ["chat.test"]


async def test_requests_for_other_hosts_get_421(serve_app: ServeApp, tmp_path: Path) -> None:
    port = await serve_app(make_app(tmp_path))
    anywhere = await serve_app(make_app(tmp_path, allowed_hosts=["*"]))

    def check() -> None:
        status, _, body = request(port, "GET", "/", Host="evil.test")
        assert status == 421
        assert b"host 'evil.test' is not served here (allowed hosts: 'localhost'" in body
        assert request(port, "GET", "/", Host=f"localhost:{port}")[0] == 200
        assert request(port, "GET", "/", Host="admin.localhost")[0] == 200
        assert request(anywhere, "GET", "/", Host="evil.test")[0] == 200

    await trio.to_thread.run_sync(check)


async def test_trusted_proxy_gives_the_real_client_address(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    trusting = make_app(tmp_path, trusted_proxies=["127.0.0.1"])
    port = await serve_app(trusting)
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
    url = f"ws://127.0.0.1:{port}/rooms/a"
    async with connect(url, additional_headers=forwarded) as ws:
        await ws.send("x")
        # The proxy (127.0.0.1) is trusted; 203.0.113.1 is not, so it is the client.
        assert await ws.recv() == "a|203.0.113.1|x"
    trusting.blacklist.block("203.0.113.1")
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=forwarded):
            pass
    assert info.value.response.status_code == 403


async def test_untrusted_peers_cannot_forge_their_address(
    serve_app: ServeApp, tmp_path: Path
) -> None:
    port = await serve_app(make_app(tmp_path))
    url = f"ws://127.0.0.1:{port}/rooms/a"
    async with connect(url, additional_headers={"X-Forwarded-For": "198.51.100.7"}) as ws:
        await ws.send("x")
        assert await ws.recv() == "a|127.0.0.1|x"


async def test_limits_and_statistics(serve_app: ServeApp, tmp_path: Path) -> None:
    app = make_app(tmp_path, max_connections_per_ip=2, handshake_rate=(3, 60.0))
    port = await serve_app(app)
    url = f"ws://127.0.0.1:{port}/rooms/a"
    async with connect(url) as a, connect(url) as b:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 429  # third connection from this address
        await a.send("1")
        await b.send("2")
        await a.recv()
        await b.recv()
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    assert info.value.response.status_code == 429  # fourth handshake within a minute
    assert "Retry-After" in info.value.response.headers
    stats = app.stats()
    assert stats.messages_in == 2 and stats.messages_out == 2
    assert stats.handshakes_rejected == 2
    assert stats.connections_total >= 4 and stats.bytes_in > 0 and stats.bytes_out > 0


async def test_logs_say_what_happened(
    serve_app: ServeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy")
    port = await serve_app(make_app(tmp_path))
    async with connect(f"ws://127.0.0.1:{port}/rooms/a") as ws:
        await ws.send("x")
        await ws.recv()
        await ws.send("y")
        await ws.recv()
    with pytest.raises(InvalidStatus):
        async with connect(f"ws://127.0.0.1:{port}/rooms/a", origin="http://evil.test"):  # type: ignore[arg-type]
            pass
    with trio.fail_after(5):
        while "closed: 1000" not in caplog.text:
            await trio.sleep(0.01)
    text = caplog.text
    assert "route /rooms/{room} -> WebSocket Rooms" in text
    assert "opened on /rooms/a" in text
    assert "HTTP 403 to 127.0.0.1: GET /rooms/a: origin 'http://evil.test'" in text
    # Nothing per message.
    assert "x" not in {record.getMessage() for record in caplog.records}
    assert len([r for r in caplog.records if "opened" in r.getMessage()]) == 1


def test_route_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot route to 42"):
        App().route("/", 42)


async def test_endpoint_results(serve_app: ServeApp) -> None:
    app = App(None, 0)
    app.route("/none", lambda req: None)
    app.route("/bytes", lambda req: b"\x00\x01")
    app.route("/list", lambda req: [1, 2])
    app.route("/response", lambda req: HttpResponse(418, "teapot"))
    app.route("/bad", lambda req: 3.5)
    app.route("/ws", WsServer(Rooms()))
    port = await serve_app(app)

    def check() -> None:
        assert request(port, "GET", "/none")[0] == 204
        _, headers, body = request(port, "GET", "/bytes")
        assert body == b"\x00\x01" and headers["Content-Type"] == "application/octet-stream"
        assert json.loads(request(port, "GET", "/list")[2]) == [1, 2]
        assert request(port, "GET", "/response")[:1] == (418,)
        assert request(port, "GET", "/bad")[0] == 500

    await trio.to_thread.run_sync(check)


async def test_a_failing_endpoint_leaves_no_trace_in_the_limits(serve_app: ServeApp) -> None:
    app = App(None, 0, max_connections_per_ip=1)

    def broken(req: HttpRequest) -> str:
        raise RuntimeError("boom")

    app.route("/broken", broken)
    app.route("/ws", Rooms())
    app.route("/rooms/{room}", Rooms())
    port = await serve_app(app)
    for _ in range(3):
        status, _, body = await trio.to_thread.run_sync(request, port, "GET", "/broken")
        assert status == 500 and b"internal server error" in body
    async with connect(f"ws://127.0.0.1:{port}/rooms/a") as ws:
        await ws.send("x")
        assert await ws.recv() == "a|127.0.0.1|x"
    assert app.limits.open_count("127.0.0.1") <= 1


def test_route_wants_an_instance_not_a_class() -> None:
    with pytest.raises(TypeError, match=r"Rooms\(\), not the class"):
        App().route("/", Rooms)


def test_route_log_names_what_serves_each_route() -> None:
    class Board(WampComponent):
        pass

    app = App(None, 0, "127.0.0.1")
    wamp_route = app.route("/ws", Board())
    plain_route = app.route("/router", WampServer())
    guarded = app.route("/guarded", Authenticate(WsServer(WampServer(Board())), lambda r: None))
    assert _describe(wamp_route.component) == "WAMP router Board"
    assert _describe(plain_route.component) == "WAMP router WampComponent"
    assert _describe(guarded.component) == "WAMP router Board behind Authenticate"
