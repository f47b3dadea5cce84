"""Fuzz targets: each takes bytes from the network (or a header) and feeds one parser.

A target returns normally for any input the parser handles as documented: events, or the
exception the parser documents for bad input (which the caller turns into a close code, an
ERROR or an HTTP status). Anything else (another exception, a hang, an event sequence that
breaks the parser's own rules) is a bug. ``fuzz/run.py`` runs them under atheris;
``tests/test_fuzz_regressions.py`` replays every kept input in ``fuzz/corpus/<target>/``.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import zlib
from collections.abc import Callable

from itsdangerous import TimestampSigner

from ratchetpy import HttpComponent, HttpResponse, Router
from ratchetpy.broker import MemoryBroker, serving_broker
from ratchetpy.components.session import FlaskSession
from ratchetpy.exceptions import InvalidSession, RedisProtocolError, RemoteProtocolError
from ratchetpy.protocol.deflate import DeflateParameters
from ratchetpy.protocol.events import ProtocolFailure
from ratchetpy.protocol.forwarded import TrustedProxies
from ratchetpy.protocol.http import Headers
from ratchetpy.protocol.resp import RespReader
from ratchetpy.protocol.websocket import WebSocketProtocol
from ratchetpy.testing import RecordingConnection, http_request
from ratchetpy.wamp import WampServer
from ratchetpy.wamp.messages import parse
from ratchetpy.wamp.publish import PublishEndpoint
from ratchetpy.wamp.serializers import JsonSerializer, MsgpackSerializer

__all__ = ["TARGETS"]

_LIMIT = 64 * 1024


def _chunks(data: bytes) -> list[bytes]:
    """Split ``data`` where its first byte says, so that reads of every size are tried."""
    if not data:
        return [b""]
    size = data[0] % 64 + 1
    rest = data[1:]
    return [rest[i : i + size] for i in range(0, len(rest), size)] or [b""]


def _websocket(data: bytes, deflate: DeflateParameters | None) -> None:
    protocol = WebSocketProtocol(max_message_size=_LIMIT, deflate=deflate)
    total = 0
    for chunk in _chunks(data):
        events = protocol.receive_data(chunk)
        for n, event in enumerate(events):
            # A failure is always the last event, and reading stops with it.
            assert not isinstance(event, ProtocolFailure) or n == len(events) - 1
            payload = getattr(event, "data", None)
            if isinstance(payload, (bytes, str)):
                total += len(payload)
        assert total <= len(data) * 1100 + _LIMIT  # inflation stays bounded


def websocket(data: bytes) -> None:
    """Client frames, no extension."""
    _websocket(data, None)


def websocket_deflate(data: bytes) -> None:
    """Client frames with permessage-deflate negotiated (context takeover both ways)."""
    agreed = DeflateParameters(
        server_no_context_takeover=False,
        client_no_context_takeover=False,
        server_max_window_bits=15,
        client_max_window_bits=15,
    )
    _websocket(data, agreed)


def _wamp(data: bytes | str, serializer: JsonSerializer | MsgpackSerializer) -> None:
    try:
        message = serializer.decode(data)
    except RemoteProtocolError:
        return
    try:
        parse(message)
    except RemoteProtocolError:
        return


def wamp_json(data: bytes) -> None:
    """A text frame of a wamp.2.json session, then the message check."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the WebSocket layer refuses such a text frame (1007) before WAMP sees it
    _wamp(text, JsonSerializer())


def wamp_msgpack(data: bytes) -> None:
    """A binary frame of a wamp.2.msgpack session, then the message check."""
    _wamp(data, MsgpackSerializer())


def resp(data: bytes) -> None:
    """What the Redis server sends: fed in reads of every size, then every reply taken."""
    reader = RespReader(max_pending=_LIMIT)
    try:
        for chunk in _chunks(data):
            reader.feed(chunk)
            for _ in reader.replies():
                pass
    except RedisProtocolError:
        return


_PROXIES = {
    mode: TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"], mode=mode)
    for mode in ("forwarded", "x-forwarded")
}


def forwarded(data: bytes) -> None:
    """Forwarded and X-Forwarded-* headers from a trusted proxy: any text resolves to an
    address and a scheme, never an exception."""
    text = data.decode("latin-1")
    first, _, second = text.partition("\n")
    headers = Headers(
        [
            ("Forwarded", first),
            ("X-Forwarded-For", second),
            ("X-Forwarded-Proto", first[:10]),
            ("Forwarded", second),
        ]
    )
    for proxies in _PROXIES.values():
        info = proxies.resolve("127.0.0.1", headers)
        assert info.scheme in ("http", "https", "ws", "wss"), info


_SECRET_KEY = "the fuzzing Flask app's secret key"
_SESSION = FlaskSession(_SECRET_KEY)
# What Flask signs its session cookie with (itsdangerous, as Flask configures it).
_SIGNER = TimestampSigner(
    _SECRET_KEY, salt="cookie-session", key_derivation="hmac", digest_method=hashlib.sha1
)


def flask_session(data: bytes) -> None:
    """A session cookie *correctly signed* around any payload (first byte ``z``: compressed,
    as Flask does for large ones): the decoding and untagging behind the signature check
    either give a dict or say InvalidSession."""
    compressed = data[:1] == b"z"
    payload = zlib.compress(data[1:]) if compressed else data[1:]
    text = base64.urlsafe_b64encode(payload).rstrip(b"=")
    cookie = _SIGNER.sign(b"." + text if compressed else text).decode()
    try:
        session = _SESSION.loads(cookie)
    except InvalidSession:
        return
    assert isinstance(session, dict)


_ONE_PROCESS = MemoryBroker()  # the broker of the router's server, while a request is handled
_ENDPOINT = PublishEndpoint(WampServer(), secret=None, insecure_no_auth=True, max_body_size=8192)
_ENDPOINT_ANSWERS = {200, 400, 413, 415}


def publish_body(data: bytes) -> None:
    """The body of a request to the publish endpoint (credentials aside: it has none to
    check): an answer of the documented kinds, never an exception."""
    request = http_request(
        "/publish",
        method="POST",
        headers=[("Content-Type", "application/json")],
        body=data,
    )
    token = serving_broker.set(_ONE_PROCESS)  # as IoServer.serve does for its handlers
    try:
        response = _ENDPOINT.on_open(RecordingConnection(), request)
    finally:
        serving_broker.reset(token)
    assert not inspect.isawaitable(response)  # one process: it answers at once
    assert isinstance(response, HttpResponse) and response.status in _ENDPOINT_ANSWERS


class _Here(HttpComponent):
    def on_open(self, conn: object, request: object) -> HttpResponse:
        return HttpResponse(204)


_ROUTER = Router({"/": _Here(), "/chat": _Here(), "/files/{path:path}": _Here()})
_ROUTER.add("/items/{id}", _Here(), methods=["GET", "PUT"])


def router_path(data: bytes) -> None:
    """The request target the router matches (percent-encoding, dot segments, parameters):
    a route or an HTTP answer, never an exception."""
    target = "/" + data.decode("latin-1").lstrip("/")
    method = ("GET", "PUT", "POST", "HEAD")[len(data) % 4]
    try:
        request = http_request(target, method=method)
    except ValueError:
        return  # not a request target at all: the HTTP layer answered 400 before routing
    found = _ROUTER.resolve(request)
    assert isinstance(found, HttpResponse) or isinstance(found[1], dict)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "websocket": websocket,
    "websocket_deflate": websocket_deflate,
    "wamp_json": wamp_json,
    "wamp_msgpack": wamp_msgpack,
    "resp": resp,
    "forwarded": forwarded,
    "flask_session": flask_session,
    "publish_body": publish_body,
    "router_path": router_path,
}
