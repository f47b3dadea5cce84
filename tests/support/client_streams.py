"""Hypothesis strategies for the codec's differential tests: what a wsproto client sends.

:func:`cases` builds a negotiation, a sequence of messages (fragmented, with control frames
between the fragments) and a close; :func:`remask` and :func:`draw_chunks` draw the masks and
the read boundaries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.events import Ping as WsprotoPing
from wsproto.events import Pong as WsprotoPong
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from ratchetpy.protocol import (
    DeflateParameters,
    negotiate_deflate,
)
from support.oracles import (
    STILL_OPEN,
    End,
    Item,
    Outcome,
    WireFrame,
    parse_client_frames,
)

# -- strategies: what a wsproto client sends ---------------------------------------------------

UTF8_CHARS = st.characters(codec="utf-8")
# 1014 is valid as well, but wsproto refuses it (KNOWN_DIFFERENCES), which the mutations cover.
VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4999)


def fit_close_reason(reason: str) -> str:
    """``reason`` cut between characters to the 123 bytes of UTF-8 a close frame has room for."""
    while len(reason.encode()) > 123:
        reason = reason[:-1]
    return reason


close_reasons = st.text(UTF8_CHARS, max_size=123).map(fit_close_reason)


def text_of_size(rng: random.Random, size: int) -> str:
    """Text of exactly ``size`` bytes of UTF-8, with characters of 1 to 4 bytes."""
    chars: list[str] = []
    left = min(size, 997)
    while left:
        char = rng.choice("aZ~éß€中😀"[: 4 + min(left, 4)])
        if len(char.encode()) <= left:
            chars.append(char)
            left -= len(char.encode())
    block = "".join(chars)
    if size <= 997:
        return block
    # Large sizes repeat one block: building megabytes a character at a time is slow.
    repeats, rest = divmod(size, 997)
    return block * repeats + text_of_size(rng, rest)


@dataclass(frozen=True)
class Control:
    kind: Literal["ping", "pong"]
    payload: bytes


@dataclass(frozen=True)
class DataMessage:
    parts: tuple[str, ...] | tuple[bytes, ...]  # one frame each
    between: tuple[tuple[Control, ...], ...]  # sent after each part but the last

    @property
    def item(self) -> Item:
        if self.parts and isinstance(self.parts[0], str):
            return ("text", "".join(p for p in self.parts if isinstance(p, str)))
        return ("binary", b"".join(p for p in self.parts if isinstance(p, bytes)))


@dataclass(frozen=True)
class CloseOp:
    code: int | None  # None: a close frame with no payload
    reason: str


@dataclass(frozen=True)
class Negotiation:
    """A wsproto client's permessage-deflate offer and what ratchetpy agreed to."""

    client_no_context_takeover: bool
    client_max_window_bits: int
    server_no_context_takeover: bool
    server_max_window_bits: int
    params: DeflateParameters
    response: str

    def client_extension(self) -> PerMessageDeflate:
        ext = PerMessageDeflate(
            client_no_context_takeover=self.client_no_context_takeover,
            client_max_window_bits=self.client_max_window_bits,
            server_no_context_takeover=self.server_no_context_takeover,
            server_max_window_bits=self.server_max_window_bits,
        )
        ext.finalize(self.response)
        return ext


def _agreed(
    offer: str = "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
) -> tuple[DeflateParameters, str]:
    agreed = negotiate_deflate([offer])
    assert agreed is not None
    return agreed


DEFAULT_DEFLATE = _agreed()  # permessage-deflate with every parameter at its default


@st.composite
def negotiations(draw: st.DrawFn) -> Negotiation:
    client = (
        draw(st.booleans()),
        draw(st.integers(9, 15)),  # wsproto refuses 8, as zlib does for raw deflate
        draw(st.booleans()),
        draw(st.integers(9, 15)),
    )
    offered = PerMessageDeflate(
        client_no_context_takeover=client[0],
        client_max_window_bits=client[1],
        server_no_context_takeover=client[2],
        server_max_window_bits=client[3],
    )
    agreed = negotiate_deflate(
        [f"{offered.name}; {offered.offer()}"],
        server_no_context_takeover=draw(st.booleans()),
        client_no_context_takeover=draw(st.booleans()),
        server_max_window_bits=draw(st.integers(9, 15)),
        client_max_window_bits=draw(st.none() | st.integers(9, 15)),
    )
    assert agreed is not None, "wsproto always offers client_max_window_bits"
    return Negotiation(*client, *agreed)


@st.composite
def message_values(draw: st.DrawFn) -> str | bytes:
    text = draw(st.booleans())
    size_class = draw(st.integers(0, 19))
    if size_class < 16:
        return draw(st.text(UTF8_CHARS, max_size=40)) if text else draw(st.binary(max_size=40))
    if size_class < 19:
        size = draw(st.sampled_from([124, 125, 126, 127, 300]))
    else:
        # Around the 16-bit/64-bit length boundary: rare, these cost milliseconds each.
        size = draw(st.sampled_from([65535, 65536, 70000]))
    if text:
        unit = draw(st.text(UTF8_CHARS, min_size=1, max_size=4))
        return (unit * (size // len(unit) + 1))[:size]
    if draw(st.booleans()):
        return random.Random(draw(st.integers(0, 2**32 - 1))).randbytes(size)  # incompressible
    unit_bytes = draw(st.binary(min_size=1, max_size=8))
    return (unit_bytes * (size // len(unit_bytes) + 1))[:size]


controls = st.builds(Control, st.sampled_from(["ping", "pong"]), st.binary(max_size=125))


@st.composite
def data_messages(draw: st.DrawFn) -> DataMessage:
    value = draw(message_values())
    pieces = draw(st.integers(1, 4))
    cuts = sorted(
        draw(st.lists(st.integers(0, len(value)), min_size=pieces - 1, max_size=pieces - 1))
    )
    bounds = [0, *cuts, len(value)]
    parts = [value[a:b] for a, b in pairwise(bounds)]
    between = tuple(tuple(draw(st.lists(controls, max_size=2))) for _ in parts[1:])
    return DataMessage(tuple(parts), between)  # type: ignore[arg-type]  # all str or all bytes


@st.composite
def close_ops(draw: st.DrawFn) -> CloseOp:
    if draw(st.integers(0, 4)) == 4:
        return CloseOp(None, "")
    code = draw(st.sampled_from(VALID_CLOSE_CODES) | st.integers(3000, 4999))
    return CloseOp(code, draw(close_reasons))


@dataclass(frozen=True)
class Case:
    negotiation: Negotiation | None
    ops: tuple[DataMessage | Control, ...]
    close: CloseOp | None
    trailer: bytes  # after the close frame: every implementation must ignore it

    @property
    def params(self) -> DeflateParameters | None:
        return None if self.negotiation is None else self.negotiation.params

    @property
    def response(self) -> str | None:
        return None if self.negotiation is None else self.negotiation.response

    def expected(self) -> Outcome:
        items: list[Item] = []
        for op in self.ops:
            if isinstance(op, Control):
                items.append((op.kind, op.payload))
                continue
            for between in op.between:
                items.extend((c.kind, c.payload) for c in between)
            items.append(op.item)
        if self.close is None:
            return Outcome(tuple(items), STILL_OPEN)
        code = 1005 if self.close.code is None else self.close.code
        return Outcome(tuple(items), End("close", code, self.close.reason))

    def client_frames(self) -> list[WireFrame]:
        """What a wsproto client connection writes for these operations, frame by frame."""
        extensions = [] if self.negotiation is None else [self.negotiation.client_extension()]
        conn = Connection(ConnectionType.CLIENT, extensions=list(extensions))
        out = bytearray()
        for op in self.ops:
            if isinstance(op, Control):
                out += conn.send(_wsproto_control(op))
                continue
            last = len(op.parts) - 1
            parts: Sequence[str | bytes] = op.parts
            for i, part in enumerate(parts):
                if isinstance(part, str):
                    out += conn.send(TextMessage(data=part, message_finished=i == last))
                else:
                    out += conn.send(BytesMessage(data=part, message_finished=i == last))
                for control in op.between[i] if i < last else ():
                    out += conn.send(_wsproto_control(control))
        if self.close is not None:
            # wsproto writes an empty close frame only for this enum member, by identity.
            code = CloseReason.NO_STATUS_RCVD if self.close.code is None else self.close.code
            out += conn.send(CloseConnection(code=code, reason=self.close.reason))
        return parse_client_frames(bytes(out))


def _wsproto_control(control: Control) -> WsprotoPing | WsprotoPong:
    if control.kind == "ping":
        return WsprotoPing(payload=control.payload)
    return WsprotoPong(payload=control.payload)


@st.composite
def cases(draw: st.DrawFn, *, trailer: bool = True) -> Case:
    negotiation = draw(st.none() | negotiations())
    ops = draw(st.lists(st.one_of(data_messages(), controls), max_size=6))
    close = draw(st.none() | close_ops())
    junk = draw(st.binary(max_size=24)) if trailer and close is not None else b""
    return Case(negotiation, tuple(ops), close, junk)


masks = st.binary(min_size=4, max_size=4)


def remask(data: st.DataObject, frames: Sequence[WireFrame]) -> list[WireFrame]:
    # wsproto draws its masks from os.urandom; drawing them here keeps every example
    # reproducible and lets hypothesis try the all-zero and all-one masks too.
    return [replace(f, mask=data.draw(masks, label="mask")) if f.mask else f for f in frames]


def draw_chunks(data: st.DataObject, stream: bytes) -> list[bytes]:
    """``stream`` split into reads at points hypothesis picks, sometimes one byte at a time."""
    if len(stream) <= 400 and data.draw(st.integers(0, 7), label="byte by byte") == 7:
        return [stream[i : i + 1] for i in range(len(stream))]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    points = sorted({0, len(stream), *cuts})
    return [stream[a:b] for a, b in pairwise(points)] or [b""]
