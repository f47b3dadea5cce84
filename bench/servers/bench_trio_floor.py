"""Benchmark server: the floor trio sets, with as little WebSocket as will do.

Echo only, on 127.0.0.1:PORT. Each connection is one trio task doing what ratchetpy's reader
does at the bottom (``wait_readable``, a non-blocking ``recv``, a non-blocking ``send``), with
a minimal WebSocket around it: the handshake answered from the key, then masked client frames
unmasked and echoed unfragmented. No checks, no limits, no close handshake, no
fragmentation, no control frames: not a server to use, only the cost of trio's scheduling and
the syscalls below any WebSocket library. Run by bench/wsload_run.py (``trio-floor``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import struct

import trio

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(request: bytes) -> bytes:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + _GUID).digest())
    raise ValueError("no Sec-WebSocket-Key")


def echo_frames(buf: bytes) -> tuple[bytes, bytes]:
    """The server frames echoing every whole client frame in ``buf``, and what is left."""
    out = []
    pos = 0
    end = len(buf)
    while end - pos >= 6:
        b0, b1 = buf[pos], buf[pos + 1] & 0x7F
        hp = pos + 2
        if b1 == 126:
            (b1,) = struct.unpack_from("!H", buf, hp)
            hp += 2
        elif b1 == 127:
            (b1,) = struct.unpack_from("!Q", buf, hp)
            hp += 8
        if end - hp < 4 + b1:
            break
        mask = buf[hp : hp + 4]
        hp += 4
        key = int.from_bytes((mask * (b1 // 4 + 1))[:b1], "little")
        payload = (int.from_bytes(buf[hp : hp + b1], "little") ^ key).to_bytes(b1, "little")
        if b1 < 126:
            out.append(bytes((b0, b1)) + payload)
        elif b1 < 65536:
            out.append(struct.pack("!BBH", b0, 126, b1) + payload)
        else:
            out.append(struct.pack("!BBQ", b0, 127, b1) + payload)
        pos = hp + b1
    return b"".join(out), buf[pos:]


def send_all_nonblocking(sock: socket.socket, data: bytes) -> bytes:
    try:
        sent = sock.send(data)
    except BlockingIOError:
        return data
    return data[sent:]


async def serve_one(sock: socket.socket) -> None:
    with sock:
        request = b""
        while b"\r\n\r\n" not in request:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            if not data:
                return
            request += data
        head, _, buf = request.partition(b"\r\n\r\n")
        sock.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(head) + b"\r\n\r\n"
        )
        pending = b""
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            reply, buf = echo_frames(buf + data if buf else data)
            pending = send_all_nonblocking(sock, pending + reply if pending else reply)
            while pending:
                await trio.lowlevel.wait_writable(sock)
                pending = send_all_nonblocking(sock, pending)


async def main(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    async with trio.open_nursery() as nursery:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(serve_one, sock)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo"], default="echo")
    args = parser.parse_args()
    trio.run(main, args.port)
