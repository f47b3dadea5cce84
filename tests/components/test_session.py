"""SessionProvider and FlaskSession: cookies signed by a real Flask app decoded without
sockets, every way a cookie can be bad, then the session as a WebSocket component sees it."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from flask import Flask, session
from itsdangerous import URLSafeTimedSerializer
from markupsafe import Markup
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from ratchetpy import (
    App,
    Connection,
    HttpRequest,
    HttpResponse,
    HttpServer,
    MessageComponent,
    WsServer,
)
from ratchetpy.components.auth import Authenticate
from ratchetpy.components.session import FlaskSession, InvalidSession, SessionProvider
from ratchetpy.testing import RecordingConnection, http_request
from support.components import RequestRecorder

SECRET = "a secret the web app and the WebSocket server share"


def flask_app(secret: str = SECRET, **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = secret
    app.config.update(config)
    return app


def flask_cookie(values: Mapping[str, Any], app: Flask | None = None) -> str:
    """The session cookie a real Flask app sets after storing ``values`` in its session."""
    app = app or flask_app()

    @app.route("/login")
    def login() -> str:
        session.update(values)
        return "ok"

    response = app.test_client().get("/login")
    set_cookie = response.headers["Set-Cookie"]
    name, _, rest = set_cookie.partition("=")
    assert name == app.config["SESSION_COOKIE_NAME"]
    return rest.split(";", 1)[0]


# Browsers send the web app's other cookies along: the reader must pick the session's.
THEME = {"theme": "dark"}


# -- FlaskSession, without sockets ------------------------------------------------------------


def test_decodes_every_type_flask_tags() -> None:
    when = datetime(2026, 1, 12, 10, 0, 5, tzinfo=UTC)
    ident = uuid.uuid4()
    values = {
        "user_id": "alice",
        "count": 3,
        "ratio": 0.5,
        "flags": [True, False, None],
        "pair": (1, "two"),
        "nested_tuples": ((1, 2), [3, (4,)]),
        "blob": b"\x00\xffraw",
        "when": when,
        "naive_when": datetime(2025, 5, 1, 8, 30),
        "ident": ident,
        "html": Markup("<b>hi</b>"),
        "prefs": {"theme": "dark", "langs": ["en", "fr"], "deep": {"x": {"y": (1,)}}},
        " t": "a key that looks like a tag",
        "escaped": {" t": [1, 2]},  # a one-key dict whose key is a tag: Flask escapes it
        "unicode": "héllo ☃",
    }
    decoded = FlaskSession(SECRET)(http_request(cookies={**THEME, "session": flask_cookie(values)}))
    assert decoded is not None
    assert decoded["user_id"] == "alice"
    assert decoded["count"] == 3 and decoded["ratio"] == 0.5
    assert decoded["flags"] == [True, False, None]
    assert decoded["pair"] == (1, "two") and isinstance(decoded["pair"], tuple)
    assert decoded["nested_tuples"] == ((1, 2), [3, (4,)])
    assert decoded["blob"] == b"\x00\xffraw"
    assert decoded["when"] == when and decoded["when"].tzinfo is not None
    assert decoded["naive_when"] == datetime(2025, 5, 1, 8, 30, tzinfo=UTC)
    assert decoded["ident"] == ident
    assert decoded["html"] == "<b>hi</b>" and type(decoded["html"]) is str
    assert decoded["prefs"] == {"theme": "dark", "langs": ["en", "fr"], "deep": {"x": {"y": (1,)}}}
    assert decoded[" t"] == "a key that looks like a tag"
    assert decoded["escaped"] == {" t": [1, 2]}
    assert decoded["unicode"] == "héllo ☃"


def test_compressed_cookies() -> None:
    cookie = flask_cookie({"text": "compress me " * 100})
    assert cookie.startswith(".")  # Flask compressed it: zlib made it smaller
    assert FlaskSession(SECRET).loads(cookie) == {"text": "compress me " * 100}


def test_what_flask_itself_accepts_we_accept() -> None:
    # A cookie from Flask's own serializer, read back by Flask and by us.
    app = flask_app()
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookie = serializer.dumps({"user_id": 42})
    assert serializer.loads(cookie) == {"user_id": 42}
    assert FlaskSession(SECRET).loads(cookie) == {"user_id": 42}


def test_no_cookie_is_no_session() -> None:
    reader = FlaskSession(SECRET)
    assert reader(http_request()) is None
    assert reader(http_request(cookies={**THEME, "session": ""})) is None
    assert reader(http_request(cookies={**THEME, "other": flask_cookie({"a": 1})})) is None


def test_cookie_name_and_salt_follow_flask_settings() -> None:
    cookie = flask_cookie({"a": 1}, flask_app(SESSION_COOKIE_NAME="sid"))
    as_sid = http_request(cookies={**THEME, "sid": cookie})
    assert FlaskSession(SECRET, cookie_name="sid")(as_sid) == {"a": 1}
    assert FlaskSession(SECRET)(as_sid) is None
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession(SECRET, salt="another-salt").loads(cookie)
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession(SECRET.encode() + b"!").loads(cookie)
    assert FlaskSession(SECRET.encode()).loads(cookie) == {"a": 1}  # bytes keys work too


def test_wrong_key_and_forgeries_are_refused() -> None:
    cookie = flask_cookie({"user_id": "alice"})
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession("another key").loads(cookie)
    payload, stamp, signature = cookie.split(".")
    # Someone else's session data under alice's signature:
    forged = flask_cookie({"user_id": "mallory"}, flask_app("mallory's own key"))
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession(SECRET).loads(f"{forged.split('.')[0]}.{stamp}.{signature}")
    # An older timestamp under the same signature:
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession(SECRET).loads(f"{payload}.AAAAAA.{signature}")
    # A flipped signature character:
    # (the first one: the last base64 character of a 20-byte digest carries two padding
    # bits, so flipping between "A" and "B" there can leave the decoded signature unchanged)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession(SECRET).loads(f"{payload}.{stamp}.{flipped}")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("garbage", "not a signed session cookie"),
        ("a.b", "not a signed session cookie"),
        ("..", "not a signed session cookie"),
        ("eyJhIjoxfQ.ZZZZ.", "not a signed session cookie"),
        ("eyJhIjoxfQ.ZZZZ.a", "not base64"),
        ("eyJhIjoxfQ.ZZZZ.ab+/", "bad signature"),
        ("ünïcode.ZZZZ.abcd", "not ASCII"),
        ("x" * 5000, "over 4096 characters"),
    ],
)
def test_garbage_is_refused(value: str, why: str) -> None:
    with pytest.raises(InvalidSession, match=why):
        FlaskSession(SECRET).loads(value)


@pytest.mark.filterwarnings("ignore:The 'session' cookie is too large")
def test_oversized_cookie_is_refused_unread() -> None:
    big = flask_cookie({"noise": os.urandom(3500).hex()})  # incompressible
    assert len(big) > 4096
    with pytest.raises(InvalidSession, match="over 4096 characters"):
        FlaskSession(SECRET).loads(big)


def test_decompression_is_bounded() -> None:
    # Properly signed, tiny on the wire, megabytes once inflated: refused before inflating it all.
    app = flask_app()
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    bomb = serializer.dumps({"a": "A" * 2_000_000})
    assert bomb.startswith(".") and len(bomb) < 4096
    with pytest.raises(InvalidSession, match="over 65536 bytes"):
        FlaskSession(SECRET).loads(bomb)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([1, 2], "is a list, not a dict"),
        ({" u": "not a uuid"}, "does not decode"),
        ({" b": "not base64!"}, "does not decode"),
        ({" t": 5}, "does not decode"),
        ({" di": []}, "does not decode"),
    ],
)
def test_signed_but_undecodable_data_is_refused(data: Any, why: str) -> None:
    # Signed as Flask signs, but with plain JSON: the tags are not what Flask would write.
    signer = URLSafeTimedSerializer(
        SECRET,
        salt="cookie-session",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    with pytest.raises(InvalidSession, match=why):
        FlaskSession(SECRET).loads(signer.dumps(data))


def test_a_date_flask_cannot_parse_reads_as_none() -> None:
    signer = URLSafeTimedSerializer(
        SECRET,
        salt="cookie-session",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    cookie = signer.dumps({"when": {" d": "not a date"}})
    assert FlaskSession(SECRET).loads(cookie) == {"when": None}  # as Flask reads it
    # Found by fuzzing (fuzz/corpus/flask_session/crash-date-too-large): seconds too large
    # for a C long made the standard library raise OverflowError out of loads().
    cookie = signer.dumps({"when": {" d": "Mon, 12 Jan 2026 10:00:" + "3" * 120 + " GMT"}})
    assert FlaskSession(SECRET).loads(cookie) == {"when": None}


def test_expiry_follows_max_age() -> None:
    cookie = flask_cookie({"a": 1})
    later = time.time() + timedelta(days=32).total_seconds()
    with pytest.raises(InvalidSession, match="expired"):
        FlaskSession(SECRET, clock=lambda: later).loads(cookie)
    assert FlaskSession(SECRET, clock=lambda: later, max_age=None).loads(cookie) == {"a": 1}
    assert FlaskSession(SECRET, clock=lambda: later, max_age=timedelta(days=40)).loads(cookie)
    with pytest.raises(InvalidSession, match="expired"):
        FlaskSession(SECRET, clock=lambda: time.time() + 11, max_age=10).loads(cookie)
    # The web app's clock may be a little ahead of ours, not an hour.
    assert FlaskSession(SECRET, clock=lambda: time.time() - 30).loads(cookie) == {"a": 1}
    with pytest.raises(InvalidSession, match="in the future"):
        FlaskSession(SECRET, clock=lambda: time.time() - 3600).loads(cookie)


def test_fallback_keys_while_rotating() -> None:
    old = flask_cookie({"user_id": "alice"}, flask_app("old key"))
    reader = FlaskSession("new key", secret_key_fallbacks=["older key", "old key"])
    assert reader.loads(old) == {"user_id": "alice"}
    with pytest.raises(InvalidSession, match="bad signature"):
        FlaskSession("new key").loads(old)
    # Flask itself, mid-rotation, signs with the new key, which we read too.
    rotating = flask_app("new key", SECRET_KEY_FALLBACKS=["old key"])
    assert reader.loads(flask_cookie({"user_id": "bob"}, rotating)) == {"user_id": "bob"}


def test_reader_never_shows_its_key() -> None:
    assert SECRET not in repr(FlaskSession(SECRET))
    with pytest.raises(ValueError, match="SECRET_KEY"):
        FlaskSession("")


# -- SessionProvider, without sockets ---------------------------------------------------------


# A documentation address, so that the log lines below visibly name the connection's peer.
CLIENT = "198.51.100.7"


def test_provider_attaches_a_read_only_session() -> None:
    inner = RequestRecorder(HttpResponse(200, "ok"))
    provider = SessionProvider(inner, FlaskSession(SECRET))
    request = http_request(cookies={**THEME, "session": flask_cookie({"user_id": "alice"})})
    conn = RecordingConnection(request=request)
    assert isinstance(provider.on_open(conn, request), HttpResponse)
    assert inner.seen == [request] and inner.seen[0] is request  # the same object, not a copy
    assert request.session == {"user_id": "alice"}
    assert conn.session == {"user_id": "alice"}
    with pytest.raises(TypeError):
        request.session["user_id"] = "mallory"  # type: ignore[index]
    assert "alice" not in repr(request)  # sessions stay out of log lines


def test_provider_never_refuses(caplog: pytest.LogCaptureFixture) -> None:
    inner = RequestRecorder(HttpResponse(200, "ok"))
    provider = SessionProvider(inner, FlaskSession(SECRET))
    caplog.set_level(logging.INFO, "ratchetpy.security")
    for value in (None, "garbage", flask_cookie({"a": 1}, flask_app("wrong key"))):
        request = http_request(cookies=None if value is None else {**THEME, "session": value})
        conn = RecordingConnection(remote_address=CLIENT)
        assert isinstance(provider.on_open(conn, request), HttpResponse)
        assert request.session == {}
    assert len(inner.seen) == 3
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "session of 198.51.100.7 ignored: GET /: not a signed session cookie "
        "(payload.timestamp.signature)",
        "session of 198.51.100.7 ignored: GET /: bad signature (forged, or signed with another "
        "secret key)",
    ]
    assert all(record.levelno == logging.INFO for record in caplog.records)


def test_a_broken_reader_means_no_session(caplog: pytest.LogCaptureFixture) -> None:
    def down(request: HttpRequest) -> Mapping[str, Any]:
        raise ConnectionError("session store unreachable")

    def wrong(request: HttpRequest) -> Any:
        return ["not", "a", "mapping"]

    for reader in (down, wrong):
        inner = RequestRecorder(HttpResponse(200, "ok"))
        request = http_request(cookies={**THEME, "session": "x"})
        answer = SessionProvider(inner, reader).on_open(RecordingConnection(), request)
        assert isinstance(answer, HttpResponse)
        assert request.session == {} and inner.seen == [request]
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].exc_info is not None and "going on without a session" in errors[0].message
    assert "returned list, not a mapping" in errors[1].message


async def test_async_readers() -> None:
    async def from_store(request: HttpRequest) -> Mapping[str, Any] | None:
        await trio.sleep(0)
        sid = request.cookies.get("sid")
        return {"user_id": "alice"} if sid == "s1" else None

    async def failing(request: HttpRequest) -> Mapping[str, Any] | None:
        await trio.sleep(0)
        raise InvalidSession("unknown session id")

    inner = RequestRecorder(HttpResponse(200, "ok"))
    provider = SessionProvider(inner, from_store)
    request = http_request(cookies={**THEME, "sid": "s1"})
    result = provider.on_open(RecordingConnection(), request)
    assert isinstance(await result, HttpResponse)  # type: ignore[misc]
    assert request.session == {"user_id": "alice"}
    request = http_request()
    answer = provider.on_open(RecordingConnection(), request)
    assert isinstance(await answer, HttpResponse)  # type: ignore[misc]
    assert request.session == {}
    request = http_request(cookies={**THEME, "sid": "s2"})
    answer = SessionProvider(inner, failing).on_open(RecordingConnection(), request)
    assert isinstance(await answer, HttpResponse)  # type: ignore[misc]
    assert request.session == {}


def test_connections_without_a_request_have_no_session() -> None:
    conn = RecordingConnection()
    assert conn.session == {} and conn.user_id is None
    with pytest.raises(AttributeError):
        conn.session = {}  # type: ignore[misc]


# -- over real sockets ------------------------------------------------------------------------


class Greeter(MessageComponent):
    """Says who the session and the authentication hook say the client is."""

    def on_open(self, conn: Connection) -> None:
        conn.send(f"{conn.user_id}|{conn.session.get('name')}|{sorted(conn.session)}")


def session_user(request: HttpRequest) -> str | None:
    user_id = request.session.get("user_id")
    return None if user_id is None else str(user_id)


async def test_flask_login_opens_the_websocket(start_server: Any) -> None:
    stack = SessionProvider(Authenticate(WsServer(Greeter()), session_user), FlaskSession(SECRET))
    server, port = await start_server(HttpServer(stack))
    url = f"ws://127.0.0.1:{port}/chat"
    cookie = flask_cookie({"user_id": 7, "name": "Alice", "roles": ("admin",)})
    async with connect(url, additional_headers={"Cookie": f"session={cookie}"}) as ws:
        assert await ws.recv() == "7|Alice|['name', 'roles', 'user_id']"
    # A logged-out browser (no cookie), and a forged cookie: no session, so the hook refuses.
    forged = flask_cookie({"user_id": 1}, flask_app("guessed key"))
    for headers in ({}, {"Cookie": f"session={forged}"}):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
    assert server.stats().handshakes_rejected == 2


async def test_session_without_authentication(start_server: Any) -> None:
    _, port = await start_server(
        HttpServer(SessionProvider(WsServer(Greeter()), FlaskSession(SECRET)))
    )
    url = f"ws://127.0.0.1:{port}/"
    async with connect(url) as ws:
        assert await ws.recv() == "None|None|[]"
    cookie = flask_cookie({"name": "Guest"})
    async with connect(url, additional_headers={"Cookie": f"session={cookie}"}) as ws:
        assert await ws.recv() == "None|Guest|['name']"


async def test_through_app_routes(nursery: trio.Nursery) -> None:
    app = App("localhost", 0, "127.0.0.1")
    app.route(
        "/ws",
        SessionProvider(Authenticate(WsServer(Greeter()), session_user), FlaskSession(SECRET)),
    )
    app.route("/rooms/{room}", SessionProvider(WsServer(Greeter()), FlaskSession(SECRET)))
    port = await nursery.start(app.serve)
    cookie = flask_cookie({"user_id": "alice", "name": "Alice"})
    headers = {"Cookie": f"session={cookie}"}
    async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=headers) as ws:
        assert await ws.recv() == "alice|Alice|['name', 'user_id']"
    async with connect(f"ws://127.0.0.1:{port}/rooms/a", additional_headers=headers) as ws:
        assert await ws.recv() == "None|Alice|['name', 'user_id']"
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{port}/ws"):
            pass
    assert info.value.response.status_code == 401
