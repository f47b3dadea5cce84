"""Raw WebSocket bytes for protocol tests: the one client-frame builder, a server-frame parser,
and readers for tests over real sockets."""

from __future__ import annotations

import base64
import os
import struct

import trio


def xor(data: bytes, mask: bytes) -> bytes:
    """``data`` masked (or unmasked) with the 4-byte ``mask`` (RFC 6455 5.3)."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length_form: int | None = None,
    mask: bytes | None = None,
) -> bytes:
    """A frame as a client puts it on the wire, by hand: ``rsv`` holds the RSV bits as they
    sit in the first byte (0x40 RSV1, 0x20 RSV2, 0x10 RSV3); ``length_form`` forces a 7-, 16-
    or 64-bit length; ``masked=False`` leaves the mask out (a protocol error from a client)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 0x10000 else 64)
    m = 0x80 if masked else 0
    if form == 7:
        header = bytes((b0, m | n))
    elif form == 16:
        header = struct.pack("!BBH", b0, m | 126, n)
    else:
        header = struct.pack("!BBQ", b0, m | 127, n)
    if not masked:
        return header + payload
    mask = mask if mask is not None else os.urandom(4)
    return header + mask + xor(payload, mask)


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames into (opcode, payload); ignores a trailing partial frame."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        opcode = data[pos] & 0x0F
        length = data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        if pos + length > len(data):
            break
        frames.append((opcode, data[pos : pos + length]))
        pos += length
    return frames


async def read_until_closed(stream: trio.SocketStream, *, limit: int = 1 << 22) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    total = 0
    with trio.fail_after(10):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
            assert total <= limit
    return b"".join(chunks)


async def read_http_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """Read an HTTP response head; return (head, bytes that followed it)."""
    buf = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            assert data, f"closed before the end of the response head: {buf!r}"
            buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def upgrade_request(path: str = "/", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def raw_websocket(port: int, path: str = "/") -> tuple[trio.SocketStream, bytes]:
    """Open a WebSocket with a hand-made handshake; returns the stream and any early bytes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(upgrade_request(path))
    head, rest = await read_http_head(stream)
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream, rest
