"""PublishEndpoint over real sockets: the standard library's `http.client` publishes, the
`websockets` client speaks raw wamp.2.json (and wamp.2.msgpack) as the subscriber.

Every refusal is followed by a valid publication: the subscriber's next event must be that
one, which shows the refused request delivered nothing (the server handles one request at a
time per connection and writes events in order)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import trio
from websockets.trio.client import ClientConnection, connect

from ratchetpy import App, WsServer
from ratchetpy.components.auth import Authenticate
from ratchetpy.wamp import ReplayGuard, WampServer
from ratchetpy.wamp.publish import PublishEndpoint

SECRET = "test-secret-0123456789abcdef"
OTHER = "another-secret-abcdefghijklmnop"
NOW = 1_700_000_000
TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}

Serve = Callable[..., Awaitable[tuple[int, WampServer]]]


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Serve]:
    """``port, wamp = await serve(**endpoint_options)``: an App with /ws (anonymous), /ws-auth
    (token users) and /publish, on a free port."""

    async def start(*, realms: Any = ("realm1",), **options: Any) -> tuple[int, WampServer]:
        options.setdefault("secret", SECRET)
        options.setdefault("clock", lambda: float(NOW))
        app = App(None, 0, "127.0.0.1")
        wamp = WampServer(realms=realms)
        app.route("/ws", wamp)
        app.route("/ws-auth", Authenticate.tokens(WsServer(wamp), TOKENS))
        app.route("/publish", PublishEndpoint(wamp, **options))
        port: int = await nursery.start(app.serve)
        return port, wamp

    yield start


def signed(body: bytes, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    """Signature headers computed here, independently of ratchetpy's own helpers."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Ratchetpy-Timestamp": str(timestamp),
        "X-Ratchetpy-Signature": "sha256=" + mac.hexdigest(),
    }


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def post(port: int, body: bytes, headers: dict[str, str], *, method: str = "POST") -> Answer:
    def run() -> Answer:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            client.request(method, "/publish", body=body, headers=headers)
            response = client.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            client.close()

    return await trio.to_thread.run_sync(run)


async def publish(port: int, fields: dict[str, Any], **sign_options: Any) -> Answer:
    body = json.dumps(fields).encode()
    return await post(port, body, signed(body, **sign_options))


@dataclass
class Subscriber:
    ws: ClientConnection
    session_id: int
    subscription_id: int
    binary: bool = False

    async def send(self, message: list[Any]) -> None:
        await self.ws.send(msgpack.packb(message) if self.binary else json.dumps(message))

    async def receive(self) -> list[Any]:
        with trio.fail_after(5):
            data = await self.ws.recv()
        message: list[Any] = msgpack.unpackb(data) if self.binary else json.loads(data)
        return message

    async def event(self) -> list[Any]:
        message = await self.receive()
        assert message[0] == 36, message
        assert message[1] == self.subscription_id
        return message


@asynccontextmanager
async def subscriber(
    port: int,
    topic: str = "com.example.news",
    *,
    token: str | None = None,
    serializer: str = "json",
    realm: str = "realm1",
) -> AsyncIterator[Subscriber]:
    path = f"/ws-auth?token={token}" if token else "/ws"
    url = f"ws://127.0.0.1:{port}{path}"
    async with connect(url, subprotocols=[f"wamp.2.{serializer}"]) as ws:  # type: ignore[list-item]
        sub = Subscriber(ws, 0, 0, binary=serializer == "msgpack")
        await sub.send([1, realm, {"roles": {"subscriber": {}}}])
        welcome = await sub.receive()
        assert welcome[0] == 2, welcome
        sub.session_id = welcome[1]
        await sub.send([32, 1, {}, topic])
        subscribed = await sub.receive()
        assert subscribed[:2] == [33, 1], subscribed
        sub.subscription_id = subscribed[2]
        yield sub


async def test_signed_publication_reaches_the_subscriber(serve: Serve) -> None:
    port, _ = await serve()
    async with subscriber(port) as sub:
        fields = {"topic": "com.example.news", "args": ["hi", 2], "kwargs": {"a": [1]}}
        answer = await publish(port, fields)
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"] == "application/json"
        result = answer.json
        assert result["receivers"] == 1
        assert isinstance(result["id"], int) and 1 <= result["id"] <= 2**53
        assert await sub.event() == [
            36,
            sub.subscription_id,
            result["id"],
            {},
            ["hi", 2],
            {"a": [1]},
        ]
        # args and kwargs are optional; a topic nobody subscribes to reaches nobody.
        assert (await publish(port, {"topic": "com.example.news"})).json["receivers"] == 1
        assert (await sub.event())[4:] == []
        assert (await publish(port, {"topic": "com.example.other"})).json["receivers"] == 0


async def test_timestamp_window_edges(serve: Serve) -> None:
    port, _ = await serve(timestamp_window=30)
    for skew in (-30, 30):
        answer = await publish(port, {"topic": "t"}, timestamp=NOW + skew)
        assert answer.status == 200, answer.body
    for skew in (-31, 31):
        answer = await publish(port, {"topic": "t"}, timestamp=NOW + skew)
        assert answer.status == 401 and answer.json["error"] == "stale_timestamp"
        assert "check the sender's clock" in answer.json["reason"]


BAD_OPTIONS: list[tuple[Any, str]] = [
    ("x", "options must be a JSON object"),
    ({"exclude_me": False}, "unknown option 'exclude_me'"),
    ({"exclude": ["1"]}, "option exclude must be a list of session ids"),
    ({"eligible": [True]}, "option eligible must be a list of session ids"),
    ({"eligible": [2**53 + 1]}, "option eligible must be a list of session ids"),
    ({"exclude_authid": [1]}, "option exclude_authid must be a list of strings"),
    ({"eligible_authid": "alice"}, "option eligible_authid must be a list of strings"),
]


def _body_cases() -> list[Any]:
    """(raw body, status, error code, text in the reason), all properly signed."""
    cases: list[Any] = [
        (b"{", 400, "invalid_json", "invalid JSON"),
        (b'{"topic": "t", "args": [NaN]}', 400, "invalid_json", "NaN is not valid JSON"),
        (b'{"topic": "t", "args": [1e999]}', 400, "invalid_json", "too large for a double"),
        # The probe's bytes: a reader taking the first key sees com.evil, json.loads com.pub.
        (
            b'{"topic":"com.evil","topic":"com.pub","args":["dup"]}',
            400,
            "invalid_json",
            "duplicate key 'topic'",
        ),
        (b'{"topic": "t", "kwargs": {"a": 1, "a": 2}}', 400, "invalid_json", "duplicate key 'a'"),
        (b'{"topic": "t", "nonce": 5}', 400, "invalid_nonce", "nonce must be a string"),
        (b'{"topic": "t", "nonce": "%s"}' % (b"n" * 129), 400, "invalid_nonce", "at most 128"),
        (b'{"topic": "\xff"}', 400, "invalid_json", "not UTF-8"),
        (b"[" * 100_000, 413, "too_large", "over 65536 bytes"),
        (b'["com.example.news"]', 400, "invalid_body", "must be a JSON object, not list"),
        (b'{"topic": "t", "kwarg": {}}', 400, "invalid_body", "unknown field 'kwarg'"),
        (b"{}", 400, "invalid_topic", "no topic"),
        (b'{"topic": "com..news"}', 400, "invalid_topic", "'com..news' is not a WAMP URI"),
        (b'{"topic": 42}', 400, "invalid_topic", "42 is not a WAMP URI"),
        (b'{"topic": "com.a b"}', 400, "invalid_topic", "not a WAMP URI"),
        (b'{"topic": "t", "args": {"a": 1}}', 400, "invalid_args", "args must be a JSON array"),
        (b'{"topic": "t", "kwargs": [1]}', 400, "invalid_kwargs", "kwargs must be a JSON object"),
        (b'{"topic": "t", "realm": "nowhere"}', 400, "unknown_realm", "no realm 'nowhere'"),
        (b'{"topic": "t", "realm": ""}', 400, "invalid_realm", "not a WAMP URI"),
    ]
    for options, reason in BAD_OPTIONS:
        body = json.dumps({"topic": "t", "options": options}).encode()
        cases.append((body, 400, "invalid_options", reason))
    return cases


@pytest.mark.parametrize(("body", "status", "error", "reason"), _body_cases())
async def test_bad_bodies_are_refused_and_deliver_nothing(
    serve: Serve, body: bytes, status: int, error: str, reason: str
) -> None:
    port, _ = await serve()
    async with subscriber(port, "t") as sub:
        answer = await post(port, body, signed(body))
        assert answer.status == status, answer.body
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.json["error"] == error
        assert reason in answer.json["reason"]
        marker = await publish(port, {"topic": "t", "args": ["marker"]})
        assert marker.status == 200
        assert (await sub.event())[2:] == [marker.json["id"], {}, ["marker"]]


async def test_a_replayed_request_gets_409_and_is_delivered_once(serve: Serve) -> None:
    # The probe sent the same signed request twice inside the window: delivered twice.
    port, _ = await serve()
    async with subscriber(port, "t") as sub:
        body = json.dumps({"topic": "t", "args": ["once"]}).encode()
        headers = signed(body)
        first = await post(port, body, headers)
        assert first.status == 200, first.body
        again = await post(port, body, headers)
        assert again.status == 409
        assert again.json["error"] == "replayed"
        assert "sign each publication anew" in again.json["reason"]
        # The same body signed at another second, or with a nonce, is another request.
        assert (await post(port, body, signed(body, timestamp=NOW + 1))).status == 200
        with_nonce = await publish(port, {"topic": "t", "args": ["once"], "nonce": "a1"})
        assert with_nonce.status == 200
        marker = await publish(port, {"topic": "t", "args": ["marker"]})
        events = [(await sub.event())[2:] for _ in range(4)]
        assert events == [
            [first.json["id"], {}, ["once"]],
            [events[1][0], {}, ["once"]],
            [with_nonce.json["id"], {}, ["once"]],
            [marker.json["id"], {}, ["marker"]],
        ]


async def test_a_full_replay_guard_refuses_with_503_and_delivers_nothing(serve: Serve) -> None:
    now = [float(NOW)]
    port, _ = await serve(replay_guard=ReplayGuard(max_entries=2), clock=lambda: now[0])
    async with subscriber(port, "t") as sub:
        for n in range(2):
            assert (await publish(port, {"topic": "t", "args": [n]})).status == 200
            assert (await sub.event())[4] == [n]
        refused = await publish(port, {"topic": "t", "args": ["third"]})
        assert refused.status == 503
        assert refused.json["error"] == "busy"
        # The first signature leaves the 300 s window at NOW + 300: room from then on.
        assert refused.headers["Retry-After"] == "300"
        now[0] = NOW + 301.0
        marker = await publish(port, {"topic": "t", "args": ["marker"]}, timestamp=NOW + 301)
        assert marker.status == 200, marker.body
        assert (await sub.event())[2:] == [marker.json["id"], {}, ["marker"]]


def _auth_cases() -> list[Any]:
    """(headers for a good body, error code) of requests that must get 401."""
    body = b'{"topic": "t", "args": ["forged"]}'
    good = signed(body)
    json_type = {"Content-Type": "application/json"}
    wrong_hex = good["X-Ratchetpy-Signature"][:-1] + (
        "0" if good["X-Ratchetpy-Signature"][-1] != "0" else "1"
    )
    return [
        pytest.param(json_type, "missing_signature", id="no credentials"),
        pytest.param(
            {**json_type, "X-Ratchetpy-Timestamp": str(NOW)}, "missing_signature", id="no signature"
        ),
        pytest.param(
            {**json_type, "Authorization": f"Bearer {SECRET}"}, "missing_signature", id="bearer"
        ),
        pytest.param(signed(body, OTHER), "bad_signature", id="other secret"),
        pytest.param(signed(b'{"topic": "t"}'), "bad_signature", id="other body"),
        pytest.param(
            {**good, "X-Ratchetpy-Signature": wrong_hex}, "bad_signature", id="one digit off"
        ),
        pytest.param(
            {**good, "X-Ratchetpy-Signature": "sha1=" + "0" * 40}, "bad_signature", id="sha1"
        ),
        pytest.param(
            {**good, "X-Ratchetpy-Signature": "sha256=caf\u00e9"}, "bad_signature", id="latin-1"
        ),
        pytest.param(
            {**good, "X-Ratchetpy-Timestamp": str(NOW + 1)}, "bad_signature", id="other time"
        ),
        pytest.param(signed(body, timestamp=NOW - 301), "stale_timestamp", id="old"),
        pytest.param(signed(body, timestamp=NOW + 301), "stale_timestamp", id="future"),
        pytest.param({**good, "X-Ratchetpy-Timestamp": "12a"}, "bad_timestamp", id="not a number"),
        pytest.param(
            {**good, "X-Ratchetpy-Timestamp": "\u00b2"}, "bad_timestamp", id="superscript"
        ),
        pytest.param({**good, "X-Ratchetpy-Timestamp": "1" * 40}, "bad_timestamp", id="huge"),
        pytest.param(
            {**good, "X-Ratchetpy-Timestamp": "1700000000.5"}, "bad_timestamp", id="float"
        ),
    ]


@pytest.mark.parametrize(("headers", "error"), _auth_cases())
async def test_bad_credentials_get_401_and_deliver_nothing(
    serve: Serve, headers: dict[str, str], error: str
) -> None:
    port, _ = await serve()
    async with subscriber(port, "t") as sub:
        answer = await post(port, b'{"topic": "t", "args": ["forged"]}', headers)
        assert answer.status == 401, answer.body
        assert answer.json["error"] == error
        if "Authorization" in headers:
            assert "does not accept Authorization: Bearer" in answer.json["reason"]
        assert answer.headers.get_all("WWW-Authenticate") == [
            'Ratchetpy-HMAC-SHA256 realm="ratchetpy-publish"'
        ]
        marker = await publish(port, {"topic": "t", "args": ["marker"]})
        assert (await sub.event())[4] == ["marker"]
        assert marker.status == 200


async def test_credentials_are_checked_before_the_body(serve: Serve) -> None:
    port, _ = await serve()
    # An anonymous client learns nothing about what the endpoint would accept.
    for body, content_type in [(b"{", "application/json"), (b"x", "text/plain")]:
        answer = await post(port, body, {"Content-Type": content_type})
        assert answer.status == 401 and answer.json["error"] == "missing_signature"
    answer = await post(port, b"x" * 70_000, {"Content-Type": "text/plain"})
    assert answer.status == 413  # the size is checked first: it is cheap and says nothing


async def test_wrong_content_type_gets_415(serve: Serve) -> None:
    port, _ = await serve()
    body = b'{"topic": "t"}'
    for content_type in ["text/plain", "application/x-www-form-urlencoded", None]:
        headers = signed(body)
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        answer = await post(port, body, headers)
        assert answer.status == 415 and answer.json["error"] == "unsupported_media_type"
        assert answer.headers["Accept-Post"] == "application/json"
    headers = {**signed(body), "Content-Type": "Application/JSON; charset=utf-8"}
    assert (await post(port, body, headers)).status == 200


async def test_other_methods_get_405(serve: Serve) -> None:
    port, _ = await serve()
    for method in ["GET", "PUT", "DELETE"]:
        answer = await post(port, b"", {}, method=method)
        assert answer.status == 405 and answer.headers["Allow"] == "POST"


async def test_body_size_limit(serve: Serve) -> None:
    port, _ = await serve(max_body_size=1000)
    async with subscriber(port, "t") as sub:
        for size, status in [(1000, 200), (1001, 413)]:
            prefix = b'{"topic": "t", "args": ["'
            body = prefix + b"x" * (size - len(prefix) - 3) + b'"]}'
            assert len(body) == size
            answer = await post(port, body, signed(body))
            assert answer.status == status, answer.body
        event = await sub.event()
        assert len(event[4][0]) == 1000 - len('{"topic": "t", "args": [""]}')
        marker = await publish(port, {"topic": "t", "args": ["marker"]})
        assert marker.status == 200 and (await sub.event())[4] == ["marker"]
    # Past the App's own limit (1 MiB) HttpServer refuses before the endpoint sees it.
    big = b"x" * (2**20 + 1)
    assert (await post(port, big, signed(big))).status == 413


async def test_allowed_topics(serve: Serve) -> None:
    port, _ = await serve(allow_topics=["com.example.news", "com.example.user."])
    async with subscriber(port, "com.example.news") as sub:
        # Also subscribed to the forbidden topics: sub.event() checks that each event it
        # reads belongs to com.example.news, so none of these may arrive.
        for request_id, topic in enumerate(["com.examples", "com.example.newsletter"], 2):
            await sub.send([32, request_id, {}, topic])
            assert (await sub.receive())[:2] == [33, request_id]
        for topic, status in [
            ("com.examples", 403),
            ("com.example.news", 200),
            ("com.example.newsletter", 403),
            ("com.example.news.sport", 200),
            ("com.example.user.42", 200),
            ("com.example.user", 200),
            ("com.example", 403),
        ]:
            answer = await publish(port, {"topic": topic, "args": [topic]})
            assert answer.status == status, (topic, answer.body)
            if status == 403:
                assert answer.json == {
                    "error": "topic_not_allowed",
                    "reason": f"publishing to {topic} over HTTP is not allowed",
                }
            elif topic == "com.example.news":
                assert (await sub.event())[4] == [topic]
        marker = await publish(port, {"topic": "com.example.news", "args": ["marker"]})
        assert marker.status == 200 and (await sub.event())[4] == ["marker"]
    port, _ = await serve(allow_topics=lambda topic: topic.endswith(".public"))
    assert (await publish(port, {"topic": "a.public"})).status == 200
    assert (await publish(port, {"topic": "a.private"})).status == 403


async def test_bearer_and_either_modes(serve: Serve) -> None:
    body = b'{"topic": "t"}'
    json_type = {"Content-Type": "application/json"}
    bearer = {**json_type, "Authorization": f"Bearer {SECRET}"}
    port, _ = await serve(auth="bearer")
    assert (await post(port, body, bearer)).status == 200
    lower = {**json_type, "Authorization": f"bearer   {SECRET}"}
    assert (await post(port, body, lower)).status == 200
    for headers, error in [
        (json_type, "missing_credentials"),
        ({**json_type, "Authorization": f"Bearer {OTHER}"}, "bad_credentials"),
        ({**json_type, "Authorization": f"Bearer {SECRET}x"}, "bad_credentials"),
        ({**json_type, "Authorization": f"Basic {SECRET}"}, "bad_credentials"),
        ({**json_type, "Authorization": "Bearer "}, "bad_credentials"),
        (signed(body), "missing_credentials"),  # a signature is no bearer token
    ]:
        answer = await post(port, body, headers)
        assert answer.status == 401 and answer.json["error"] == error, answer.body
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="ratchetpy-publish"'

    port, _ = await serve(auth="either")
    assert (await post(port, body, bearer)).status == 200
    assert (await post(port, body, signed(body))).status == 200
    answer = await post(port, body, json_type)
    assert answer.status == 401
    assert "or send Authorization: Bearer <secret>" in answer.json["reason"]
    assert answer.headers.get_all("WWW-Authenticate") == [
        'Ratchetpy-HMAC-SHA256 realm="ratchetpy-publish"',
        'Bearer realm="ratchetpy-publish"',
    ]
    # A request that carries a signature is judged by it, whatever else it carries.
    forged = {**signed(body, OTHER), "Authorization": f"Bearer {SECRET}"}
    assert (await post(port, body, forged)).json["error"] == "bad_signature"


async def test_secret_rotation(serve: Serve) -> None:
    third = "third-secret-zyxwvutsrqponmlk"
    port, _ = await serve(secret=[SECRET, OTHER.encode()], auth="either")
    body = b'{"topic": "t"}'
    for secret in (SECRET, OTHER):
        assert (await post(port, body, signed(body, secret))).status == 200
        bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
        assert (await post(port, body, bearer)).status == 200
    assert (await post(port, body, signed(body, third))).status == 401
    bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {third}"}
    assert (await post(port, body, bearer)).status == 401


async def test_eligible_and_exclude_by_user_and_session(serve: Serve) -> None:
    port, _ = await serve()
    async with (
        subscriber(port, "t", token="tok-alice") as alice,
        subscriber(port, "t", token="tok-bob") as bob,
        subscriber(port, "t") as anonymous,
    ):
        everyone = [alice, bob, anonymous]
        cases: list[tuple[dict[str, Any], list[Subscriber]]] = [
            ({"eligible_authid": ["alice"]}, [alice]),
            ({"eligible_authid": ["alice", "bob"], "exclude_authid": ["bob"]}, [alice]),
            ({"exclude_authid": ["alice"]}, [bob, anonymous]),
            ({"eligible_authid": []}, []),
            ({"eligible_authid": ["carol"]}, []),
            ({"exclude": [bob.session_id]}, [alice, anonymous]),
            ({"eligible": [anonymous.session_id, alice.session_id]}, [alice, anonymous]),
            ({"eligible": [anonymous.session_id], "eligible_authid": ["alice"]}, []),
            ({"eligible_authid": None}, everyone),
            ({}, everyone),
        ]
        for i, (options, receivers) in enumerate(cases):
            answer = await publish(port, {"topic": "t", "args": [i], "options": options})
            assert answer.status == 200, answer.body
            assert answer.json["receivers"] == len(receivers), options
            for sub in receivers:
                assert (await sub.event())[4] == [i]
        # Each got exactly what was listed: the next event of each is the final one.
        final = await publish(port, {"topic": "t", "args": ["end"]})
        assert final.json["receivers"] == 3
        for sub in everyone:
            assert (await sub.event())[4] == ["end"]


async def test_realms(serve: Serve) -> None:
    port, wamp = await serve(realms=["realm1", "realm2"], realm="realm2")
    async with (
        subscriber(port, "t", realm="realm1") as one,
        subscriber(port, "t", realm="realm2") as two,
    ):
        answer = await publish(port, {"topic": "t", "args": [2]})  # the endpoint's default
        assert answer.json["receivers"] == 1 and (await two.event())[4] == [2]
        answer = await publish(port, {"topic": "t", "args": [1], "realm": "realm1"})
        assert answer.json["receivers"] == 1 and (await one.event())[4] == [1]

    # A server open to any realm: a realm nobody joined is no error, and is not created.
    port, wamp = await serve(realms=None)
    answer = await publish(port, {"topic": "t", "realm": "com.example.ghost"})
    assert answer.status == 200 and answer.json["receivers"] == 0
    assert "com.example.ghost" not in wamp.realms
    answer = await publish(port, {"topic": "t"})
    assert answer.status == 400 and answer.json["error"] == "invalid_realm"
    async with subscriber(port, "t", realm="com.example.lobby") as lobby:
        answer = await publish(port, {"topic": "t", "realm": "com.example.lobby"})
        assert answer.json["receivers"] == 1 and (await lobby.event())[4:] == []


async def test_undeliverable_payload_reaches_nobody(serve: Serve) -> None:
    port, _ = await serve()
    async with subscriber(port, "t") as text, subscriber(port, "t", serializer="msgpack") as binary:
        # JSON carries 2**70; msgpack cannot: neither subscriber gets it.
        answer = await publish(port, {"topic": "t", "args": [2**70]})
        assert answer.status == 400 and answer.json["error"] == "undeliverable"
        again = await publish(port, {"topic": "t", "args": [2**70]})
        assert again.json["error"] == "undeliverable"  # not "replayed": it was not accepted
        # A lone surrogate cannot be sent as UTF-8 to JSON subscribers.
        answer = await post(
            port,
            b'{"topic": "t", "args": ["\\ud800"]}',
            signed(b'{"topic": "t", "args": ["\\ud800"]}'),
        )
        assert answer.status == 400 and answer.json["error"] == "undeliverable"
        marker = await publish(port, {"topic": "t", "args": ["marker"]})
        assert marker.json["receivers"] == 2
        assert (await text.event())[4] == ["marker"]
        assert (await binary.event())[4] == ["marker"]


async def test_refusals_are_logged_without_secrets_or_bodies(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratchetpy")
    port, _ = await serve()
    body = b'{"topic": "com.private.payload", "args": ["confidential-words"]}'
    assert (await post(port, body, signed(body, OTHER))).status == 401
    assert (await post(port, body, {**signed(body), "Content-Type": "text/plain"})).status == 415
    bad = b'{"topic": "t", "args": "confidential-words"}'
    assert (await post(port, bad, signed(bad))).status == 400
    records = [r for r in caplog.records if r.name == "ratchetpy.wamp"]
    messages = [r.getMessage() for r in records]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert "HTTP publish refused with 401 to 127.0.0.1: bad_signature" in messages
    assert "HTTP publish refused with 415 to 127.0.0.1: unsupported_media_type" in messages
    assert "HTTP publish refused with 400 to 127.0.0.1: invalid_args" in messages
    for text in (SECRET, OTHER, "confidential", "com.private"):
        assert text not in caplog.text


async def test_insecure_endpoint_must_be_asked_for(serve: Serve) -> None:
    wamp = WampServer()
    with pytest.raises(ValueError, match="needs a secret"):
        PublishEndpoint(wamp, secret=None)
    with pytest.raises(ValueError, match="needs a secret"):
        PublishEndpoint(wamp, secret=[])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PublishEndpoint(wamp, secret="short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PublishEndpoint(wamp, secret=[SECRET, ""])
    with pytest.raises(TypeError, match="str or bytes"):
        PublishEndpoint(wamp, secret=[SECRET, 42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="contradicts"):
        PublishEndpoint(wamp, secret=SECRET, insecure_no_auth=True)
    with pytest.raises(ValueError, match="auth must be"):
        PublishEndpoint(wamp, secret=SECRET, auth="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="realm must be"):
        PublishEndpoint(wamp, secret=SECRET, realm="bad realm")
    port, _ = await serve(secret=None, insecure_no_auth=True)
    answer = await post(port, b'{"topic": "t"}', {"Content-Type": "application/json"})
    assert answer.status == 200 and answer.json["receivers"] == 0
