"""What the soak's clients speak by hand: HTTP GETs, ``/metrics`` parsing, and raw
WebSocket frames (for the slow consumers and the malformed frames)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families
from soak_config import HOST

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- metrics ---------------------------------------------------------------------------------


async def http_get(port: int, path: str, timeout: float = 10.0) -> str:
    """GET over plain HTTP/1.1, the body as text; raises on anything but 200."""
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            data = b""
            length: int | None = None
            while True:
                if length is None and b"\r\n\r\n" in data:
                    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
                    status = head.split(" ", 2)[1]
                    if status != "200":
                        raise RuntimeError(f"GET {path}: {head.splitlines()[0]}")
                    match = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    length = len(head) + 4 + int(match.group(1)) if match else -1
                if length is not None and length >= 0 and len(data) >= length:
                    break
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def parse_metrics(text: str) -> dict[str, float]:
    """``{"name{label=value,...}": value}`` of every sample, the worker label left out."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(
                f"{key}={value}" for key, value in sorted(sample.labels.items()) if key != "worker"
            )
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def by_label(metrics: dict[str, float], name: str, label: str) -> dict[str, int]:
    prefix = f"{name}{{{label}="
    return {
        key[len(prefix) : -1]: int(value)
        for key, value in metrics.items()
        if key.startswith(prefix)
    }


def server_view(plain: dict[str, float], tls: dict[str, float]) -> dict[str, Any]:
    """What one sample keeps of both servers' metrics."""

    def both(name: str) -> int:
        return int(plain.get(name, 0) + tls.get(name, 0))

    def merged(name: str, label: str) -> dict[str, int]:
        out = Counter(by_label(plain, name, label))
        out.update(by_label(tls, name, label))
        return dict(sorted(out.items()))

    plain_kinds = by_label(plain, "ratchetpy_connections", "kind")
    tls_kinds = by_label(tls, "ratchetpy_connections", "kind")
    return {
        "ws_plain": plain_kinds.get("websocket", 0),
        "ws_tls": tls_kinds.get("websocket", 0),
        "http": plain_kinds.get("http", 0) + tls_kinds.get("http", 0),
        "raw": plain_kinds.get("raw", 0) + tls_kinds.get("raw", 0),
        "tasks": int(plain.get("ratchetpy_tasks", 0)),
        "timers": both("ratchetpy_timers"),
        "metric_rss": int(plain.get("process_resident_memory_bytes", 0)),
        "metric_fds": int(plain.get("process_open_fds", 0)),
        "accepted": both("ratchetpy_connections_accepted_total"),
        "messages_in": both("ratchetpy_websocket_messages_received_total"),
        "messages_out": both("ratchetpy_websocket_messages_sent_total"),
        "slow_consumer_closes": both("ratchetpy_slow_consumer_closes_total"),
        "handler_errors": both("ratchetpy_handler_errors_total"),
        "close_sent": merged("ratchetpy_websocket_close_frames_sent_total", "code"),
        "close_received": merged("ratchetpy_websocket_close_frames_received_total", "code"),
        "wamp_sessions": int(plain.get("ratchetpy_wamp_sessions", 0)),
        "wamp_subscriptions": int(plain.get("ratchetpy_wamp_subscriptions", 0)),
        "lag_sum": plain.get("ratchetpy_scheduler_lag_seconds_sum", 0.0),
        "lag_count": plain.get("ratchetpy_scheduler_lag_seconds_count", 0.0),
        "lag_buckets": by_label(plain, "ratchetpy_scheduler_lag_seconds_bucket", "le"),
    }


# -- WebSocket by hand (slow consumers, malformed frames) ------------------------------------


class SoakError(Exception):
    """Something a client saw that its kind should not."""


def mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """A client frame; ``rsv`` is the three reserved bits (4 = RSV1)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


#: Frames the server must answer with 1002 (protocol error), by name.
MALFORMED: dict[str, Callable[[], bytes]] = {
    "unmasked frame": lambda: client_frame(0x1, b"not masked", masked=False),
    "reserved opcode": lambda: client_frame(0x3, b"opcode 3"),
    "reserved bits": lambda: client_frame(0x1, b"RSV1 without an extension", rsv=4),
    "fragmented ping": lambda: client_frame(0x9, b"ping", fin=False),
    "long ping": lambda: client_frame(0x9, b"p" * 126),
    "stray continuation": lambda: client_frame(0x0, b"continued"),
    "one-byte close": lambda: client_frame(0x8, b"\x03"),
    "close code 1005": lambda: client_frame(0x8, struct.pack("!H", 1005)),
}


class FrameReader:
    """Server frames (unmasked) out of a byte stream."""

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> tuple[int, bytes] | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        if b1 & 0x80:
            raise SoakError("the server sent a masked frame")
        n, start = b1 & 0x7F, pos + 2
        if n == 126:
            if len(buf) - pos < 4:
                return None
            n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
        elif n == 127:
            if len(buf) - pos < 10:
                return None
            n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
        if len(buf) - start < n:
            return None
        self._pos = start + n
        return b0 & 0x0F, bytes(buf[start : start + n])


def close_code_of(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005


async def raw_connect(
    port: int,
    context: ssl.SSLContext | None,
    *,
    rcvbuf: int | None = None,
    mss: int | None = None,
) -> trio.abc.Stream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        await sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    stream: trio.abc.Stream = trio.SocketStream(sock)
    if context is not None:
        tls = trio.SSLStream(stream, context, server_hostname=HOST, https_compatible=True)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        stream = tls
    return stream


async def ws_handshake(stream: trio.abc.Stream, port: int, path: str) -> FrameReader:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send_all(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise SoakError("EOF during the handshake")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101 "):
        raise SoakError(f"handshake refused: {lines[0]}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise SoakError("wrong Sec-WebSocket-Accept")
    return FrameReader(rest)


async def read_frame(
    stream: trio.abc.Stream, reader: FrameReader, timeout: float
) -> tuple[int, bytes] | None:
    """The next frame, or None at EOF (or a reset)."""
    with trio.fail_after(timeout):
        while (frame := reader.next()) is None:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not data:
                return None
            reader.feed(data)
        return frame


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
