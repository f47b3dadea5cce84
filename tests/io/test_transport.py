"""TcpConnection's write path on a real socket pair, without a server around it."""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing

from ratchetpy.exceptions import ConnectionClosed
from ratchetpy.io.transport import Hub, TcpConnection


def open_pair(hub: Hub) -> tuple[TcpConnection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return TcpConnection(hub, ours, 1, "peer"), theirs


async def test_queued_writes_go_out_in_one_send_per_flush() -> None:
    hub = Hub(write_limit=2**20, close_timeout=10)
    conn, peer = open_pair(hub)
    with peer:
        assert conn.write(b"one ") and conn.write(b"two")
        assert conn.buffered_amount == 7
        hub.flush_all()
        assert conn.buffered_amount == 0
        assert peer.recv(100) == b"one two"
        assert hub.counters.bytes_out == 7
        conn.finish()


async def test_send_takes_text_as_utf8_and_bytes_and_refuses_the_rest() -> None:
    hub = Hub(write_limit=2**20, close_timeout=10)
    conn, peer = open_pair(hub)
    with peer:
        conn.send("é")
        conn.send(bytearray(b"!"))
        with pytest.raises(TypeError, match="not dict"):
            conn.send({"a": 1})  # type: ignore[arg-type]
        hub.flush_all()
        assert peer.recv(100) == "é!".encode()
        conn.finish()


async def test_a_write_the_kernel_refuses_drops_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(write_limit=2**20, close_timeout=10)
    conn, peer = open_pair(hub)
    peer.close()  # the next send() fails with EPIPE
    conn.write(b"for nobody")
    with caplog.at_level(logging.DEBUG, logger="ratchetpy.io"):
        hub.flush_all()
    assert conn.aborted and conn.closed
    assert "connection #1: write failed" in caplog.text
    assert not conn.write(b"more"), "a dropped connection queues nothing"
    with pytest.raises(ConnectionClosed):
        await conn.drain()  # what was queued is lost, and drain() says so
    conn.finish()


async def test_wait_taken_returns_as_the_peer_reads_though_the_queue_never_empties() -> None:
    hub = Hub(write_limit=2**30, close_timeout=10)
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    conn = TcpConnection(hub, ours, 1, "peer")
    resumed = trio.Event()

    async def reader() -> None:
        await conn.wait_taken(100_000)
        resumed.set()

    with peer:
        async with trio.open_nursery() as nursery:
            hub.nursery = nursery
            conn.write(b"x" * 1_000_000)
            hub.flush_all()  # the kernel takes a little; a drain task waits for the rest
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            taken = 0
            while not resumed.is_set():
                taken += len(await trio.to_thread.run_sync(peer.recv, 65536))
                conn.write(b"y" * 65536)  # topped up as it goes: never empty
                await trio.testing.wait_all_tasks_blocked()
            assert 100_000 <= taken < 1_000_000
            assert conn.buffered_amount > 0
            # A dropped connection wakes the reader too.
            resumed = trio.Event()
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            conn.abort()
            with trio.fail_after(5):
                await resumed.wait()
    conn.finish()


def small_buffers_pair(hub: Hub) -> tuple[TcpConnection, socket.socket]:
    """A pair whose kernel buffers take only a few KiB at a time, so large writes are partial."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    return TcpConnection(hub, ours, 1, "peer"), peer


async def read_all(conn: TcpConnection, peer: socket.socket, size: int) -> bytes:
    """What the peer receives until ``size`` bytes, while the drain task writes the rest."""
    received = bytearray()
    with trio.fail_after(10):
        while len(received) < size:
            received += await trio.to_thread.run_sync(peer.recv, 65536)
            await trio.testing.wait_all_tasks_blocked()
    assert conn.buffered_amount == 0
    return bytes(received)


async def test_a_frame_written_apart_goes_out_whole_and_urgent_frames_only_around_it() -> None:
    hub = Hub(write_limit=2**30, close_timeout=10)
    conn, peer = small_buffers_pair(hub)
    payload = bytes(range(256)) * 1024
    with peer:
        async with trio.open_nursery() as nursery:
            hub.nursery = nursery
            conn.write(b"first|")
            assert conn.write_frame(b"HEAD|", payload)
            conn.write(b"|last")
            conn.write_urgent(b"<ping before>")  # nothing started: ahead of everything
            hub.flush_all()  # the kernel takes a few KiB: the frame has started
            conn.write_urgent(b"<ping>")  # after the started frame, whole, and before |last
            expected = b"<ping before>first|HEAD|" + payload + b"<ping>|last"
            assert conn.buffered_amount < len(expected)
            assert await read_all(conn, peer, len(expected)) == expected
        assert hub.counters.bytes_out == len(expected)
    conn.finish()


async def test_an_urgent_frame_after_a_sent_header_waits_for_its_payload() -> None:
    hub = Hub(write_limit=2**30, close_timeout=10)
    conn, peer = small_buffers_pair(hub)
    payload = b"p" * 200_000
    with peer:
        async with trio.open_nursery() as nursery:
            hub.nursery = nursery
            conn.write_frame(b"HEAD|", payload)
            conn.write(b"|dropped")
            hub.flush_all()
            # Only the payload's memoryview is left of the frame (or part of it): the close
            # frame goes behind it, and what is queued after the frame is discarded.
            conn.write_urgent(b"<close>", discard_queued=True)
            expected = b"HEAD|" + payload + b"<close>"
            assert await read_all(conn, peer, len(expected)) == expected
    conn.finish()


async def test_a_long_queue_is_gathered_in_order_without_joining_it() -> None:
    # More chunks than one sendmsg() takes (IOV_MAX), and more bytes than the kernel takes.
    hub = Hub(write_limit=2**30, close_timeout=10)
    conn, peer = small_buffers_pair(hub)
    chunks = [f"{i:05d}".encode() * 20 for i in range(3000)]
    with peer:
        async with trio.open_nursery() as nursery:
            hub.nursery = nursery
            for chunk in chunks:
                conn.write(chunk)
            conn.write_frame(b"H", b"x" * 70_000)
            hub.flush_all()
            expected = b"".join(chunks) + b"H" + b"x" * 70_000
            assert await read_all(conn, peer, len(expected)) == expected
    conn.finish()


async def test_write_frame_after_the_socket_is_released_queues_nothing() -> None:
    hub = Hub(write_limit=2**20, close_timeout=10)
    conn, peer = open_pair(hub)
    with peer:
        conn.abort()
        assert not conn.write_frame(b"H", b"payload")
        assert conn.buffered_amount == 0
    conn.finish()
