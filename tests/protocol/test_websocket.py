"""The sans-IO server-side WebSocket protocol, fed hand-built client frames; no sockets."""

from __future__ import annotations

import os
import random
import struct
import zlib

import pytest

from ratchetpy.exceptions import LocalProtocolError
from ratchetpy.protocol import masking
from ratchetpy.protocol import websocket as websocket_module
from ratchetpy.protocol.deflate import DeflateParameters
from ratchetpy.protocol.events import CloseReceived, Event, Message, Ping, Pong, ProtocolFailure
from ratchetpy.protocol.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ProtocolState,
    WebSocketProtocol,
    encode_broadcast,
    encode_frame,
)
from support.frames import client_frame as frame

# -- helpers ----------------------------------------------------------------------------------


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def parse_server_frame(data: bytes) -> tuple[int, int, bytes, bytes]:
    """Return (first byte, opcode, payload, rest) of an unmasked server frame."""
    b0, b1 = data[0], data[1]
    assert not b1 & 0x80, "server frames are never masked"
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        (n,) = struct.unpack("!H", data[2:4])
        pos = 4
    elif n == 127:
        (n,) = struct.unpack("!Q", data[2:10])
        pos = 10
    return b0, b0 & 0x0F, data[pos : pos + n], data[pos + n :]


def feed_bytewise(proto: WebSocketProtocol, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events.extend(proto.receive_data(data[i : i + 1]))
    return events


def failure(events: list[Event]) -> ProtocolFailure:
    assert events, "expected a ProtocolFailure"
    last = events[-1]
    assert isinstance(last, ProtocolFailure), events
    return last


# -- data messages -----------------------------------------------------------------------------


def test_single_text_and_binary() -> None:
    p = WebSocketProtocol()
    assert p.receive_data(frame(OP_TEXT, "héllo ✓".encode())) == [Message("héllo ✓")]
    assert p.receive_data(frame(OP_BINARY, b"\x00\xff")) == [Message(b"\x00\xff")]
    assert p.receive_data(frame(OP_TEXT)) == [Message("")]
    assert p.receive_data(frame(OP_BINARY)) == [Message(b"")]
    assert p.state is ProtocolState.OPEN


@pytest.mark.parametrize("size", [125, 126, 511, 512, 513, 65535, 65536, 300_001])
def test_sizes_and_length_encodings(size: int) -> None:
    data = os.urandom(size)
    p = WebSocketProtocol()
    (event,) = p.receive_data(frame(OP_BINARY, data))
    assert event == Message(data)
    assert type(event.data) is bytes
    text = "ü" * (size // 2) + "a" * (size % 2)
    assert p.receive_data(frame(OP_TEXT, text.encode())) == [Message(text)]


@pytest.mark.parametrize("form", [16, 64])
def test_non_minimal_length_is_accepted(form: int) -> None:
    p = WebSocketProtocol()
    assert p.receive_data(frame(OP_TEXT, b"hi", length_form=form)) == [Message("hi")]
    assert p.receive_data(frame(OP_PING, b"x", length_form=form)) == [Ping(b"x")]


def test_many_messages_in_one_chunk() -> None:
    p = WebSocketProtocol()
    data = b"".join(frame(OP_TEXT, f"m{i}".encode()) for i in range(50))
    assert p.receive_data(data) == [Message(f"m{i}") for i in range(50)]


def test_fragmented_text_and_binary_with_interleaved_control_frames() -> None:
    p = WebSocketProtocol()
    stream = (
        frame(OP_TEXT, b"fra", fin=False)
        + frame(OP_PING, b"p1")
        + frame(OP_CONTINUATION, "gmé".encode(), fin=False)
        + frame(OP_PONG, b"p2")
        + frame(OP_CONTINUATION, b"", fin=False)
        + frame(OP_CONTINUATION, b"nted")
        + frame(OP_BINARY, b"\x01", fin=False)
        + frame(OP_CONTINUATION, b"\x02\x03")
    )
    assert p.receive_data(stream) == [
        Ping(b"p1"),
        Pong(b"p2"),
        Message("fragménted"),
        Message(b"\x01\x02\x03"),
    ]


def test_utf8_sequence_split_across_fragments() -> None:
    p = WebSocketProtocol()
    raw = "€uro".encode()
    stream = frame(OP_TEXT, raw[:1], fin=False) + frame(OP_CONTINUATION, raw[1:])
    assert p.receive_data(stream) == [Message("€uro")]


def big_stream() -> tuple[bytes, list[Event]]:
    big = os.urandom(70_000)
    stream = (
        frame(OP_TEXT, b"one")
        + frame(OP_BINARY, big[:1000], fin=False)
        + frame(OP_PING, b"ping")
        + frame(OP_CONTINUATION, big[1000:], fin=False)
        + frame(OP_CONTINUATION, b"")
        + frame(OP_TEXT, ("ü" * 200).encode())
        + frame(OP_CLOSE, close_payload(1000, b"bye"))
    )
    expected: list[Event] = [
        Message("one"),
        Ping(b"ping"),
        Message(big),
        Message("ü" * 200),
        CloseReceived(1000, "bye"),
    ]
    return stream, expected


def test_whole_stream_at_once() -> None:
    stream, expected = big_stream()
    assert WebSocketProtocol().receive_data(stream) == expected


def test_byte_by_byte() -> None:
    stream, expected = big_stream()
    assert feed_bytewise(WebSocketProtocol(), stream) == expected


@pytest.mark.parametrize("seed", range(10))
def test_random_chunking(seed: int) -> None:
    rng = random.Random(seed)
    stream, expected = big_stream()
    p = WebSocketProtocol()
    events: list[Event] = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 3, 7, 13, 100, 4097, 30_000])
        events.extend(p.receive_data(stream[pos : pos + step]))
        pos += step
    assert events == expected


def test_accepts_bytearray_and_memoryview() -> None:
    p = WebSocketProtocol()
    data = frame(OP_TEXT, b"abc")
    assert p.receive_data(bytearray(data)) == [Message("abc")]
    assert p.receive_data(memoryview(data)) == [Message("abc")]  # type: ignore[arg-type]


def test_large_payload_unmasks_correctly_in_odd_chunks() -> None:
    data = os.urandom(1 << 20)
    raw = frame(OP_BINARY, data, mask=b"\x01\x82\x43\xc4")
    p = WebSocketProtocol()
    events: list[Event] = []
    for i in range(0, len(raw), 65_537):
        events.extend(p.receive_data(raw[i : i + 65_537]))
    assert events == [Message(data)]


def test_empty_receive() -> None:
    assert WebSocketProtocol().receive_data(b"") == []


# -- protocol violations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(OP_TEXT, b"hi", masked=False), 1002, id="unmasked"),
        pytest.param(frame(OP_PING, masked=False), 1002, id="unmasked-control"),
        pytest.param(frame(OP_TEXT, b"hi", rsv=0x40), 1002, id="rsv1-without-deflate"),
        pytest.param(frame(OP_TEXT, b"hi", rsv=0x20), 1002, id="rsv2"),
        pytest.param(frame(OP_BINARY, b"hi", rsv=0x10), 1002, id="rsv3"),
        pytest.param(frame(OP_PING, rsv=0x40), 1002, id="rsv1-ping"),
        *[pytest.param(frame(op, b"x"), 1002, id=f"opcode-{op}") for op in (3, 4, 5, 6, 7)],
        *[pytest.param(frame(op, b"x"), 1002, id=f"opcode-{op}") for op in (11, 12, 13, 14, 15)],
        pytest.param(frame(OP_PING, b"x" * 126), 1002, id="ping-too-long"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124), 1002, id="close-too-long"),
        pytest.param(frame(OP_PING, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(OP_CONTINUATION, b"x"), 1002, id="continuation-without-message"),
        pytest.param(
            frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"),
            1002,
            id="new-message-in-fragments",
        ),
        pytest.param(
            frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b", fin=False),
            1002,
            id="new-binary-in-fragments",
        ),
        pytest.param(frame(OP_CLOSE, b"\x03"), 1002, id="close-one-byte"),
        pytest.param(frame(OP_TEXT, b"\xff"), 1007, id="bad-utf8"),
        pytest.param(frame(OP_TEXT, "é".encode()[:1]), 1007, id="truncated-utf8"),
        pytest.param(frame(OP_TEXT, b"\xed\xa0\x80"), 1007, id="surrogate-utf8"),
        pytest.param(
            frame(OP_CLOSE, close_payload(1000, b"\xff")), 1007, id="bad-utf8-close-reason"
        ),
        pytest.param(
            bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + b"mask", 1002, id="64-bit-top-bit"
        ),
    ],
)
def test_violations(data: bytes, code: int) -> None:
    p = WebSocketProtocol()
    events = p.receive_data(frame(OP_TEXT, b"before") + data + frame(OP_TEXT, b"after"))
    assert events[:-1] == [Message("before")]
    assert failure(events).code == code
    assert p.close_code == code
    # Reading has stopped for good.
    assert p.receive_data(frame(OP_TEXT, b"later")) == []
    # Same verdict when the bytes trickle in.
    assert failure(feed_bytewise(WebSocketProtocol(), data)).code == code


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_received(code: int) -> None:
    p = WebSocketProtocol()
    assert failure(p.receive_data(frame(OP_CLOSE, close_payload(code)))).code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1012, 1014, 3000, 4999])
def test_valid_close_codes_received(code: int) -> None:
    p = WebSocketProtocol()
    assert p.receive_data(frame(OP_CLOSE, close_payload(code, b"r"))) == [CloseReceived(code, "r")]


def test_invalid_utf8_fails_fast_across_fragments() -> None:
    p = WebSocketProtocol()
    assert p.receive_data(frame(OP_TEXT, "κόσμε".encode(), fin=False)) == []
    # The message is not complete, yet the second fragment cannot be UTF-8 whatever follows.
    events = p.receive_data(frame(OP_CONTINUATION, b"\xce\xba\xf4\x90\x80\x80", fin=False))
    assert failure(events).code == 1007


def test_invalid_utf8_fails_fast_within_a_frame() -> None:
    p = WebSocketProtocol()
    raw = frame(OP_TEXT, b"valid" + b"\xc0\xaf" + b"x" * 1000)
    # Header plus the first few payload bytes: the frame is far from complete.
    assert failure(p.receive_data(raw[: 2 + 2 + 4 + 7])).code == 1007


def test_incomplete_utf8_at_end_of_fragmented_message() -> None:
    p = WebSocketProtocol()
    events = p.receive_data(
        frame(OP_TEXT, b"ok", fin=False) + frame(OP_CONTINUATION, "€".encode()[:2])
    )
    assert failure(events).code == 1007


# -- message size limit ----------------------------------------------------------------------


def test_size_limit_exact_fits() -> None:
    p = WebSocketProtocol(max_message_size=10)
    assert p.receive_data(frame(OP_BINARY, b"x" * 10)) == [Message(b"x" * 10)]


def test_size_limit_checked_from_header_before_payload() -> None:
    p = WebSocketProtocol(max_message_size=1000)
    header = struct.pack("!BBQ", 0x82, 0xFF, 1 << 40) + b"mask"
    events = p.receive_data(header)
    assert failure(events).code == 1009
    p = WebSocketProtocol(max_message_size=1000)
    assert failure(p.receive_data(frame(OP_TEXT, b"x" * 1001)[:20])).code == 1009


def test_size_limit_across_fragments() -> None:
    p = WebSocketProtocol(max_message_size=10)
    assert p.receive_data(frame(OP_TEXT, b"12345", fin=False)) == []
    assert p.receive_data(frame(OP_CONTINUATION, b"12345", fin=False)) == []
    assert failure(p.receive_data(frame(OP_CONTINUATION, b"1")[:6])).code == 1009


def test_no_size_limit() -> None:
    p = WebSocketProtocol(max_message_size=None)
    data = b"x" * (3 << 20)
    assert p.receive_data(frame(OP_BINARY, data)) == [Message(data)]


def test_control_frames_do_not_count_towards_the_limit() -> None:
    p = WebSocketProtocol(max_message_size=4)
    assert p.receive_data(frame(OP_PING, b"x" * 100)) == [Ping(b"x" * 100)]


# -- closing -----------------------------------------------------------------------------------


def test_peer_closes_first() -> None:
    p = WebSocketProtocol()
    events = p.receive_data(
        frame(OP_TEXT, b"last")
        + frame(OP_CLOSE, close_payload(1001, "gone ✓".encode()))
        + frame(OP_TEXT, b"ignored")
    )
    assert events == [Message("last"), CloseReceived(1001, "gone ✓")]
    assert (p.close_code, p.close_reason) == (1001, "gone ✓")
    assert p.state is ProtocolState.OPEN
    assert p.receive_data(frame(OP_TEXT, b"ignored")) == []
    b0, opcode, payload, rest = parse_server_frame(p.encode_close(1000))
    assert (b0, opcode, payload, rest) == (0x88, OP_CLOSE, b"\x03\xe8", b"")
    assert p.state is ProtocolState.CLOSED
    assert (p.close_code, p.close_reason) == (1001, "gone ✓")


def test_empty_close_frame_means_1005() -> None:
    p = WebSocketProtocol()
    assert p.receive_data(frame(OP_CLOSE)) == [CloseReceived(1005, "")]
    # 1005 may not be sent back; answer it with 1000.
    with pytest.raises(LocalProtocolError):
        p.encode_close(1005)
    p.encode_close(1000)
    assert p.state is ProtocolState.CLOSED


def test_we_close_first() -> None:
    p = WebSocketProtocol()
    _b0, opcode, payload, _ = parse_server_frame(p.encode_close(4000, "bye"))
    assert (opcode, payload) == (OP_CLOSE, b"\x0f\xa0bye")
    assert p.state is ProtocolState.CLOSING
    assert (p.close_code, p.close_reason) == (4000, "bye")
    # Data after our close is dropped; control frames still come through.
    events = p.receive_data(
        frame(OP_TEXT, b"dropped")
        + frame(OP_BINARY, b"frag", fin=False)
        + frame(OP_PONG, b"pong")
        + frame(OP_CONTINUATION, b"ment")
        + frame(OP_CLOSE, close_payload(4000))
    )
    assert events == [Pong(b"pong"), CloseReceived(4000, "")]
    assert p.state is ProtocolState.CLOSED
    assert (p.close_code, p.close_reason) == (4000, "bye")
    with pytest.raises(LocalProtocolError):
        p.encode_close()


def test_no_sending_after_close() -> None:
    p = WebSocketProtocol()
    p.encode_close()
    with pytest.raises(LocalProtocolError):
        p.encode_message("late")
    with pytest.raises(LocalProtocolError):
        p.encode_close()


def test_close_after_protocol_failure() -> None:
    p = WebSocketProtocol()
    fail = failure(p.receive_data(frame(OP_TEXT, b"\xff")))
    assert p.state is ProtocolState.OPEN
    _b0, _opcode, payload, _ = parse_server_frame(p.encode_close(fail.code, fail.reason))
    assert payload[:2] == b"\x03\xef"
    assert p.state is ProtocolState.CLOSING
    assert p.close_code == 1007
    with pytest.raises(LocalProtocolError):
        p.encode_close(fail.code)
    assert p.receive_data(frame(OP_CLOSE)) == []


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_encode_close_rejects_codes(code: int) -> None:
    p = WebSocketProtocol()
    with pytest.raises(LocalProtocolError):
        p.encode_close(code)
    assert p.state is ProtocolState.OPEN


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1014, 3000, 4999])
def test_encode_close_accepts_codes(code: int) -> None:
    _, _, payload, _ = parse_server_frame(WebSocketProtocol().encode_close(code))
    assert payload == struct.pack("!H", code)


def test_encode_close_reason_length() -> None:
    assert (
        parse_server_frame(WebSocketProtocol().encode_close(1000, "é" * 61 + "x"))[2][2:]
        == ("é" * 61 + "x").encode()
    )
    with pytest.raises(LocalProtocolError):
        WebSocketProtocol().encode_close(1000, "é" * 62)
    with pytest.raises(LocalProtocolError):
        WebSocketProtocol().encode_close(1000, "x" * 124)


# -- encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_encode_message_lengths(size: int) -> None:
    p = WebSocketProtocol()
    data = os.urandom(size)
    b0, opcode, payload, rest = parse_server_frame(p.encode_message(data))
    assert (b0, opcode, payload, rest) == (0x82, OP_BINARY, data, b"")
    header_len = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(p.encode_message(data)) == header_len + size


def test_encode_message_text_and_bytes_like() -> None:
    p = WebSocketProtocol()
    assert p.encode_message("hé") == b"\x81\x03h\xc3\xa9"
    assert p.encode_message(b"ab") == b"\x82\x02ab"
    assert p.encode_message(bytearray(b"ab")) == b"\x82\x02ab"  # type: ignore[arg-type]
    assert p.encode_message(memoryview(b"ab")) == b"\x82\x02ab"  # type: ignore[arg-type]


def test_encode_ping_pong() -> None:
    p = WebSocketProtocol()
    assert p.encode_ping(b"abc") == b"\x89\x03abc"
    assert p.encode_pong(b"abc") == b"\x8a\x03abc"
    assert p.encode_ping() == b"\x89\x00"
    assert p.encode_pong(b"x" * 125)[:2] == b"\x8a\x7d"
    with pytest.raises(LocalProtocolError):
        p.encode_ping(b"x" * 126)
    with pytest.raises(LocalProtocolError):
        p.encode_pong(b"x" * 126)


def test_encode_frame() -> None:
    assert encode_frame(OP_TEXT, b"a") == b"\x81\x01a"
    assert encode_frame(OP_TEXT, b"a", fin=False) == b"\x01\x01a"
    assert encode_frame(OP_CONTINUATION, b"a", rsv1=True) == b"\xc0\x01a"
    assert encode_frame(OP_BINARY, b"x" * 200)[:4] == b"\x82\x7e\x00\xc8"
    with pytest.raises(ValueError):
        encode_frame(16, b"")


def test_encode_broadcast_matches_uncompressed_protocol() -> None:
    p = WebSocketProtocol()
    assert p.shares_encoding
    for data in ("", "hé", "x" * 1000, b"", b"\x00" * 70_000):
        assert encode_broadcast(data) == p.encode_message(data)
        assert encode_broadcast(data) == WebSocketProtocol().encode_message(data)


def test_server_frames_roundtrip_through_our_own_parser_shape() -> None:
    # A server frame is a client frame without the mask: parse it back with the test helper.
    p = WebSocketProtocol()
    b0, opcode, payload, _ = parse_server_frame(p.encode_message("x" * 300))
    assert (b0, opcode, payload) == (0x81, OP_TEXT, b"x" * 300)


# -- permessage-deflate ----------------------------------------------------------------------

TAKEOVER = DeflateParameters(
    server_no_context_takeover=False,
    client_no_context_takeover=False,
    server_max_window_bits=15,
    client_max_window_bits=15,
)
NO_TAKEOVER = DeflateParameters(
    server_no_context_takeover=True,
    client_no_context_takeover=True,
    server_max_window_bits=15,
    client_max_window_bits=15,
)
TEXT = "the quick brown fox jumps over the lazy dog; " * 20


def compress(compressor: zlib._Compress, data: bytes) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def decompress(decompressor: zlib._Decompress, payload: bytes) -> bytes:
    return decompressor.decompress(payload + b"\x00\x00\xff\xff")


def test_compressed_messages_with_context_takeover() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    assert not p.shares_encoding
    c = zlib.compressobj(wbits=-15)
    first = compress(c, TEXT.encode())
    second = compress(c, TEXT.encode())
    assert len(second) < len(first)  # the second refers back into the first
    events = p.receive_data(
        frame(OP_TEXT, first, rsv=0x40)
        + frame(OP_BINARY, b"plain")
        + frame(OP_TEXT, second, rsv=0x40)
    )
    assert events == [Message(TEXT), Message(b"plain"), Message(TEXT)]
    bin_payload = compress(c, b"\x00\x01" * 300)
    assert feed_bytewise(p, frame(OP_BINARY, bin_payload, rsv=0x40)) == [Message(b"\x00\x01" * 300)]


def test_compressed_messages_without_context_takeover() -> None:
    p = WebSocketProtocol(deflate=NO_TAKEOVER)
    for _ in range(3):
        payload = compress(zlib.compressobj(wbits=-15), TEXT.encode())
        assert p.receive_data(frame(OP_TEXT, payload, rsv=0x40)) == [Message(TEXT)]


def test_compressed_fragmented_message() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    payload = compress(zlib.compressobj(wbits=-15), TEXT.encode())
    third = len(payload) // 3
    stream = (
        frame(OP_TEXT, payload[:third], rsv=0x40, fin=False)
        + frame(OP_PING, b"!")
        + frame(OP_CONTINUATION, payload[third : 2 * third], fin=False)
        + frame(OP_CONTINUATION, payload[2 * third :])
    )
    assert p.receive_data(stream) == [Ping(b"!"), Message(TEXT)]


def test_compressed_empty_message() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    payload = compress(zlib.compressobj(wbits=-15), b"")
    assert p.receive_data(frame(OP_TEXT, payload, rsv=0x40)) == [Message("")]
    assert p.receive_data(frame(OP_BINARY, b"\x00", rsv=0x40)) == [Message(b"")]


def test_rsv1_only_on_first_data_frame() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    c = zlib.compressobj(wbits=-15)
    payload = compress(c, b"abc")
    stream = frame(OP_TEXT, payload, rsv=0x40, fin=False) + frame(OP_CONTINUATION, b"", rsv=0x40)
    assert failure(p.receive_data(stream)).code == 1002
    p = WebSocketProtocol(deflate=TAKEOVER)
    assert failure(p.receive_data(frame(OP_PING, b"", rsv=0x40))).code == 1002
    p = WebSocketProtocol(deflate=TAKEOVER)
    assert failure(p.receive_data(frame(OP_TEXT, payload, rsv=0x60))).code == 1002


def test_compressed_invalid_utf8() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    payload = compress(zlib.compressobj(wbits=-15), b"ok\xff")
    assert failure(p.receive_data(frame(OP_TEXT, payload, rsv=0x40))).code == 1007


def test_corrupt_compressed_data() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    assert failure(p.receive_data(frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=0x40))).code == 1002


def test_decompression_bomb_single_frame() -> None:
    bomb = compress(zlib.compressobj(wbits=-15), b"\x00" * (50 << 20))
    assert len(bomb) < 100_000
    p = WebSocketProtocol(max_message_size=1 << 20, deflate=TAKEOVER)
    assert failure(p.receive_data(frame(OP_BINARY, bomb, rsv=0x40))).code == 1009


def test_decompression_bomb_across_fragments_and_chunks() -> None:
    bomb = compress(zlib.compressobj(wbits=-15), b"a" * (4 << 20))
    half = len(bomb) // 2
    stream = frame(OP_TEXT, bomb[:half], rsv=0x40, fin=False) + frame(OP_CONTINUATION, bomb[half:])
    p = WebSocketProtocol(max_message_size=1 << 20, deflate=TAKEOVER)
    events: list[Event] = []
    for i in range(0, len(stream), 500):
        events.extend(p.receive_data(stream[i : i + 500]))
    assert failure(events).code == 1009


def test_decompressed_size_exactly_at_limit() -> None:
    data = b"z" * 5000
    payload = compress(zlib.compressobj(wbits=-15), data)
    p = WebSocketProtocol(max_message_size=5000, deflate=TAKEOVER)
    assert p.receive_data(frame(OP_BINARY, payload, rsv=0x40)) == [Message(data)]
    p = WebSocketProtocol(max_message_size=4999, deflate=TAKEOVER)
    assert failure(p.receive_data(frame(OP_BINARY, payload, rsv=0x40))).code == 1009


def test_server_compression_with_context_takeover() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER)
    d = zlib.decompressobj(wbits=-15)
    sizes = []
    for _ in range(2):
        b0, opcode, payload, _ = parse_server_frame(p.encode_message(TEXT))
        assert (b0, opcode) == (0xC1, OP_TEXT)
        assert decompress(d, payload) == TEXT.encode()
        sizes.append(len(payload))
    assert sizes[1] < sizes[0]


def test_server_compression_without_context_takeover() -> None:
    p = WebSocketProtocol(deflate=NO_TAKEOVER)
    first = p.encode_message(TEXT.encode())
    second = p.encode_message(TEXT.encode())
    assert first == second
    b0, opcode, payload, _ = parse_server_frame(second)
    assert (b0, opcode) == (0xC2, OP_BINARY)
    assert decompress(zlib.decompressobj(wbits=-15), payload) == TEXT.encode()


def test_small_messages_are_not_compressed() -> None:
    p = WebSocketProtocol(deflate=TAKEOVER, compress_min_size=10)
    assert p.encode_message("123456789") == b"\x81\x09123456789"
    assert p.encode_message("123456789") == encode_broadcast("123456789")
    assert p.encode_message("1234567890")[0] == 0xC1
    assert WebSocketProtocol(deflate=TAKEOVER).encode_message("x" * 127)[0] == 0x81
    assert WebSocketProtocol(deflate=TAKEOVER).encode_message("x" * 128)[0] == 0xC1


def test_uncompressed_broadcast_frame_is_valid_alongside_compression() -> None:
    # Interleaving an uncompressed frame must not disturb the compression context.
    p = WebSocketProtocol(deflate=TAKEOVER)
    d = zlib.decompressobj(wbits=-15)
    assert decompress(d, parse_server_frame(p.encode_message(TEXT))[2]) == TEXT.encode()
    assert parse_server_frame(encode_broadcast(TEXT))[0] == 0x81
    assert decompress(d, parse_server_frame(p.encode_message(TEXT))[2]) == TEXT.encode()


def test_size_limit_on_a_complete_frame() -> None:
    p = WebSocketProtocol(max_message_size=10)
    events = p.receive_data(frame(OP_TEXT, b"ok") + frame(OP_TEXT, b"x" * 11))
    assert events[0] == Message("ok")
    assert failure(events).code == 1009


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        WebSocketProtocol(max_message_size=-1)
    assert WebSocketProtocol().encode_ping(bytearray(b"a")) == b"\x89\x01a"  # type: ignore[arg-type]
    assert encode_frame(OP_BINARY, bytearray(b"a")) == b"\x82\x01a"  # type: ignore[arg-type]


# -- large binary messages: unmasked into place as they come ---------------------------------


@pytest.mark.parametrize("size", [65535, 65536, 300_001])
def test_a_large_binary_frame_split_across_reads_arrives_whole(size: int) -> None:
    # From 64 KiB on, a binary frame that spans reads goes into a MessageBuffer, not pieces.
    rng = random.Random(size)
    payload = rng.randbytes(size)
    wire = frame(OP_BINARY, payload) + frame(OP_PING, b"after")
    p = WebSocketProtocol()
    events: list[Event] = []
    pos = 0
    while pos < len(wire):
        step = rng.choice((1, 3, 4096, 65536, 100_000))
        events += p.receive_data(wire[pos : pos + step])
        pos += step
    assert events == [Message(payload), Ping(b"after")]
    assert type(events[0].data) is bytes  # type: ignore[union-attr]
    # The next message starts afresh.
    assert p.receive_data(frame(OP_BINARY, b"next")) == [Message(b"next")]


def test_a_large_frame_without_memory_for_its_buffer_comes_in_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(size: int) -> masking.MessageBufferType:
        raise MemoryError

    monkeypatch.setattr(websocket_module, "MessageBuffer", no_memory)
    payload = bytes(range(256)) * 1024
    wire = frame(OP_BINARY, payload)
    p = WebSocketProtocol()
    assert p.receive_data(wire[:100_000]) == []
    assert p.receive_data(wire[100_000:]) == [Message(payload)]


def test_a_large_frame_over_the_limit_fails_on_its_header() -> None:
    p = WebSocketProtocol(max_message_size=100_000)
    header = frame(OP_BINARY, bytes(100_001))[:14]  # the header and mask only
    assert failure(p.receive_data(header)).code == 1009


def test_a_large_frame_cut_off_by_our_close_is_not_delivered() -> None:
    payload = bytes(range(256)) * 400
    wire = frame(OP_BINARY, payload)
    p = WebSocketProtocol()
    assert p.receive_data(wire[:50_000]) == []
    p.encode_close(1001)
    assert p.receive_data(wire[50_000:] + frame(OP_CLOSE, close_payload(1000))) == [
        CloseReceived(1000, "")
    ]


def test_after_a_large_frame_no_message_is_in_progress() -> None:
    p = WebSocketProtocol()
    wire = frame(OP_BINARY, bytes(70_000))
    assert p.receive_data(wire[:30_000]) == []
    events = p.receive_data(wire[30_000:] + frame(OP_CONTINUATION, b"x"))
    assert events[0] == Message(bytes(70_000))
    assert failure(events).code == 1002  # a continuation of nothing


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000])
@pytest.mark.parametrize("data_type", [bytes, str])
def test_message_parts_join_to_the_encoded_message(size: int, data_type: type) -> None:
    data = "é" * (size // 2) if data_type is str else os.urandom(size)
    header, payload = WebSocketProtocol().encode_message_parts(data)
    assert header + payload == WebSocketProtocol().encode_message(data)
    assert payload == (data.encode() if isinstance(data, str) else data)
    compressing = WebSocketProtocol(deflate=NO_TAKEOVER)
    header, payload = compressing.encode_message_parts(data)
    assert header + payload == WebSocketProtocol(deflate=NO_TAKEOVER).encode_message(data)
    after_close = WebSocketProtocol()
    after_close.encode_close()
    with pytest.raises(LocalProtocolError):
        after_close.encode_message_parts(data)
