"""HostCheck, OriginCheck, IpBlackList and ConnectionLimits: unit checks without sockets,
then the refusals as a real client sees them."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from ratchetpy import (
    ConnectionLimits,
    HostCheck,
    HttpComponent,
    HttpResponse,
    HttpServer,
    IpBlackList,
    OriginCheck,
    WsServer,
)
from ratchetpy.testing import RecordingConnection, http_request
from support.components import Echo, RequestRecorder


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        (["localhost"], "localhost:8080", True),  # ports do not matter
        (["localhost"], "LOCALHOST", True),
        (["example.com"], "example.com.", True),  # the fully qualified form
        (["Example.COM:443"], "example.com", True),  # entries are normalised too
        (["localhost"], "evil.com", False),  # DNS rebinding's Host
        (["localhost"], "localhost.evil.com", False),
        (["*.example.com"], "chat.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "evilexample.com", False),
        (["[::1]"], "[::1]:8080", True),
        (["127.0.0.1"], "127.0.0.1:8080", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["*"], "anything.test", True),
        (["*"], None, True),
        (["localhost"], None, False),  # HTTP/1.0 without Host
        ([], "localhost", False),
    ],
)
def test_host_rules(allowed: list[str], host: str | None, ok: bool) -> None:
    check = HostCheck(HttpComponent(), allowed)
    assert (check.refusal(http_request(host=host)) is None) is ok


def test_host_refusal_is_421_and_says_what_is_served() -> None:
    check = HostCheck(RequestRecorder(), ["localhost", "*.localhost"])
    conn = RecordingConnection()
    response = check.on_open(conn, http_request("/chat", host="evil.com", upgrade=True))
    assert isinstance(response, HttpResponse) and response.status == 421
    assert isinstance(response.body, bytes)
    assert b"host 'evil.com' is not served here (allowed hosts: 'localhost', '*.localhost')" in (
        response.body
    )
    assert conn.counters.handshakes_rejected == 1
    missing = check.refusal(http_request(host=None))
    assert missing is not None and missing.startswith("the request has no Host header")


def test_host_check_lets_served_hosts_through_and_learns_more() -> None:
    recorder = RequestRecorder(answer=HttpResponse(200, "ok"))
    check = HostCheck(recorder, ["localhost"])
    assert check.on_open(RecordingConnection(), http_request(host="localhost:1")) == HttpResponse(
        200, "ok"
    )
    check.allow(["Chat.Example.com:8443", "localhost", "::1", "[2001:DB8::1]:443"])
    assert check.allowed_hosts == ["localhost", "chat.example.com", "[::1]", "[2001:db8::1]"]
    assert check.refusal(http_request(host="[::1]:8080")) is None
    assert check.refusal(http_request(host="chat.example.com")) is None


@pytest.mark.parametrize(
    ("allowed", "origin", "host", "ok"),
    [
        ([], "http://localhost:8080", "localhost:8080", True),  # same origin
        ([], "https://example.com", "example.com", True),  # same origin, default ports
        ([], "https://example.com", "example.com:443", True),
        ([], "http://localhost:8081", "localhost:8080", False),  # other port: other origin
        ([], "http://evil.com", "localhost:8080", False),
        ([], None, "localhost:8080", True),  # non-browser clients
        ([], "null", "localhost:8080", False),  # sandboxed frames, file: pages
        (["example.com"], "https://example.com:9999", "localhost", True),  # Ratchet's form
        (["example.com"], "https://sub.example.com", "localhost", False),
        (["*.example.com"], "https://sub.example.com", "localhost", True),
        (["*.example.com"], "https://evilexample.com", "localhost", False),
        (["example.com:8443"], "https://example.com:8443", "localhost", True),
        (["example.com:8443"], "https://example.com", "localhost", False),
        (["https://example.com"], "https://example.com", "localhost", True),
        (["https://example.com"], "http://example.com", "localhost", False),
        (["https://example.com:8443"], "https://EXAMPLE.com:8443", "localhost", True),
        (["*"], "http://anything.test", "localhost", True),
        ([], "http://[::1]:8080", "[::1]:8080", True),
    ],
)
def test_origin_rules(allowed: list[str], origin: str | None, host: str, ok: bool) -> None:
    check = OriginCheck(HttpComponent(), allowed)
    assert (check.refusal(http_request(origin=origin, host=host)) is None) is ok


def test_origin_refusal_says_what_is_allowed() -> None:
    check = OriginCheck(HttpComponent(), ["example.com"])
    why = check.refusal(http_request(origin="http://evil.com", host="localhost:8080"))
    assert why is not None
    assert "'http://evil.com' is not allowed" in why
    assert "same origin (localhost:8080)" in why and "'example.com'" in why
    strict = OriginCheck(HttpComponent(), [], allow_missing=False)
    assert strict.refusal(http_request()) == "the request has no Origin header"


def test_blacklist_addresses_and_networks() -> None:
    blacklist = IpBlackList(RequestRecorder(), ["10.0.0.0/8", "192.0.2.7"])
    assert blacklist.is_blocked("10.1.2.3")
    assert blacklist.is_blocked("::ffff:10.1.2.3")  # IPv4-mapped is the same client
    assert blacklist.is_blocked("192.0.2.7")
    assert not blacklist.is_blocked("192.0.2.8")
    blacklist.block("2001:db8::/32")
    assert blacklist.is_blocked("2001:db8::1")
    blacklist.unblock("10.0.0.0/8")
    assert not blacklist.is_blocked("10.1.2.3")
    assert blacklist.blocked == ["192.0.2.7", "2001:db8::/32"]
    with pytest.raises(ValueError, match="not an IP address"):
        blacklist.block("example.com")


def test_blacklist_refuses_and_closes_existing() -> None:
    inner = RequestRecorder()
    blacklist = IpBlackList(inner)
    good = RecordingConnection(remote_address="198.51.100.1")
    bad = RecordingConnection(remote_address="203.0.113.9")
    assert blacklist.on_open(good, http_request()) is None
    assert blacklist.on_open(bad, http_request()) is None
    blacklist.block("203.0.113.0/24")
    assert bad.closes == [(1008, "address blocked")] and good.closes == []
    refused = blacklist.on_open(RecordingConnection(remote_address="203.0.113.10"), http_request())
    assert isinstance(refused, HttpResponse) and refused.status == 403
    # At the raw level (in front of HttpServer) a blocked client is just dropped.
    raw = RecordingConnection(remote_address="203.0.113.11", websocket=False)
    assert blacklist.on_open(raw) is None and raw.closes == [(1000, "")]
    assert inner.opened == [good, bad]


def test_per_ip_limit_counts_open_connections() -> None:
    limits = ConnectionLimits(RequestRecorder(), max_per_ip=2)
    conns = [RecordingConnection(remote_address="198.51.100.1") for _ in range(3)]
    ws = http_request(upgrade=True)
    assert limits.on_open(conns[0], ws) is None
    assert limits.on_open(conns[1], ws) is None
    refused = limits.on_open(conns[2], ws)
    assert isinstance(refused, HttpResponse) and refused.status == 429
    assert b"already has 2 open connections" in bytes(refused.body)
    # Plain requests are not refused.
    page = RecordingConnection(remote_address="198.51.100.1")
    assert limits.on_open(page, http_request()) is None
    limits.on_close(page)
    other_client = RecordingConnection(remote_address="198.51.100.2")
    assert limits.on_open(other_client, ws) is None
    limits.on_close(conns[0])
    assert limits.on_open(conns[2], ws) is None
    assert limits.open_count("198.51.100.1") == 2


def test_handshake_rate_is_a_token_bucket() -> None:
    now = [0.0]
    limits = ConnectionLimits(RequestRecorder(), handshake_rate=(3, 1.0), clock=lambda: now[0])
    conn = RecordingConnection(remote_address="198.51.100.1")
    results = [limits.on_open(conn, http_request(upgrade=True)) for _ in range(4)]
    assert results[:3] == [None, None, None]
    refused = results[3]
    assert isinstance(refused, HttpResponse) and refused.status == 429
    assert dict(refused.headers)["Retry-After"] == "1"
    # Plain requests do not spend tokens; other addresses have their own bucket.
    assert limits.on_open(conn, http_request()) is None
    other_client = RecordingConnection(remote_address="198.51.100.2")
    assert limits.on_open(other_client, http_request(upgrade=True)) is None
    now[0] = 0.34  # one token back (3 per second)
    assert limits.on_open(conn, http_request(upgrade=True)) is None
    assert isinstance(limits.on_open(conn, http_request(upgrade=True)), HttpResponse)


def test_handshake_buckets_stay_bounded_under_a_flood() -> None:
    now = [0.0]
    limits = ConnectionLimits(RequestRecorder(), handshake_rate=(1, 60.0), clock=lambda: now[0])
    limits.max_tracked_addresses = 100
    for n in range(1000):
        now[0] += 0.001
        conn = RecordingConnection(remote_address=f"10.0.{n // 256}.{n % 256}")
        limits.on_open(conn, http_request(upgrade=True))
    assert len(limits._buckets) <= 100


async def test_refusals_over_a_real_websocket_client(start_server: Any) -> None:
    blacklist = IpBlackList(
        ConnectionLimits(
            OriginCheck(WsServer(Echo()), ["allowed.test"]),
            max_per_ip=1,
        )
    )
    server, port = await start_server(HttpServer(blacklist))
    url = f"ws://127.0.0.1:{port}/"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, origin="http://evil.test"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    assert b"'http://evil.test' is not allowed" in info.value.response.body
    async with connect(url, origin="http://allowed.test") as ws:  # type: ignore[arg-type]
        await ws.send("hi")
        assert await ws.recv() == "hi"
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 429
        blacklist.block("127.0.0.1")
        with trio.fail_after(5):
            await ws.wait_closed()
        assert ws.close_code == 1008
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    assert info.value.response.status_code == 403
    assert server.stats().handshakes_rejected == 3
