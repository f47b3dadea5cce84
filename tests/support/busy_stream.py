"""A client that keeps up with a stream that never pauses, and must still be heard.

The server stops reading a connection while more than a quarter of its write limit is queued.
:func:`read_steadily_then_close` keeps that queue high and never empty, reads everything as it
comes, pings and closes: over TCP and TLS alike, the pong and the close must be answered.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong

from ratchetpy import Connection, MessageComponent

#: Above what the kernel's socket buffers take at once (4 MiB at most on Linux), so that the
#: queue really never empties while the client reads.
WRITE_LIMIT = 64 * 2**20
_CHUNK = b"z" * 16384


class Opened(MessageComponent):
    """Notes its one connection; the test writes to it."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.opened = trio.Event()

    def on_open(self, conn: Connection) -> None:
        self.conn = conn
        self.opened.set()


@dataclass
class Outcome:
    close_code: int
    pongs: int
    received: int


async def _produce(conn: Connection, limit: int) -> None:
    # Between a quarter and a half of the limit: never empty, never over the limit.
    while not conn.closed:
        while conn.buffered_amount < limit // 2 and not conn.closed:
            conn.send(_CHUNK)
        await trio.sleep(0.001)


async def read_steadily_then_close(
    stream: trio.abc.Stream, early: bytes, component: Opened, nursery: trio.Nursery
) -> Outcome:
    """Past the handshake on ``stream``: read 1 MiB, ping, read another, close, and read on
    until the server's close frame comes (at most 5 s)."""
    with trio.fail_after(5):
        await component.opened.wait()
    conn = component.conn
    assert conn is not None
    nursery.start_soon(_produce, conn, WRITE_LIMIT)
    # wsproto's client side of an open connection: an independent parser of what we get.
    client = WsprotoConnection(ConnectionType.CLIENT, trailing_data=early)
    received = pongs = 0
    pinged = closing = False
    answer: CloseConnection | None = None
    with trio.fail_after(5):
        while answer is None:
            data = await stream.receive_some(65536)
            assert data, "the server hung up without answering the close"
            client.receive_data(data)
            for event in client.events():
                if isinstance(event, BytesMessage):
                    received += len(event.data)
                elif isinstance(event, Pong):
                    pongs += 1
                elif isinstance(event, CloseConnection):
                    answer = event
            if not pinged and received >= 2**20:
                # Sent while the queue is high: having read it, the server stops reading.
                await stream.send_all(client.send(Ping(b"are you there")))
                pinged = True
            if not closing and received >= 2 * 2**20:
                await stream.send_all(client.send(CloseConnection(code=1000)))
                closing = True
    return Outcome(close_code=answer.code, pongs=pongs, received=received)
