"""Fuzz targets: each takes bytes from the network (or a header) and feeds one parser.

A target returns normally for any input the parser handles as documented: events, or the
exception the parser documents for bad input (which the caller turns into a close code, an
ERROR or an HTTP status). Anything else (another exception, a hang, an event sequence that
breaks the parser's own rules) is a bug. ``fuzz/run.py`` runs them under atheris;
``tests/test_fuzz_regressions.py`` replays every kept input in ``fuzz/corpus/<target>/``.
"""

from __future__ import annotations

from collections.abc import Callable

from ratchetpy.exceptions import RedisProtocolError, RemoteProtocolError
from ratchetpy.protocol.deflate import DeflateParameters
from ratchetpy.protocol.events import ProtocolFailure
from ratchetpy.protocol.forwarded import TrustedProxies
from ratchetpy.protocol.http import Headers
from ratchetpy.protocol.resp import RespReader
from ratchetpy.protocol.websocket import WebSocketProtocol
from ratchetpy.wamp.messages import parse
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


TARGETS: dict[str, Callable[[bytes], None]] = {
    "websocket": websocket,
    "websocket_deflate": websocket_deflate,
    "wamp_json": wamp_json,
    "wamp_msgpack": wamp_msgpack,
    "resp": resp,
    "forwarded": forwarded,
}
