"""Server side of the WebSocket protocol (RFC 6455) after the HTTP handshake, sans-IO.

Bytes from the client go into :meth:`WebSocketProtocol.receive_data`, events from
:mod:`ratchetpy.protocol.events` come out; the ``encode_*`` methods return bytes to write.
Nothing here touches a socket or imports trio, so the whole layer is tested without I/O.

This is the hot path of every server built on ratchetpy, which is why the parser works on the
received ``bytes`` directly, keeps one fast branch for the common single-frame message, and
reaches for the general machinery only for fragments, compression, control frames and frames
split across reads.
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import struct
import zlib

from ..exceptions import LocalProtocolError
from .deflate import DeflateParameters, Deflater, Inflater, compress_alone
from .events import CloseReceived, Event, Message, Ping, Pong, ProtocolFailure
from .masking import IMPLEMENTATION, TRANSLATE_MIN, MessageBuffer, MessageBufferType
from .masking import unmask as _unmask

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ProtocolState",
    "WebSocketProtocol",
    "encode_broadcast",
    "encode_broadcast_compressed",
    "encode_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_FIN = 0x80
_RSV1 = 0x40

# Stands in for "no limit" so that the hot path compares ints without a None check; far beyond
# any memory, yet small enough for zlib's max_length (a C ssize_t) after adding one.
_NO_LIMIT = 1 << 62

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_from_bytes = int.from_bytes

# Headers of short frames, prebuilt: bytes((b0, n)) would cost a tuple and a call per frame.
_SHORT_HEADERS: dict[int, tuple[bytes, ...]] = {
    b0: tuple(bytes((b0, n)) for n in range(126))
    for b0 in (0x81, 0x82, 0xC1, 0xC2, 0x88, 0x89, 0x8A)
}

# Small payloads of whole messages are unmasked inline by the parser in pure Python (a call
# would cost more than the work); with the C accelerator, never: its call is cheaper still.
_INLINE_UNMASK_MAX = TRANSLATE_MIN if IMPLEMENTATION == "python" else 0

# An unfragmented binary message of this size or more that spans reads is unmasked into its
# final bytes as it comes (MessageBuffer), instead of kept in pieces and joined: a copy of the
# whole message less. The buffer is allocated from the frame's header (checked against the
# size limit first), before the payload arrives; the kernel backs its pages only as they are
# written, so a header alone costs address space, not memory. Allocating it as the quarter of
# the payload came instead was measured 30% slower end to end: the reads held until then made
# glibc grow and trim its heap for every message (page faults and brk calls by thousands).
# Larger frames (possible with no max_message_size) still come in pieces, as does any frame
# whose buffer cannot be had.
_IN_PLACE_MIN = 1 << 16
_IN_PLACE_MAX = 1 << 26


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are never put on the wire, 1016-2999 are unassigned.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _header(b0: int, n: int) -> bytes:
    """The header of a server frame whose first byte is ``b0`` and payload ``n`` bytes long."""
    if n < 126:
        headers = _SHORT_HEADERS.get(b0)
        return headers[n] if headers is not None else bytes((b0, n))
    if n < 0x10000:
        return _pack_16(b0, 126, n)
    return _pack_64(b0, 127, n)


def _frame(b0: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        # Inline, not through _header: most frames are short, and a call per frame shows.
        headers = _SHORT_HEADERS.get(b0)
        if headers is not None:
            return headers[n] + payload
    return _header(b0, n) + payload


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """Encode one server frame (servers never mask, RFC 6455 5.1)."""
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode out of range: {opcode!r}")
    b0 = opcode | (_FIN if fin else 0) | (_RSV1 if rsv1 else 0)
    if type(payload) is not bytes:
        payload = bytes(payload)
    return _frame(b0, payload)


def encode_broadcast_compressed(data: str | bytes, wbits: int) -> bytes:
    """Encode a message compressed on its own with window bits ``wbits``: valid on every
    connection whose ``shared_deflate_bits`` is ``wbits`` (permessage-deflate without context
    takeover), so a broadcast compresses once for all of them."""
    if isinstance(data, str):
        return _frame(0xC1, compress_alone(data.encode(), wbits))
    return _frame(0xC2, compress_alone(data if type(data) is bytes else bytes(data), wbits))


def encode_broadcast(data: str | bytes) -> bytes:
    """Encode a message uncompressed: the same bytes are valid on every connection.

    RFC 7692 lets each message choose whether to compress, so this frame may also go to clients
    that negotiated permessage-deflate.
    """
    if isinstance(data, str):
        return _frame(0x81, data.encode())
    return _frame(0x82, data if type(data) is bytes else bytes(data))


class ProtocolState(enum.Enum):
    """Where the closing handshake stands."""

    OPEN = "open"
    CLOSING = "closing"  # we sent our close frame and wait for the peer's
    CLOSED = "closed"  # both close frames went across


class _Fail(Exception):
    """Internal: the peer broke the protocol; becomes a ProtocolFailure event."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class WebSocketProtocol:
    """One server-side WebSocket connection: parses client frames, encodes server frames.

    ``max_message_size`` bounds a whole message (all its fragments, after decompression);
    None disables the bound. ``deflate`` holds the permessage-deflate parameters agreed in the
    handshake, if any; messages shorter than ``compress_min_size`` bytes are then still sent
    uncompressed, because compressing them costs more CPU than it saves bandwidth.
    """

    __slots__ = (
        "_buf",
        "_close_received",
        "_deflater",
        "_f_ctl",
        "_f_fin",
        "_f_mask",
        "_f_op",
        "_inflater",
        "_limit",
        "_m_bin",
        "_m_comp",
        "_m_into",
        "_m_op",
        "_m_size",
        "_m_text",
        "_m_wire",
        "_need",
        "_read_closed",
        "_state",
        "_utf8",
        "_wire_limit",
        "close_code",
        "close_reason",
        "close_sent",
        "compress_min_size",
        "shared_deflate_bits",
        "shares_encoding",
    )

    def __init__(
        self,
        *,
        max_message_size: int | None = 2**20,
        deflate: DeflateParameters | None = None,
        compress_min_size: int = 128,
    ) -> None:
        if max_message_size is not None and max_message_size < 0:
            raise ValueError("max_message_size must be >= 0 or None")
        limit = _NO_LIMIT if max_message_size is None else max_message_size
        self._limit = limit
        # Incompressible data grows a little when deflated (5 bytes per 16 KiB stored block), so
        # the compressed frames of a message just under the limit may sum to a bit more.
        self._wire_limit = limit + (limit >> 10) + 64 if limit < _NO_LIMIT else _NO_LIMIT
        self.compress_min_size = compress_min_size
        self._deflater = Deflater(deflate) if deflate is not None else None
        self._inflater = Inflater(deflate) if deflate is not None else None
        #: Whether encode_message gives the same bytes on every connection with this flag set,
        #: so that a broadcast can be encoded once. Compression state is per connection.
        self.shares_encoding = deflate is None
        #: With permessage-deflate and no context takeover: the window bits of
        #: :func:`encode_broadcast_compressed` frames that this connection may be sent.
        self.shared_deflate_bits = (
            self._deflater.shared_window_bits if self._deflater is not None else None
        )
        #: The close code and reason that ended the connection: the first of the peer's close,
        #: our close and a protocol failure. None while nothing has been said.
        self.close_code: int | None = None
        self.close_reason = ""

        self._state = ProtocolState.OPEN
        #: True once our close frame is encoded: no message may follow it. Read it; only the
        #: protocol changes it (a plain attribute because every send tests it).
        self.close_sent = False
        self._close_received = False
        self._read_closed = False

        self._buf = b""  # an incomplete frame header left over from the last call
        self._need = 0  # payload bytes still to come for the frame in _f_*
        self._f_op = 0
        self._f_fin = False
        self._f_mask = b""
        self._f_ctl: list[bytes | bytearray] = []

        self._m_op = 0  # opcode of the message being reassembled, 0 when none
        self._m_comp = False
        self._m_size = 0  # bytes of the message so far, after decompression
        self._m_wire = 0  # bytes of the message so far, as sent
        self._m_text: list[str] = []
        self._m_bin: list[bytes | bytearray] = []
        # The buffer a large unfragmented binary message is unmasked into, while it comes.
        self._m_into: MessageBufferType | None = None
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def state(self) -> ProtocolState:
        """OPEN, CLOSING once we sent our close frame, CLOSED once both close frames crossed."""
        return self._state

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; return the events they complete, in order.

        A :class:`ProtocolFailure` is always the last event, and reading stops with it (as it
        does after :class:`CloseReceived`): later calls return ``[]``.
        """
        if self._read_closed:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        events: list[Event] = []
        pos = 0
        try:
            if self._need:
                pos = self._feed_payload(data, 0, events)
                if self._read_closed:
                    return events
            elif self._buf:
                data = self._buf + data
                self._buf = b""
            end = len(data)
            limit = self._limit
            while end - pos >= 2:
                b0 = data[pos]
                b1 = data[pos + 1]
                if b1 < 0x80:
                    raise _Fail(1002, "client frame is not masked")
                length = b1 & 0x7F
                hp = pos + 2
                if length < 126:
                    if end - hp < 4:
                        break
                elif length == 126:
                    if end - hp < 6:
                        break
                    length = (data[hp] << 8) | data[hp + 1]
                    hp += 2
                else:
                    if end - hp < 12:
                        break
                    length = _from_bytes(data[hp : hp + 8], "big")
                    if length >> 63:
                        raise _Fail(1002, "frame length has the most significant bit set")
                    hp += 8
                mask = data[hp : hp + 4]
                hp += 4
                pe = hp + length

                if (b0 == 0x81 or b0 == 0x82) and not self._m_op and pe <= end:
                    # The common case: a whole unfragmented, uncompressed message.
                    if length > limit:
                        raise _Fail(1009, "message too big")
                    pos = pe
                    if self.close_sent:
                        continue
                    if length < _INLINE_UNMASK_MAX:
                        payload: bytes | bytearray = (
                            _from_bytes(data[hp:pe], "little")
                            ^ _from_bytes((mask * ((length >> 2) + 1))[:length], "little")
                        ).to_bytes(length, "little")
                    else:
                        payload = _unmask(data, hp, pe, mask)
                    if b0 == 0x81:
                        try:
                            events.append(Message(payload.decode()))
                        except UnicodeDecodeError:
                            raise _Fail(1007, "invalid UTF-8 in text message") from None
                    else:
                        events.append(Message(bytes(payload)))
                    continue

                self._start_frame(b0, length)
                if pe > end:
                    self._f_mask = mask
                    self._need = length
                    if b0 == 0x82 and _IN_PLACE_MIN <= length <= _IN_PLACE_MAX:
                        # Without the memory: in pieces, as they come, like other messages.
                        with contextlib.suppress(MemoryError):
                            self._m_into = MessageBuffer(length)
                    pos = self._feed_payload(data, hp, events)
                    break
                payload = _unmask(data, hp, pe, mask)
                pos = pe
                if self._f_op >= 8:
                    self._control(self._f_op, payload, events)
                    if self._read_closed:
                        return events
                else:
                    self._data(payload)
                    if self._f_fin:
                        self._finish_message(events)
            if pos < end:
                self._buf = data[pos:]
        except _Fail as exc:
            self._fail(exc.code, exc.reason, events)
        return events

    def _start_frame(self, b0: int, length: int) -> None:
        """Check a frame header against the protocol state before any payload is kept."""
        op = b0 & 0x0F
        rsv = b0 & 0x70
        if op >= 8:
            if op > OP_PONG:
                raise _Fail(1002, f"reserved opcode {op}")
            if rsv:
                raise _Fail(1002, "reserved bits set on a control frame")
            if not b0 & _FIN:
                raise _Fail(1002, "fragmented control frame")
            if length > 125:
                raise _Fail(1002, "control frame payload longer than 125 bytes")
        else:
            if op > OP_BINARY:
                raise _Fail(1002, f"reserved opcode {op}")
            if op == OP_CONTINUATION:
                if not self._m_op:
                    raise _Fail(1002, "continuation frame without a message in progress")
                if rsv:
                    raise _Fail(1002, "reserved bits set on a continuation frame")
            else:
                if self._m_op:
                    raise _Fail(1002, "new message before the previous one was finished")
                if rsv and (rsv != _RSV1 or self._inflater is None):
                    raise _Fail(1002, "reserved bits set without a negotiated extension")
                self._m_op = op
                self._m_comp = rsv != 0
                self._m_size = 0
                self._m_wire = 0
                if op == OP_TEXT:
                    if self._utf8 is None:
                        self._utf8 = codecs.getincrementaldecoder("utf-8")()
                    else:
                        self._utf8.reset()
            wire = self._m_wire + length
            if wire > (self._wire_limit if self._m_comp else self._limit):
                raise _Fail(1009, "message too big")
            self._m_wire = wire
        self._f_op = op
        self._f_fin = bool(b0 & _FIN)

    def _feed_payload(self, data: bytes, start: int, events: list[Event]) -> int:
        """Consume payload of the frame in progress from ``data[start:]``; return the new pos."""
        avail = len(data) - start
        if avail <= 0:
            return start
        need = self._need
        take = need if need <= avail else avail
        mask = self._f_mask
        shift = take & 3
        if shift:
            self._f_mask = mask[shift:] + mask[:shift]
        need -= take
        self._need = need
        into = self._m_into
        if into is not None:
            # _start_frame already bounded the message; it is one whole frame, so done with it.
            into.unmask_into(data, start, start + take, mask)
            if not need:
                self._m_into = None
                self._m_op = 0
                if not self.close_sent:
                    events.append(Message(into.take()))
            return start + take
        piece = _unmask(data, start, start + take, mask)
        if self._f_op >= 8:
            self._f_ctl.append(piece)
            if not need:
                payload = b"".join(self._f_ctl)
                self._f_ctl = []
                self._control(self._f_op, payload, events)
        else:
            # Fed piece by piece so that bad UTF-8 fails as soon as it arrives, and so that a
            # compressed message is bounded while it streams in.
            self._data(piece)
            if not need and self._f_fin:
                self._finish_message(events)
        return start + take

    def _data(self, piece: bytes | bytearray) -> None:
        if self._m_comp:
            piece = self._inflate(piece, final=False)
        else:
            self._m_size += len(piece)
        if self._m_op == OP_TEXT:
            self._decode_text(piece, final=False)
        elif piece:
            self._m_bin.append(piece)

    def _inflate(self, piece: bytes | bytearray, *, final: bool) -> bytes:
        inflater = self._inflater
        assert inflater is not None  # RSV1 is refused in _start_frame without one
        budget = self._limit - self._m_size
        try:
            if final:
                out = inflater.finish_message(budget + 1)
            else:
                out = inflater.decompress(piece, budget + 1)
        except zlib.error:
            raise _Fail(1002, "invalid compressed data") from None
        if len(out) > budget:
            raise _Fail(1009, "message too big")
        self._m_size += len(out)
        return out

    def _decode_text(self, piece: bytes | bytearray, *, final: bool) -> None:
        decoder = self._utf8
        assert decoder is not None  # created in _start_frame for every text message
        try:
            text = decoder.decode(piece, final)
        except UnicodeDecodeError:
            raise _Fail(1007, "invalid UTF-8 in text message") from None
        if text:
            self._m_text.append(text)

    def _finish_message(self, events: list[Event]) -> None:
        if self._m_comp:
            tail = self._inflate(b"", final=True)
            if self._m_op == OP_TEXT:
                self._decode_text(tail, final=False)
            elif tail:
                self._m_bin.append(tail)
        data: str | bytes
        if self._m_op == OP_TEXT:
            self._decode_text(b"", final=True)
            data = "".join(self._m_text)
            self._m_text = []
        else:
            data = b"".join(self._m_bin)
            self._m_bin = []
        self._m_op = 0
        if not self.close_sent:
            events.append(Message(data))

    def _control(self, op: int, payload: bytes | bytearray, events: list[Event]) -> None:
        if op == OP_PING:
            events.append(Ping(bytes(payload)))
        elif op == OP_PONG:
            events.append(Pong(bytes(payload)))
        else:
            n = len(payload)
            if n == 0:
                code, reason = 1005, ""
            elif n == 1:
                raise _Fail(1002, "close frame payload of one byte")
            else:
                code = (payload[0] << 8) | payload[1]
                if not _valid_close_code(code):
                    raise _Fail(1002, f"invalid close code {code}")
                try:
                    reason = payload[2:].decode()
                except UnicodeDecodeError:
                    raise _Fail(1007, "invalid UTF-8 in close reason") from None
            events.append(CloseReceived(code, reason))
            self._close_received = True
            self._stop_reading()
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
            if self.close_sent:
                self._state = ProtocolState.CLOSED

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        events.append(ProtocolFailure(code, reason))
        self._stop_reading()
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    def _stop_reading(self) -> None:
        # Drop whatever was buffered: nothing will be parsed any more.
        self._read_closed = True
        self._buf = b""
        self._need = 0
        self._f_ctl = []
        self._m_text = []
        self._m_bin = []
        self._m_into = None
        self._m_op = 0

    # -- sending -----------------------------------------------------------------------------

    def encode_message(self, data: str | bytes) -> bytes:
        """Encode a message: ``str`` as text, bytes-like as binary; compressed when negotiated
        and at least ``compress_min_size`` bytes long. Raises LocalProtocolError after close."""
        if self._deflater is None and not self.close_sent:
            # The common case first, without the general path's call and tuple: a measurable
            # share of a small echo's cost.
            if type(data) is str:
                return _frame(0x81, data.encode())
            if type(data) is bytes:
                return _frame(0x82, data)
        b0, payload = self._message_payload(data)
        return _frame(b0, payload)

    def encode_message_parts(self, data: str | bytes) -> tuple[bytes, bytes]:
        """:meth:`encode_message` as the frame's header and its payload, for a caller that
        writes the two without joining them (a large message is then not copied once more)."""
        b0, payload = self._message_payload(data)
        return _header(b0, len(payload)), payload

    def _message_payload(self, data: str | bytes) -> tuple[int, bytes]:
        """The first header byte and the payload of a message frame (see encode_message)."""
        if self.close_sent:
            raise LocalProtocolError("cannot send a message after the close frame")
        if isinstance(data, str):
            payload = data.encode()
            b0 = 0x81
        elif isinstance(data, (bytes, bytearray, memoryview)):
            payload = data if type(data) is bytes else bytes(data)
            b0 = 0x82
        else:
            raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        if self._deflater is not None and len(payload) >= self.compress_min_size:
            payload = self._deflater.compress(payload)
            b0 |= _RSV1
        return b0, payload

    def encode_ping(self, payload: bytes = b"") -> bytes:
        """Encode a ping; the payload must fit a control frame (125 bytes)."""
        return self._control_frame(0x89, payload)

    def encode_pong(self, payload: bytes = b"") -> bytes:
        """Encode a pong, usually echoing the payload of a :class:`Ping` event."""
        return self._control_frame(0x8A, payload)

    @staticmethod
    def _control_frame(b0: int, payload: bytes) -> bytes:
        if type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > 125:
            raise LocalProtocolError("control frame payload longer than 125 bytes")
        return _SHORT_HEADERS[b0][len(payload)] + payload

    def encode_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Encode our close frame; OPEN becomes CLOSING, or CLOSED if the peer closed first.

        Also used after a :class:`ProtocolFailure`, with its code. Raises LocalProtocolError when
        a close frame was already sent, for a code that must not be sent (1005, 1006, 1015,
        unassigned ones; answer a peer's 1005 with 1000) or a reason over 123 UTF-8 bytes.
        """
        if self.close_sent:
            raise LocalProtocolError("close frame already sent")
        if not _valid_close_code(code):
            raise LocalProtocolError(f"close code {code!r} may not be sent")
        raw = reason.encode()
        if len(raw) > 123:
            raise LocalProtocolError("close reason longer than 123 UTF-8 bytes")
        self.close_sent = True
        self._state = ProtocolState.CLOSED if self._close_received else ProtocolState.CLOSING
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        return _SHORT_HEADERS[0x88][2 + len(raw)] + code.to_bytes(2, "big") + raw
