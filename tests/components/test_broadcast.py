"""permessage-deflate without context takeover: one compressed frame serves every client.

WampServer asks for it, so that an event to N browsers (which all offer permessage-deflate) is
compressed and framed once. Checked sans-IO (negotiation, the frame decompresses to the
message) and over sockets with the ``websockets`` client, which decompresses what it gets.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import trio
from websockets.trio.client import connect

import ratchetpy
import ratchetpy.components.ws_connection
from ratchetpy import App, Connection, MessageComponent, WsServer, broadcast
from ratchetpy.protocol.deflate import negotiate_deflate
from ratchetpy.protocol.websocket import WebSocketProtocol, encode_broadcast_compressed

BROWSER_OFFER = ["permessage-deflate; client_max_window_bits"]


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def test_server_no_context_takeover_is_asked_for_when_wanted() -> None:
    agreed = negotiate_deflate(BROWSER_OFFER, server_no_context_takeover=True)
    assert agreed is not None
    params, response = agreed
    assert params.server_no_context_takeover and "server_no_context_takeover" in response
    protocol = WebSocketProtocol(deflate=params)
    assert protocol.shared_deflate_bits == -15
    # With context takeover (the default), each connection's stream is its own.
    default = negotiate_deflate(BROWSER_OFFER)
    assert default is not None
    assert WebSocketProtocol(deflate=default[0]).shared_deflate_bits is None
    assert WebSocketProtocol().shared_deflate_bits is None


def test_shared_frame_is_what_each_connection_would_send() -> None:
    agreed = negotiate_deflate(BROWSER_OFFER, server_no_context_takeover=True)
    assert agreed is not None
    message = json.dumps({"text": "x" * 500, "n": list(range(50))})
    frame = encode_broadcast_compressed(message, -15)
    assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
    length = frame[1] & 0x7F
    payload = frame[4:] if length == 126 else frame[2:]
    assert inflate(payload).decode() == message
    # A connection compressing alone produces the same bytes, message after message.
    protocol = WebSocketProtocol(deflate=agreed[0])
    assert protocol.encode_message(message) == frame
    assert protocol.encode_message(message) == frame


class Room(MessageComponent):
    compression_context_takeover = False

    def __init__(self) -> None:
        self.members: list[Connection] = []
        self.joined = trio.Event()
        self.expected = 0

    def on_open(self, conn: Connection) -> None:
        self.members.append(conn)
        if len(self.members) == self.expected:
            self.joined.set()


async def test_one_compressed_frame_for_every_client(
    nursery: trio.Nursery, monkeypatch: Any
) -> None:
    room = Room()
    room.expected = 3
    app = App(None, 0, "127.0.0.1")
    app.route("/", WsServer(room), allowed_origins=["*"])
    port = await nursery.start(app.serve)

    encodings: list[int] = []
    original = ratchetpy.components.ws_connection.encode_broadcast_compressed

    def counting(data: str | bytes, wbits: int) -> bytes:
        encodings.append(wbits)
        return original(data, wbits)

    monkeypatch.setattr(ratchetpy.components.ws_connection, "encode_broadcast_compressed", counting)
    messages = [json.dumps({"seq": i, "body": "news " * 100}) for i in range(3)]
    with trio.fail_after(10):
        async with (
            connect(f"ws://127.0.0.1:{port}/") as a,
            connect(f"ws://127.0.0.1:{port}/") as b,
            connect(f"ws://127.0.0.1:{port}/", compression=None) as c,
        ):
            for client in (a, b):
                extensions = client.response.headers["Sec-WebSocket-Extensions"]
                assert "server_no_context_takeover" in extensions
            assert "Sec-WebSocket-Extensions" not in c.response.headers
            await room.joined.wait()
            for message in messages:
                broadcast(room.members, message)
            for client in (a, b, c):
                assert [await client.recv() for _ in messages] == messages
    # Compressed once per message for the two compressing clients (c got the plain frame).
    assert encodings == [-15, -15, -15]


async def test_wamp_route_asks_for_server_no_context_takeover(nursery: trio.Nursery) -> None:
    app = App(None, 0, "127.0.0.1")
    app.route("/ws", ratchetpy.WampServer(), allowed_origins=["*"])
    port = await nursery.start(app.serve)
    with trio.fail_after(10):
        async with connect(
            f"ws://127.0.0.1:{port}/ws",
            subprotocols=["wamp.2.json"],  # type: ignore[list-item]
        ) as ws:
            assert "server_no_context_takeover" in ws.response.headers["Sec-WebSocket-Extensions"]
