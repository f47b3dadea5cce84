"""Helpers for raw-socket tests: frame builders and readers."""

from __future__ import annotations

import base64
import os
import struct

import trio


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a client sends it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


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
