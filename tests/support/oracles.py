"""The oracles of the WebSocket codec's differential tests (tests/differential/test_codec_*.py).

The oracles are two independent WebSocket implementations, run sans-IO in this process: wsproto
(a ``Connection``, server or client side) and websockets (``ServerProtocol``,
``ClientProtocol``). Both are widely deployed and were written without reference to ratchetpy.
:class:`WsprotoReader` and :class:`WebsocketsReader` fold what either one decodes into an
:class:`Outcome` (the messages and control frames, then how reading ended), the form in which
ratchetpy's ``WebSocketProtocol`` is compared with them; :func:`run_ratchetpy`,
:func:`run_wsproto` and :func:`run_websockets` decode one client byte stream with each of the
three, read by read. :class:`WireFrame` is a client frame as the wire will say it, mutations
included.

Next to it: :mod:`support.known_differences` (every allowed disagreement with an oracle, and
why ratchetpy's answer is right) and :mod:`support.client_streams` (the hypothesis strategies
that build what a wsproto client sends).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.utils import apply_mask
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.events import Ping as WsprotoPing
from wsproto.events import Pong as WsprotoPong
from wsproto.extensions import PerMessageDeflate

from ratchetpy.protocol import (
    CloseReceived,
    DeflateParameters,
    Message,
    Ping,
    Pong,
    ProtocolFailure,
    WebSocketProtocol,
)
from support.frames import client_frame, parse_server_frames

# -- outcomes: what an implementation made of a stream, in a form all three can be compared in --

Item = tuple[str, str | bytes]  # ("text", str), ("binary", bytes), ("ping", bytes), ("pong", bytes)


@dataclass(frozen=True)
class End:
    """How reading ended: still open, the peer's close frame, or a protocol failure."""

    kind: Literal["open", "close", "fail"]
    code: int = 0
    text: str = ""  # the close reason, or the implementation's own explanation of a failure

    def key(self) -> tuple[object, ...]:
        if self.kind == "open":
            return ("open",)
        if self.kind == "close":
            return ("close", self.code, self.text)
        # Explanations are each implementation's own wording; only the code goes on the wire.
        return ("fail", self.code)


STILL_OPEN = End("open")


@dataclass(frozen=True)
class Outcome:
    events: tuple[Item, ...]
    end: End

    def key(self) -> tuple[object, ...]:
        return (self.events, self.end.key())


# -- the three implementations -----------------------------------------------------------------


def run_ratchetpy(
    chunks: Sequence[bytes], deflate: DeflateParameters | None, max_message_size: int | None
) -> Outcome:
    proto = WebSocketProtocol(max_message_size=max_message_size, deflate=deflate)
    items: list[Item] = []
    end = STILL_OPEN
    for chunk in chunks:
        for ev in proto.receive_data(chunk):
            assert end is STILL_OPEN, f"{ev!r} after the end of reading ({end!r})"
            if isinstance(ev, Message):
                items.append(("text", ev.data) if isinstance(ev.data, str) else ("binary", ev.data))
            elif isinstance(ev, Ping):
                items.append(("ping", ev.payload))
            elif isinstance(ev, Pong):
                items.append(("pong", ev.payload))
            elif isinstance(ev, CloseReceived):
                end = End("close", ev.code, ev.reason)
            else:
                assert isinstance(ev, ProtocolFailure)
                end = End("fail", ev.code, ev.reason)
    return Outcome(tuple(items), end)


class WsprotoReader:
    """What a wsproto ``Connection`` (either side) decodes from the data fed to it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._items: list[Item] = []
        self._texts: list[str] = []
        self._blobs: list[bytes] = []
        self.end = STILL_OPEN

    def feed(self, data: bytes) -> None:
        if self.end is not STILL_OPEN:
            return
        self.conn.receive_data(data)
        for ev in self.conn.events():
            if isinstance(ev, TextMessage):
                self._texts.append(ev.data)
                if ev.message_finished:
                    self._items.append(("text", "".join(self._texts)))
                    self._texts = []
            elif isinstance(ev, BytesMessage):
                self._blobs.append(bytes(ev.data))
                if ev.message_finished:
                    self._items.append(("binary", b"".join(self._blobs)))
                    self._blobs = []
            elif isinstance(ev, WsprotoPing):
                self._items.append(("ping", bytes(ev.payload)))
            elif isinstance(ev, WsprotoPong):
                self._items.append(("pong", bytes(ev.payload)))
            elif isinstance(ev, CloseConnection):
                # wsproto reports its own parse failures as a CloseConnection too; only a close
                # frame from the peer moves the connection out of OPEN.
                kind: Literal["close", "fail"] = (
                    "fail" if self.conn.state is ConnectionState.OPEN else "close"
                )
                self.end = End(kind, int(ev.code), ev.reason or "")
                return

    def outcome(self) -> Outcome:
        return Outcome(tuple(self._items), self.end)


def wsproto_server_extension(response: str) -> PerMessageDeflate:
    ext = PerMessageDeflate()
    # finalize() reads the agreed parameters from a response header; what it sets does not
    # depend on the side, so it configures the server side as well as the client side.
    ext.finalize(response)
    return ext


def run_wsproto(chunks: Sequence[bytes], response: str | None) -> Outcome:
    extensions = [] if response is None else [wsproto_server_extension(response)]
    reader = WsprotoReader(Connection(ConnectionType.SERVER, extensions=list(extensions)))
    for chunk in chunks:
        reader.feed(chunk)
    return reader.outcome()


# For every websockets protocol object: websockets logs protocol errors, and the internal errors
# some mutated streams cause (see KNOWN_DIFFERENCES), at ERROR with a traceback; the outcome
# already says it.
QUIET_WEBSOCKETS_LOG = logging.getLogger("ratchetpy.tests.differential.websockets")
QUIET_WEBSOCKETS_LOG.addHandler(logging.NullHandler())
QUIET_WEBSOCKETS_LOG.propagate = False


class WebsocketsReader:
    """What a websockets ``Protocol`` (either side, already OPEN) decodes from the data fed to it.

    Like websockets' connection layer, it decodes text when the whole message is in.
    """

    def __init__(self, proto: Protocol) -> None:
        self.proto = proto
        self.sent = bytearray()  # what the protocol answered: pongs, close frames
        self.failed_parsing = False  # the end is websockets' own failure, told in a close frame
        self._items: list[Item] = []
        self._fragments: list[bytes] = []
        self._opcode = Opcode.CONT
        self.end = STILL_OPEN

    def feed(self, data: bytes) -> None:
        if self.end is not STILL_OPEN:
            return
        proto = self.proto
        proto.receive_data(data)
        self.sent += b"".join(proto.data_to_send())
        for frame in proto.events_received():
            assert isinstance(frame, Frame)
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                if frame.opcode is not Opcode.CONT:
                    self._opcode, self._fragments = frame.opcode, []
                self._fragments.append(bytes(frame.data))
                if not frame.fin:
                    continue
                data = b"".join(self._fragments)
                if self._opcode is Opcode.BINARY:
                    self._items.append(("binary", data))
                    continue
                # The sans-IO layer leaves UTF-8 to websockets' connection layer, whose recv()
                # decodes each whole message and fails the connection with 1007 on an error.
                try:
                    self._items.append(("text", data.decode()))
                except UnicodeDecodeError:
                    why = "invalid UTF-8 in text (websockets.asyncio's recv)"
                    self.end = End("fail", 1007, why)
                    return
            elif frame.opcode is Opcode.PING:
                self._items.append(("ping", bytes(frame.data)))
            elif frame.opcode is Opcode.PONG:
                self._items.append(("pong", bytes(frame.data)))
            else:
                assert proto.close_rcvd is not None
                self.end = End("close", int(proto.close_rcvd.code), proto.close_rcvd.reason)
                return
        if proto.parser_exc is not None:
            assert proto.close_sent is not None
            exc = proto.parser_exc
            self.end = End("fail", int(proto.close_sent.code), f"{type(exc).__name__}: {exc}")
            self.failed_parsing = True

    def outcome(self) -> Outcome:
        return Outcome(tuple(self._items), self.end)


def websockets_extension(params: DeflateParameters) -> WebsocketsDeflate:
    return WebsocketsDeflate(
        remote_no_context_takeover=params.client_no_context_takeover,
        local_no_context_takeover=params.server_no_context_takeover,
        remote_max_window_bits=params.client_max_window_bits,
        local_max_window_bits=max(params.server_max_window_bits, 9),
    )


def last_close_code(server_bytes: bytes) -> int | None:
    """The code of the last close frame in unmasked server frames."""
    codes = [
        struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
        for opcode, payload in parse_server_frames(server_bytes)
        if opcode == 0x8
    ]
    return codes[-1] if codes else None


def run_websockets(
    chunks: Sequence[bytes], deflate: DeflateParameters | None, max_size: int | None
) -> Outcome:
    proto = ServerProtocol(state=State.OPEN, max_size=max_size, logger=QUIET_WEBSOCKETS_LOG)
    if deflate is not None:
        proto.extensions = [websockets_extension(deflate)]
    reader = WebsocketsReader(proto)
    for chunk in chunks:
        reader.feed(chunk)
    if reader.failed_parsing:
        # The code compared is the one websockets tells the peer in the close frame it sends.
        assert last_close_code(bytes(reader.sent)) == reader.end.code
    return reader.outcome()


# -- client frames -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WireFrame:
    """A client frame as bytes on the wire will say it, mutations included."""

    b0: int  # FIN, RSV1-3 and the opcode
    payload: bytes  # unmasked
    mask: bytes | None  # None: sent unmasked
    form: int = 7  # the smallest length encoding to use: 7, 16 or 64 bits
    declared: int | None = None  # a length field that disagrees with the payload

    def _length(self) -> tuple[int, int]:
        """The length field's value and its form."""
        n = len(self.payload) if self.declared is None else self.declared
        return n, max(self.form, 7 if n < 126 else 16 if n < 0x10000 else 64)

    def encode(self) -> bytes:
        n, form = self._length()
        # support.frames.client_frame writes the header, for an empty payload so that the length
        # field can then say anything; the payload is masked by websockets' apply_mask (in C):
        # client_frame's byte-by-byte xor costs milliseconds per 64 KiB frame, and hypothesis
        # builds hundreds of them.
        head = bytearray(
            client_frame(
                self.b0 & 0x0F,
                fin=bool(self.b0 & 0x80),
                rsv=self.b0 & 0x70,
                masked=self.mask is not None,
                length_form=form,
                mask=self.mask,
            )
        )
        if form == 7:
            head[1] |= n
        else:
            head[2 : 2 + form // 8] = n.to_bytes(form // 8, "big")
        if self.mask is None:
            return bytes(head) + self.payload
        return bytes(head) + apply_mask(self.payload, self.mask)

    def header_size(self) -> int:
        """The bytes before the mask."""
        return 2 + {7: 0, 16: 2, 64: 8}[self._length()[1]]


def parse_client_frames(stream: bytes) -> list[WireFrame]:
    """Split what a client wrote into frames; anything but well-formed masked frames fails."""
    frames: list[WireFrame] = []
    pos = 0
    while pos < len(stream):
        b0, b1 = stream[pos], stream[pos + 1]
        assert b1 & 0x80, "client frames are masked"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack_from("!H", stream, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", stream, pos)
            pos += 8
        mask, pos = stream[pos : pos + 4], pos + 4
        payload = apply_mask(stream[pos : pos + n], mask)
        assert len(payload) == n, "truncated client frame"
        frames.append(WireFrame(b0, payload, mask))
        pos += n
    return frames
