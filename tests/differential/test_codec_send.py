"""Differential tests: what independent clients decode from the frames ratchetpy sends.

The oracles are the client sides of two independent WebSocket implementations, run sans-IO:
wsproto's client ``Connection`` and websockets' ``ClientProtocol`` (which goes through a real
opening handshake, so it also checks ratchetpy's permessage-deflate answer the way a strict
client would). Every frame ratchetpy can send must decode in both to exactly what was sent:
messages from ``encode_message`` (plain, compressed with and without context takeover),
shared broadcast frames (``encode_broadcast``, ``encode_broadcast_compressed``), pings, pongs
and close frames. Hypothesis draws the messages, their sizes (around the 7/16/64-bit length
boundaries too) and the negotiated parameters; see conftest.py for how many examples run.

What each client decodes is folded into an ``Outcome`` by the readers in
tests/support/oracles.py, the same ones the receive-side tests read wsproto and websockets with.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
)
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate as WebsocketsDeflate,
)
from websockets.protocol import State
from websockets.uri import parse_uri
from wsproto.connection import Connection, ConnectionType
from wsproto.extensions import PerMessageDeflate

from ratchetpy.protocol import (
    DeflateParameters,
    WebSocketProtocol,
    encode_broadcast,
    encode_broadcast_compressed,
    negotiate_deflate,
)
from ratchetpy.protocol.handshake import accept_response
from support.client_streams import (
    UTF8_CHARS,
    close_reasons,
    text_of_size,
)
from support.known_differences import (
    KNOWN_DIFFERENCES,
)
from support.oracles import (
    QUIET_WEBSOCKETS_LOG,
    STILL_OPEN,
    End,
    Item,
    Outcome,
    WebsocketsReader,
    WsprotoReader,
)

# -- the two clients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerWishes:
    """The keyword arguments of negotiate_deflate: what the ratchetpy server asks for."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int | None = None


class Client:
    """One oracle client connected to one ratchetpy server-side WebSocketProtocol."""

    name: str
    server: WebSocketProtocol

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def decoded(self) -> Outcome:
        raise NotImplementedError


class WsprotoClient(Client):
    name = "wsproto"

    def __init__(
        self,
        offer: PerMessageDeflate | None,
        wishes: ServerWishes,
        compress_min_size: int,
    ) -> None:
        params: DeflateParameters | None = None
        extensions: list[PerMessageDeflate] = []
        if offer is not None:
            agreed = negotiate_deflate([f"{offer.name}; {offer.offer()}"], **wishes.__dict__)
            assert agreed is not None, "wsproto always offers client_max_window_bits"
            params, response = agreed
            # What wsproto's handshake does with the extension the server accepted.
            offer.finalize(response)
            assert offer.server_no_context_takeover == params.server_no_context_takeover
            assert offer.server_max_window_bits == params.server_max_window_bits
            assert offer.client_max_window_bits == params.client_max_window_bits
            extensions.append(offer)
        self.server = WebSocketProtocol(deflate=params, compress_min_size=compress_min_size)
        connection = Connection(ConnectionType.CLIENT, extensions=list(extensions))
        self._reader = WsprotoReader(connection)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def decoded(self) -> Outcome:
        return self._reader.outcome()


class WebsocketsClient(Client):
    name = "websockets"

    def __init__(
        self,
        offer: ClientPerMessageDeflateFactory | None,
        wishes: ServerWishes,
        compress_min_size: int,
    ) -> None:
        self._proto = ClientProtocol(
            parse_uri("ws://example.com/chat"),
            extensions=None if offer is None else [offer],
            max_size=None,
            logger=QUIET_WEBSOCKETS_LOG,
        )
        request = self._proto.connect()
        self._proto.send_request(request)
        self._proto.data_to_send()
        agreed = negotiate_deflate(
            request.headers.get_all("Sec-WebSocket-Extensions"), **wishes.__dict__
        )
        params, response = agreed if agreed is not None else (None, None)
        self._proto.receive_data(
            accept_response(request.headers["Sec-WebSocket-Key"], extensions=response)
        )
        assert self._proto.state is State.OPEN, f"handshake refused: {self._proto.handshake_exc}"
        self._proto.events_received()  # the 101 response
        if params is None:
            assert self._proto.extensions == []
        else:
            # websockets read the same parameters out of ratchetpy's answer.
            [ext] = self._proto.extensions
            assert isinstance(ext, WebsocketsDeflate)
            assert ext.remote_no_context_takeover == params.server_no_context_takeover
            assert ext.local_no_context_takeover == params.client_no_context_takeover
            assert ext.remote_max_window_bits == params.server_max_window_bits
            assert ext.local_max_window_bits == params.client_max_window_bits
        self.server = WebSocketProtocol(deflate=params, compress_min_size=compress_min_size)
        # What the client answers (pongs, the echoed close frame) is not under test.
        self._reader = WebsocketsReader(self._proto)

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def decoded(self) -> Outcome:
        return self._reader.outcome()


# -- what the server sends ---------------------------------------------------------------------


OpKind = Literal["message", "broadcast", "shared_compressed", "ping", "pong"]
# Per-connection messages twice: they are the ones whose compression state carries over.
OP_KINDS: tuple[OpKind, ...] = (
    "message",
    "message",
    "broadcast",
    "shared_compressed",
    "ping",
    "pong",
)


@dataclass(frozen=True)
class Op:
    kind: OpKind
    value: str | bytes


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


def item(op: Op) -> Item:
    if op.kind in ("ping", "pong"):
        return (op.kind, op.value)
    return ("text", op.value) if isinstance(op.value, str) else ("binary", op.value)


def parse_frame(frame: bytes) -> tuple[int, bytes]:
    """The first byte and the payload of exactly one unmasked server frame."""
    b0, b1 = frame[0], frame[1]
    assert not b1 & 0x80, "server frames are never masked (RFC 6455 5.1)"
    n, pos = b1 & 0x7F, 2
    if n == 126:
        n, pos = int.from_bytes(frame[2:4], "big"), 4
        assert n >= 126, "the minimal length encoding (RFC 6455 5.2)"
    elif n == 127:
        n, pos = int.from_bytes(frame[2:10], "big"), 10
        assert 0x10000 <= n < 2**63, "the minimal length encoding, top bit clear"
    assert len(frame) == pos + n, "one whole frame"
    return b0, frame[pos:]


def send(client: Client, op: Op, shared: Callable[[Op, int | None], bytes]) -> bytes:
    """Encode ``op`` on the client's server connection (as broadcast() would choose), feed it."""
    server = client.server
    if op.kind == "message":
        frame = server.encode_message(op.value)
        b0, payload = parse_frame(frame)
        raw = op.value.encode() if isinstance(op.value, str) else op.value
        compressed = not server.shares_encoding and len(raw) >= server.compress_min_size
        assert b0 == (0xC0 if compressed else 0x80) | (0x1 if isinstance(op.value, str) else 0x2)
        if not compressed:
            assert payload == raw
    elif op.kind == "broadcast":
        frame = shared(op, None)
        if server.shares_encoding:
            assert server.encode_message(op.value) == frame
    elif op.kind == "shared_compressed":
        # Connections without a shared window get the plain frame, as broadcast() picks.
        frame = shared(op, server.shared_deflate_bits)
    else:
        assert isinstance(op.value, bytes)
        frame = server.encode_ping(op.value) if op.kind == "ping" else server.encode_pong(op.value)
        b0, payload = parse_frame(frame)
        assert (b0, payload) == (0x89 if op.kind == "ping" else 0x8A, op.value)
    client.feed(frame)
    return frame


class SharedFrames:
    """Broadcast frames, encoded once for all the connections they suit, as broadcast() does."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Op, int | None], bytes] = {}

    def __call__(self, op: Op, bits: int | None) -> bytes:
        key = (op, bits)
        if key not in self._cache:
            if bits is None:
                self._cache[key] = encode_broadcast(op.value)
            else:
                self._cache[key] = encode_broadcast_compressed(op.value, bits)
                b0, _ = parse_frame(self._cache[key])
                assert b0 & 0x40, "compressed"
        return self._cache[key]


def expected(ops: Sequence[Op], close: Close | None) -> Outcome:
    end = STILL_OPEN if close is None else End("close", close.code, close.reason)
    return Outcome(tuple(item(op) for op in ops), end)


# -- strategies --------------------------------------------------------------------------------

BOUNDARY_SIZES = (0, 1, 125, 126, 127, 128, 65535, 65536, 65537)
SENDABLE_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)


@st.composite
def message_values(draw: st.DrawFn) -> str | bytes:
    text = draw(st.booleans())
    if draw(st.integers(0, 4)) < 4:
        return draw(st.text(UTF8_CHARS, max_size=300)) if text else draw(st.binary(max_size=300))
    # Payloads of exactly the sizes where the length encoding changes.
    size = draw(st.sampled_from(BOUNDARY_SIZES))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    if text:
        return text_of_size(rng, size)
    return rng.randbytes(size) if draw(st.booleans()) else bytes(size)


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(OP_KINDS))
    if kind in ("ping", "pong"):
        return Op(kind, draw(st.binary(max_size=125)))
    return Op(kind, draw(message_values()))


@st.composite
def closes(draw: st.DrawFn) -> Close:
    code = draw(st.sampled_from(SENDABLE_CLOSE_CODES) | st.integers(3000, 4999))
    return Close(code, draw(close_reasons))


@st.composite
def wsproto_offers(draw: st.DrawFn) -> PerMessageDeflate | None:
    if not draw(st.booleans()):
        return None
    return PerMessageDeflate(
        client_no_context_takeover=draw(st.booleans()),
        client_max_window_bits=draw(st.integers(9, 15)),  # wsproto refuses 8
        server_no_context_takeover=draw(st.booleans()),
        server_max_window_bits=draw(st.integers(9, 15)),
    )


@st.composite
def websockets_offers(draw: st.DrawFn) -> ClientPerMessageDeflateFactory | None:
    if not draw(st.booleans()):
        return None
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=draw(st.booleans()),
        client_no_context_takeover=draw(st.booleans()),
        server_max_window_bits=draw(st.none() | st.integers(8, 15)),
        client_max_window_bits=draw(st.sampled_from([None, True]) | st.integers(9, 15)),
    )


server_wishes = st.builds(
    ServerWishes,
    st.booleans(),
    st.booleans(),
    # Answering a window of 8 is allowed (RFC 7692 7.1.2.1) but wsproto refuses it, and
    # websockets refuses client_max_window_bits=8: both are zlib's limit, not ratchetpy's.
    st.integers(9, 15),
    st.none() | st.integers(9, 15),
)


# -- the tests -----------------------------------------------------------------------------------

# Close frames a client fails with 1002 instead of reporting them: the receive-side table
# (KNOWN_DIFFERENCES in tests/support/oracles.py) says why ratchetpy is right to send them.
CLOSE_CODES_REFUSED = {("wsproto", 1014): "wsproto-rejects-close-code-1014"}


def check(client: Client, want: Outcome) -> None:
    got = client.decoded()
    refused = CLOSE_CODES_REFUSED.get((client.name, want.end.code))
    if want.end.kind == "close" and refused is not None:
        assert refused in KNOWN_DIFFERENCES
        if currently_in_test_context():
            event(f"known difference: {refused}")
        assert got.key() == Outcome(want.events, End("fail", 1002)).key()
        return
    assert got.key() == want.key(), f"{client.name} decoded something else"


@given(
    wsproto_offer=wsproto_offers(),
    websockets_offer=websockets_offers(),
    wishes=server_wishes,
    compress_min_size=st.sampled_from([0, 1, 128, 2**30]),
    sent=st.lists(ops(), max_size=8),
    close=st.none() | closes(),
)
def test_clients_decode_what_the_server_sends(
    wsproto_offer: PerMessageDeflate | None,
    websockets_offer: ClientPerMessageDeflateFactory | None,
    wishes: ServerWishes,
    compress_min_size: int,
    sent: list[Op],
    close: Close | None,
) -> None:
    clients: list[Client] = [
        WsprotoClient(wsproto_offer, wishes, compress_min_size),
        WebsocketsClient(websockets_offer, wishes, compress_min_size),
    ]
    for client in clients:
        server = client.server
        if server.shared_deflate_bits is not None:
            event("no server context takeover")
        elif not server.shares_encoding:
            event("server context takeover")
    shared = SharedFrames()
    for op in sent:
        for client in clients:
            send(client, op, shared)
    for client in clients:
        if close is not None:
            frame = client.server.encode_close(close.code, close.reason)
            b0, payload = parse_frame(frame)
            assert b0 == 0x88 and payload == close.code.to_bytes(2, "big") + close.reason.encode()
            client.feed(frame)
        check(client, expected(sent, close))


@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 2**20])
@pytest.mark.parametrize("compression", ["none", "context takeover", "no context takeover"])
def test_length_boundaries(size: int, compression: str) -> None:
    """Each payload size where the length encoding changes, as text and as binary."""
    offer = None
    if compression != "none":
        offer = ClientPerMessageDeflateFactory(
            server_no_context_takeover=compression == "no context takeover"
        )
    rng = random.Random(size)
    sent = [
        Op("message", text_of_size(rng, size)),
        Op("message", rng.randbytes(size)),
        Op("broadcast", rng.randbytes(size)),
        Op("shared_compressed", text_of_size(rng, size)),
        Op("message", bytes(size)),  # compressible, with the history of the ones before
    ]
    clients: list[Client] = [
        WebsocketsClient(offer, ServerWishes(), compress_min_size=0),
        WsprotoClient(
            None
            if offer is None
            else PerMessageDeflate(server_no_context_takeover=compression == "no context takeover"),
            ServerWishes(),
            compress_min_size=0,
        ),
    ]
    shared = SharedFrames()
    for client in clients:
        for op in sent:
            send(client, op, shared)
        check(client, expected(sent, None))


@pytest.mark.parametrize("bits", range(8, 16))
def test_shared_compressed_frame_for_each_window_size(bits: int) -> None:
    """One encode_broadcast_compressed frame serves every connection that agreed on ``bits``
    without server context takeover, between the messages compressed for each of them."""
    wishes = ServerWishes(server_no_context_takeover=True, server_max_window_bits=bits)
    clients: list[Client] = [
        WebsocketsClient(ClientPerMessageDeflateFactory(), wishes, compress_min_size=0),
        WebsocketsClient(
            ClientPerMessageDeflateFactory(server_max_window_bits=bits), ServerWishes(True), 0
        ),
    ]
    if bits >= 9:  # wsproto refuses an 8-bit window
        clients.append(WsprotoClient(PerMessageDeflate(), wishes, compress_min_size=0))
        clients.append(
            WsprotoClient(
                PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=bits),
                ServerWishes(),
                compress_min_size=0,
            )
        )
    # zlib cannot compress raw deflate with an 8-bit window; 9 is what zlib peers expect.
    assert {c.server.shared_deflate_bits for c in clients} == {-max(bits, 9)}
    rng = random.Random(bits)
    words = [text_of_size(rng, 7) for _ in range(50)]
    sent = [
        Op("shared_compressed" if i % 2 else "message", " ".join(rng.choices(words, k=300)))
        for i in range(6)
    ]
    shared = SharedFrames()
    frames = [[send(client, op, shared) for op in sent] for client in clients]
    for client in clients:
        check(client, expected(sent, None))
    # The shared frames really were the same bytes for every connection.
    for i in range(1, len(sent), 2):
        assert len({f[i] for f in frames}) == 1


@pytest.mark.parametrize(
    "reason",
    ["", "bye", "é" * 61 + "a", "€" * 41, "😀" * 30 + "abc", "x" * 123],
    ids=[
        "empty",
        "short",
        "123-bytes-2-byte-chars",
        "123-bytes-3-byte-chars",
        "123-bytes-4-byte-chars",
        "123-ascii",
    ],
)
@pytest.mark.parametrize("code", [*SENDABLE_CLOSE_CODES, 3000, 3999, 4000, 4999])
def test_close_frames(code: int, reason: str) -> None:
    assert len(reason.encode()) <= 123
    for client in (
        WsprotoClient(None, ServerWishes(), 128),
        WebsocketsClient(None, ServerWishes(), 128),
    ):
        client.feed(client.server.encode_close(code, reason))
        check(client, Outcome((), End("close", code, reason)))


def test_close_frame_with_the_default_code() -> None:
    for client in (
        WsprotoClient(None, ServerWishes(), 128),
        WebsocketsClient(None, ServerWishes(), 128),
    ):
        client.feed(client.server.encode_close())
        check(client, Outcome((), End("close", 1000, "")))
