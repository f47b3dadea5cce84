"""Authenticate and bearer_token: the hook's decisions without sockets, then refusals and
accepted users as a real WebSocket client sees them."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from ratchetpy import (
    Connection,
    HttpComponent,
    HttpRequest,
    HttpResponse,
    HttpServer,
    MessageComponent,
    RatchetError,
    Router,
    WsServer,
)
from ratchetpy.components.auth import Authenticate, AuthenticationFailed, bearer_token
from ratchetpy.testing import RecordingConnection, http_request
from support.components import RequestRecorder


def body(response: object) -> bytes:
    assert isinstance(response, HttpResponse) and isinstance(response.body, bytes)
    return response.body


def authorization(value: str) -> list[tuple[str, str]]:
    return [("Authorization", value)]


# -- bearer_token ------------------------------------------------------------------------------


def test_token_from_header_query_or_cookie() -> None:
    assert bearer_token(http_request(headers=authorization("Bearer abc"))) == "abc"
    assert bearer_token(http_request(headers=authorization("bearer   abc  "))) == "abc"
    assert bearer_token(http_request("/chat?token=q1&room=2")) == "q1"
    assert bearer_token(http_request("/chat?t=q1"), query="t") == "q1"
    assert bearer_token(http_request(cookies={"auth": "c1"}), cookie="auth") == "c1"
    # The header wins over the query, the query over the cookie.
    both = http_request(
        "/chat?token=q1", headers=authorization("Bearer h1"), cookies={"auth": "c1"}
    )
    assert bearer_token(both, cookie="auth") == "h1"
    assert bearer_token(both, header=False, cookie="auth") == "q1"
    assert bearer_token(both, header=False, query=None, cookie="auth") == "c1"


def test_no_token() -> None:
    assert bearer_token(http_request()) is None
    assert bearer_token(http_request(headers=authorization("Basic dXNlcjpwdw=="))) is None
    assert bearer_token(http_request(headers=authorization("Bearer"))) is None
    assert bearer_token(http_request("/chat?token=")) is None
    assert bearer_token(http_request("/chat?token=q1"), query=None) is None
    assert bearer_token(http_request(cookies={"auth": "c1"})) is None  # cookies only when named


# -- Authenticate, without sockets -------------------------------------------------------------

# A documentation address, so that the log lines below visibly name the connection's peer.
CLIENT = "198.51.100.7"


def test_accepted_requests_carry_the_user_id() -> None:
    inner = RequestRecorder()
    guard = Authenticate(inner, lambda req: "alice")
    req = http_request("/chat")
    conn = RecordingConnection(request=req)
    assert conn.user_id is None
    assert guard.on_open(conn, req) is None
    assert inner.seen == [req] and inner.seen[0] is req  # the same object: every layer sees it
    assert req.user_id == "alice" and conn.user_id == "alice"
    with pytest.raises(AttributeError):
        conn.user_id = "mallory"  # type: ignore[misc]


def test_refusals(caplog: pytest.LogCaptureFixture) -> None:
    def check(req: HttpRequest) -> str | None:
        if req.query_params.get("banned"):
            raise AuthenticationFailed("account suspended", status=403)
        if req.query_params.get("expired"):
            raise AuthenticationFailed("token expired")
        return None

    inner = RequestRecorder()
    guard = Authenticate(inner, check)
    caplog.set_level(logging.INFO, "ratchetpy.security")

    refused = guard.on_open(RecordingConnection(remote_address=CLIENT), http_request("/chat"))
    assert isinstance(refused, HttpResponse) and refused.status == 401
    assert refused.body == b"401 Unauthorized: authentication required\n"
    assert ("WWW-Authenticate", 'Bearer realm="ratchetpy"') in refused.headers

    expired = http_request("/chat?expired=1")
    refused = guard.on_open(RecordingConnection(remote_address=CLIENT), expired)
    assert isinstance(refused, HttpResponse) and refused.status == 401
    assert b"token expired" in body(refused)

    banned = http_request("/chat?banned=1")
    refused = guard.on_open(RecordingConnection(remote_address=CLIENT), banned)
    assert isinstance(refused, HttpResponse) and refused.status == 403
    assert refused.body == b"403 Forbidden: account suspended\n"
    assert all(name != "WWW-Authenticate" for name, _ in refused.headers)

    assert inner.seen == []
    assert [record.getMessage() for record in caplog.records] == [
        "HTTP 401 to 198.51.100.7: GET /chat: authentication required",
        "HTTP 401 to 198.51.100.7: GET /chat: token expired",
        "HTTP 403 to 198.51.100.7: GET /chat: account suspended",
    ]


def test_challenge_is_configurable() -> None:
    guard = Authenticate(RequestRecorder(), lambda req: None, challenge='Cookie realm="chat"')
    refused = guard.on_open(RecordingConnection(), http_request("/chat"))
    assert isinstance(refused, HttpResponse)
    assert ("WWW-Authenticate", 'Cookie realm="chat"') in refused.headers


def test_only_401_and_403() -> None:
    assert issubclass(AuthenticationFailed, RatchetError)
    assert AuthenticationFailed().status == 401
    with pytest.raises(ValueError, match="401 or 403"):
        AuthenticationFailed("teapot", status=418)


@pytest.mark.parametrize("result", [42, "", b"alice", True])
def test_a_check_that_returns_nonsense_is_a_server_error(
    result: Any, caplog: pytest.LogCaptureFixture
) -> None:
    inner = RequestRecorder()
    guard = Authenticate(inner, lambda req: result)
    answer = guard.on_open(RecordingConnection(), http_request("/chat"))
    assert isinstance(answer, HttpResponse) and answer.status == 500
    assert inner.seen == []
    assert "return a non-empty str" in str(caplog.records[-1].exc_info[1])  # type: ignore[index]


def test_a_check_that_raises_leaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    def check(req: HttpRequest) -> str:
        raise RuntimeError("db password 'hunter2' rejected by 10.0.0.5")

    answer = Authenticate(RequestRecorder(), check).on_open(
        RecordingConnection(), http_request("/chat")
    )
    assert isinstance(answer, HttpResponse) and answer.status == 500
    assert answer.body == b"500 Internal Server Error: the authentication check failed\n"
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR and record.name == "ratchetpy.security"
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_async_checks() -> None:
    async def check(req: HttpRequest) -> str | None:
        await trio.sleep(0)
        token = bearer_token(req)
        if token == "bad":
            raise AuthenticationFailed("revoked", status=403)
        if token == "boom":
            raise LookupError("user service down")
        return "bob" if token == "good" else None

    class AsyncInner(HttpComponent):
        async def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
            await trio.sleep(0)
            return HttpResponse(200, f"hello {request.user_id}")

    guard = Authenticate(AsyncInner(), check)
    statuses = {}
    for token in ("good", "bad", "boom", "none"):
        answer = await guard.on_open(  # type: ignore[misc]
            RecordingConnection(), http_request(f"/?token={token}")
        )
        assert isinstance(answer, HttpResponse)
        statuses[token] = (answer.status, answer.body)
    assert statuses == {
        "good": (200, b"hello bob"),
        "bad": (403, b"403 Forbidden: revoked\n"),
        "boom": (500, b"500 Internal Server Error: the authentication check failed\n"),
        "none": (401, b"401 Unauthorized: authentication required\n"),
    }
    # A plain check in front of a sync component stays sync (no awaitable to drive).
    plain = Authenticate(RequestRecorder(), lambda req: "x")
    assert plain.on_open(RecordingConnection(), http_request("/chat")) is None


async def test_tokens_shortcut() -> None:
    inner = RequestRecorder()
    guard = Authenticate.tokens(inner, {"s3cret": "alice"}, cookie="auth")
    assert guard.on_open(RecordingConnection(), http_request("/?token=s3cret")) is None
    assert guard.on_open(RecordingConnection(), http_request(cookies={"auth": "s3cret"})) is None
    assert [req.user_id for req in inner.seen] == ["alice", "alice"]
    missing = guard.on_open(RecordingConnection(), http_request("/chat"))
    assert isinstance(missing, HttpResponse) and missing.status == 401
    assert body(missing) == (
        b"401 Unauthorized: no token (send it as Authorization: Bearer or ?token= "
        b"or cookie 'auth')\n"
    )
    wrong = guard.on_open(RecordingConnection(), http_request("/?token=guess"))
    assert isinstance(wrong, HttpResponse) and b"invalid token" in body(wrong)

    async def lookup(token: str) -> str | None:
        await trio.sleep(0)
        return {"t1": "carol"}.get(token)

    guard = Authenticate.tokens(inner, lookup, header=False, query="key")
    accepted = guard.on_open(RecordingConnection(), http_request("/?key=t1"))
    assert await accepted is None  # type: ignore[misc]
    assert inner.seen[-1].user_id == "carol"
    wrong = await guard.on_open(RecordingConnection(), http_request("/?key=t2"))  # type: ignore[misc]
    assert isinstance(wrong, HttpResponse) and b"invalid token" in body(wrong)
    missing = guard.on_open(RecordingConnection(), http_request("/"))  # refused before any lookup
    assert isinstance(missing, HttpResponse)
    assert b"no token (send it as ?key=)" in body(missing)


def test_user_id_survives_the_router_copy() -> None:
    # Authenticate in front of a Router: the router copies the request to add path_params.
    inner = RequestRecorder()
    router = Router()
    router.add("/rooms/{room}", inner)
    guard = Authenticate(router, lambda req: "alice")
    conn = RecordingConnection()
    guard.on_open(conn, http_request("/rooms/lobby"))
    (seen,) = inner.seen
    assert seen.path_params == {"room": "lobby"} and seen.user_id == "alice"
    assert conn.user_id == "alice"


# -- over real sockets -------------------------------------------------------------------------


class WhoAmI(MessageComponent):
    def on_open(self, conn: Connection) -> None:
        conn.send(f"{conn.user_id}")

    def on_message(self, conn: Connection, msg: Any) -> None:
        conn.send(f"{conn.user_id}: {msg}")


TOKENS = {"t-alice": "alice", "t-bob": "bob"}


def check(req: HttpRequest) -> str | None:
    token = bearer_token(req, cookie="auth")
    if token == "t-banned":
        raise AuthenticationFailed("this account is suspended", status=403)
    if token == "t-crash":
        raise RuntimeError("secret internals")
    return TOKENS.get(token or "")


async def test_handshakes_over_a_real_client(start_server: Any) -> None:
    server, port = await start_server(HttpServer(Authenticate(WsServer(WhoAmI()), check)))
    url = f"ws://127.0.0.1:{port}/chat"

    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ratchetpy"'
    assert response.body == b"401 Unauthorized: authentication required\n"

    with pytest.raises(InvalidStatus) as info:
        async with connect(url + "?token=t-banned"):
            pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"403 Forbidden: this account is suspended\n"
    assert "WWW-Authenticate" not in info.value.response.headers

    async with connect(url + "?token=t-alice") as ws:
        assert await ws.recv() == "alice"
        await ws.send("hi")
        assert await ws.recv() == "alice: hi"
    async with connect(url, additional_headers={"Authorization": "Bearer t-bob"}) as ws:
        assert await ws.recv() == "bob"
    async with connect(url, additional_headers={"Cookie": "theme=dark; auth=t-alice"}) as ws:
        assert await ws.recv() == "alice"

    with pytest.raises(InvalidStatus) as info:
        async with connect(url + "?token=t-crash"):
            pass
    assert info.value.response.status_code == 500
    assert b"secret internals" not in info.value.response.body
    # ... and the server goes on serving.
    async with connect(url + "?token=t-bob") as ws:
        assert await ws.recv() == "bob"
    assert server.stats().handshakes_rejected == 3


async def test_async_check_over_a_real_client(start_server: Any) -> None:
    async def slow_check(req: HttpRequest) -> str | None:
        await trio.sleep(0.01)  # a database round trip
        return check(req)

    _, port = await start_server(HttpServer(Authenticate(WsServer(WhoAmI()), slow_check)))
    url = f"ws://127.0.0.1:{port}/"
    async with connect(url + "?token=t-alice") as ws:
        assert await ws.recv() == "alice"
    for token, status in (("nope", 401), ("t-banned", 403), ("t-crash", 500)):
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{url}?token={token}"):
                pass
        assert info.value.response.status_code == status
    async with connect(url, additional_headers={"Authorization": "Bearer t-bob"}) as ws:
        assert await ws.recv() == "bob"
