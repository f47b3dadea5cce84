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
import re
import zlib
from collections.abc import Callable
from typing import Any

from itsdangerous import TimestampSigner
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import generate_accept_token

from ratchetpy import (
    Connection,
    HttpComponent,
    HttpRequest,
    HttpResponse,
    HttpServer,
    MessageComponent,
    Router,
    WsServer,
    http_response,
)
from ratchetpy.broker import MemoryBroker, serving_broker
from ratchetpy.components.session import FlaskSession
from ratchetpy.exceptions import InvalidSession, RedisProtocolError, RemoteProtocolError
from ratchetpy.protocol.deflate import DeflateParameters, negotiate_deflate
from ratchetpy.protocol.events import ProtocolFailure
from ratchetpy.protocol.forwarded import TrustedProxies
from ratchetpy.protocol.handshake import parse_upgrade
from ratchetpy.protocol.http import Headers
from ratchetpy.protocol.resp import RespReader
from ratchetpy.protocol.websocket import WebSocketProtocol
from ratchetpy.testing import RecordingConnection
from ratchetpy.testing import http_request as build_request
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
    request = build_request(
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
        request = build_request(target, method=method)
    except ValueError:
        return  # not a request target at all: the HTTP layer answered 400 before routing
    found = _ROUTER.resolve(request)
    assert isinstance(found, HttpResponse) or isinstance(found[1], dict)


# -- HTTP responses, as a client reads them ------------------------------------------------

_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(rb"(?:[!-~\x80-\xff](?:[\t !-~\x80-\xff]*[!-~\x80-\xff])?)?\Z")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\t !-~\x80-\xff]*\Z")


def _response_head(sent: bytes, start: int) -> tuple[int, dict[bytes, list[bytes]], int]:
    """The status, the headers (lower-case names) and the end of the response head that starts
    at ``sent[start]``; AssertionError unless it is a well-formed HTTP/1.1 response head."""
    end = sent.find(b"\r\n\r\n", start)
    assert end >= 0, sent[start:]
    status_line, *lines = sent[start:end].split(b"\r\n")
    matched = _STATUS_LINE.match(status_line)
    assert matched, status_line
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        value = value.removeprefix(b" ")
        assert colon and _FIELD_NAME.match(name) and _FIELD_VALUE.match(value), line
        headers.setdefault(name.lower(), []).append(value)
    return int(matched[1]), headers, end + 4


def _sent(conn: RecordingConnection) -> bytes:
    return b"".join(data if isinstance(data, bytes) else data.encode() for data in conn.sent)


def _content_length(headers: dict[bytes, list[bytes]]) -> int:
    (length,) = headers[b"content-length"]
    assert length.isdigit(), length
    return int(length)


def _closes(headers: dict[bytes, list[bytes]]) -> bool:
    tokens = b",".join(headers.get(b"connection", [])).split(b",")
    return any(token.strip().lower() == b"close" for token in tokens)


# -- http_request: HttpServer's reading of requests, under its limits -----------------------

_MAX_HEAD, _MAX_HEADERS, _MAX_BODY = 512, 8, 100  # small, for the fuzzer to reach them
#: What HttpServer itself answers a request it will not hand on with (then it closes).
_HTTP_REFUSALS = {400, 408, 413, 431, 501, 505}


class _Answers(HttpComponent):
    """What the fuzzed HttpServer serves: the body sent back at ``/body``, 204 at ``/empty``,
    the connection taken over Ratchet's way (send a response, close) at ``/old``, 200
    elsewhere. ``seen`` has each request and the status it was answered with."""

    def __init__(self) -> None:
        self.seen: list[tuple[HttpRequest, int]] = []

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse | None:
        if request.path == "/old":
            self.seen.append((request, 200))
            conn.send(http_response(200))
            conn.close()
            return None
        if request.path == "/empty":
            self.seen.append((request, 204))
            return HttpResponse(204)
        self.seen.append((request, 200))
        return HttpResponse(200, request.body if request.path.startswith("/body") else b"ok")


_ANSWERS = _Answers()
_HTTP_SERVERS = (
    HttpServer(
        _ANSWERS, max_head_size=_MAX_HEAD, max_headers=_MAX_HEADERS, max_body_size=_MAX_BODY
    ),
    HttpServer(
        _ANSWERS,
        max_head_size=_MAX_HEAD,
        max_headers=_MAX_HEADERS,
        max_body_size=_MAX_BODY,
        trusted_proxies=["127.0.0.1"],
    ),
)


def _check_buffered(server: HttpServer, conn: RecordingConnection) -> None:
    """What HttpServer holds of a request still being read stays within its limits."""
    state: Any = server._conns.get(conn)  # its record of the connection, peeked at to measure it
    parser = getattr(state, "parser", None)
    if parser is None or conn.closed:
        return
    assert len(parser.trailing_data[0]) <= _MAX_HEAD
    assert state.body_size <= _MAX_BODY
    assert sum(map(len, state.body)) == state.body_size


def _check_answers(
    conn: RecordingConnection, seen: list[tuple[HttpRequest, int]], *, timed_out: bool
) -> None:
    """Everything written is well-formed HTTP/1.1: 100 Continue, the answer to each request the
    component was handed (in order, no body for HEAD), at most one refusal, last and followed
    by a close; a connection stays open exactly when its last answer did not say close."""
    sent = _sent(conn)
    position = answered = 0
    refused = closing = False
    while position < len(sent):
        assert not closing, sent[position:]  # nothing after a response that said close
        status, headers, position = _response_head(sent, position)
        if status == 100:
            assert not headers, headers  # Expect: 100-continue answered; the answer follows
            continue
        if answered < len(seen):
            request, expected = seen[answered]
            answered += 1
            assert status == expected, (status, request)
            has_body = request.method != "HEAD" and status != 204
        else:
            assert status in _HTTP_REFUSALS, status
            refused = True
            has_body = True
        if status == 204:
            assert b"content-length" not in headers, headers
        else:
            length = _content_length(headers)
            if has_body:
                position += length
                assert position <= len(sent), sent
        closing = refused or _closes(headers)
    assert answered == len(seen), (answered, seen)
    if closing:
        assert conn.closed
    else:
        assert timed_out or not conn.closed, sent  # closed without saying so
    for request, _ in seen:
        assert len(request.body) <= _MAX_BODY
        assert len(request.headers) <= _MAX_HEADERS
        assert request.http_version in ("1.0", "1.1"), request.http_version
        assert request.method != "CONNECT"  # answered 501 by HttpServer


def http_request(data: bytes) -> None:
    """Requests on one connection to HttpServer (small limits), in reads of every size; the
    first byte's top bit puts a trusted proxy in front, the next one lets the timers fire at
    the end. Never an exception: answers as documented, buffers bounded by the limits."""
    flags = data[0] if data else 0
    server = _HTTP_SERVERS[flags >> 7]
    _ANSWERS.seen.clear()
    conn = RecordingConnection(websocket=False)
    server.on_open(conn)
    try:
        for chunk in _chunks(data):
            if conn.closed:
                break  # IoServer hands a closing connection no more reads
            if chunk:  # an empty read is the end of the stream, not a message
                assert server.on_message(conn, chunk) is None  # nothing async here
                _check_buffered(server, conn)
        timed_out = bool(flags & 0x40)
        if timed_out:
            conn.fire_timers()  # the request (or keep-alive) timeout passes
        _check_answers(conn, _ANSWERS.seen, timed_out=timed_out)
    finally:
        server.on_close(conn)


# -- handshake: the opening handshake behind HttpServer, as WsServer negotiates it -----------

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")
_WS_SERVERS = tuple(
    (ws, HttpServer(ws))
    for ws in (
        WsServer(MessageComponent(), subprotocols=("wamp.2.json", "chat")),
        WsServer(
            MessageComponent(),
            subprotocols=("chat",),
            strict_subprotocols=False,
            context_takeover=False,
        ),
        WsServer(
            MessageComponent(), subprotocols=("wamp.2.msgpack", "chat"), require_subprotocol=True
        ),
        WsServer(MessageComponent(), compression=None),
    )
)


class _Transport(RecordingConnection):
    """The TCP connection under the stack: a RecordingConnection with what WsServer writes
    through (``write``, ``write_urgent``, ``abort``)."""

    over_write_limit = False

    def write(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.sent.append(data)
        return True

    def write_urgent(self, data: bytes, *, discard_queued: bool = False) -> None:
        self.write(data)

    def abort(self) -> None:
        self.lose()


def _deflate_response(text: str) -> DeflateParameters:
    """The parameters a permessage-deflate response says, read strictly (RFC 7692)."""
    name, *params = text.split("; ")
    assert name == "permessage-deflate", text
    values: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        assert key not in values, text
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            assert not eq, text
        else:
            assert key in ("server_max_window_bits", "client_max_window_bits"), text
            assert _WINDOW_BITS.match(value), text
        values[key] = value
    return DeflateParameters(
        server_no_context_takeover="server_no_context_takeover" in values,
        client_no_context_takeover="client_no_context_takeover" in values,
        server_max_window_bits=int(values.get("server_max_window_bits", 15)),
        client_max_window_bits=int(values.get("client_max_window_bits", 15)),
    )


def _check_deflate(ws: WsServer, offers: tuple[str, ...], answer: list[bytes] | None) -> None:
    agreed = None
    if ws.compression == "deflate" and offers:
        agreed = negotiate_deflate(list(offers), server_no_context_takeover=not ws.context_takeover)
    if agreed is None:
        assert answer is None, answer
        return
    params, text = agreed
    assert answer == [text.encode("latin-1")], (answer, text)
    assert _deflate_response(text) == params, (text, params)
    offered = " ".join(offers).lower()
    assert "permessage-deflate" in offered, offers
    # The server may limit the client's window only when the client said it can.
    assert "client_max_window_bits" not in text or "client_max_window_bits" in offered, offers
    if params.server_max_window_bits >= 9 and params.client_max_window_bits >= 9:
        client = PerMessageDeflate()  # wsproto's client reads the same agreement
        client.finalize(text)
        assert (
            client.server_no_context_takeover,
            client.client_no_context_takeover,
            client.server_max_window_bits,
            client.client_max_window_bits,
        ) == (
            params.server_no_context_takeover,
            params.client_no_context_takeover,
            params.server_max_window_bits,
            params.client_max_window_bits,
        )


def _final_head(sent: bytes) -> tuple[int, dict[bytes, list[bytes]]] | None:
    """The first response head in ``sent`` after any 100 Continue; None when there is none."""
    end = 0
    while end < len(sent):
        status, headers, end = _response_head(sent, end)
        if status != 100:
            return status, headers
    return None


def _check_handshake(ws: WsServer, request: HttpRequest, conn: _Transport) -> None:
    answer = _final_head(_sent(conn))
    assert answer is not None  # WsServer answers at once, whatever the request
    status, headers = answer
    try:
        upgrade = parse_upgrade(request)
    except RemoteProtocolError as exc:
        assert exc.http_status in (400, 405, 426), exc.http_status
        assert status == exc.http_status and conn.closed, (status, exc)
        if status == 405:
            assert headers[b"allow"] == [b"GET"], headers
        if status == 426:
            assert headers[b"sec-websocket-version"] == [b"13"], headers
        return
    assert len(base64.b64decode(upgrade.key, validate=True)) == 16, upgrade.key
    offered = upgrade.subprotocols
    chosen = next((name for name in offered if name in ws.subprotocols), None)
    if chosen is None and (ws.strict_subprotocols if offered else ws.require_subprotocol):
        assert status == 400 and conn.closed, status
        return
    assert status == 101, status
    assert headers[b"upgrade"] == [b"websocket"] and headers[b"connection"] == [b"Upgrade"]
    key = upgrade.key.encode("ascii")
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
    assert headers[b"sec-websocket-accept"] == [accept] == [generate_accept_token(key)], headers
    expected = None if chosen is None else [chosen.encode("latin-1")]
    assert headers.get(b"sec-websocket-protocol") == expected, (headers, chosen)
    _check_deflate(ws, upgrade.extensions, headers.get(b"sec-websocket-extensions"))


def handshake(data: bytes) -> None:
    """A request head (after a byte choosing one of four WsServer configurations) read by
    HttpServer and answered by WsServer: a refusal with the status ``parse_upgrade`` gives
    (or the subprotocol policy's 400), or a 101 whose accept token, subprotocol and
    permessage-deflate agreement are right and read back."""
    ws, server = _WS_SERVERS[data[0] % len(_WS_SERVERS)] if data else _WS_SERVERS[0]
    head = data[1:]
    if b"\n\n" not in head and b"\n\r\n" not in head:
        head += b"\r\n\r\n"
    conn = _Transport(websocket=False)
    server.on_open(conn)
    try:
        assert server.on_message(conn, head) is None
        request = conn.http_request
        if request is None:  # refused by HttpServer (the http_request target's subject), or
            answer = _final_head(_sent(conn))  # a body still awaited (after 100 Continue)
            assert answer is None or (answer[0] in _HTTP_REFUSALS and conn.closed), answer
            return
        _check_handshake(ws, request, conn)
    finally:
        server.on_close(conn)


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
    "http_request": http_request,
    "handshake": handshake,
}
