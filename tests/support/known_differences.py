"""The known, explained differences between ratchetpy's WebSocket codec and its oracles.

``KNOWN_DIFFERENCES`` lists every allowed disagreement with wsproto or websockets and why
ratchetpy's answer is right; :func:`survey` collects the facts about a stream that some of them
depend on; :func:`explain` and :func:`compare` apply the table, so that an unexplained
difference fails the test that found it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import event
from websockets.utils import apply_mask

from ratchetpy.protocol import (
    DeflateParameters,
)
from support.oracles import (
    Item,
    Outcome,
)

# -- a lenient walk over a stream: the facts some known differences depend on ------------------

TAIL = b"\x00\x00\xff\xff"  # appended to every compressed message before inflating it


@dataclass(frozen=True)
class Survey:
    """What a plain walk over the frames of a stream finds, up to the first sure violation.

    Positions are ``(messages, control frames)`` completed before a message began, so that
    ``outcome.events[: sum(position)]`` are the events every implementation gave before it.
    """

    control_inside_compressed: tuple[int, int] | None  # a ping/pong between compressed fragments
    final_block: tuple[int, int] | None  # a deflate block with BFINAL set ended the stream
    largest_length: int  # the largest declared frame length
    long_control_length: bool  # a control frame's short length written in 16 or 64 bits
    ends_inside_frame: bool  # the stream stops inside a frame (header or payload)
    compressed: tuple[bool, ...]  # for each complete message: was it compressed


def survey(stream: bytes, deflate: DeflateParameters | None) -> Survey:
    pos = messages = controls = 0
    start = (0, 0)
    in_message = compressed = False
    inflater: zlib._Decompress | None = None
    control_inside: tuple[int, int] | None = None
    final_block: tuple[int, int] | None = None
    largest = 0
    long_control = False
    inside = False
    flags: list[bool] = []
    end = len(stream)
    while pos < end:
        if end - pos < 2:
            inside = True
            break
        b0, b1 = stream[pos], stream[pos + 1]
        length, hp = b1 & 0x7F, pos + 2
        if length >= 126:
            width = 2 if length == 126 else 8
            if end - hp < width:
                inside = True
                break
            length = int.from_bytes(stream[hp : hp + width], "big")
            hp += width
        largest = max(largest, length)
        long_control |= b0 & 0x08 != 0 and b1 & 0x7F >= 126 and length <= 125
        mask = None
        if b1 & 0x80:
            if end - hp < 4:
                inside = True
                break
            mask = stream[hp : hp + 4]
            hp += 4
        if end - hp < length:
            inside = True
            break
        payload = stream[hp : hp + length]
        if mask is not None:
            payload = apply_mask(payload, mask)
        pos = hp + length
        op, fin = b0 & 0x0F, bool(b0 & 0x80)
        # Stop where every implementation must fail or stop reading: nothing after matters.
        if mask is None or b0 & 0x30 or op in (3, 4, 5, 6, 7) or op > 0xA or op == 0x8:
            break
        if op >= 8:
            if b0 & 0x40 or not fin or length > 125:
                break
            if in_message and compressed and control_inside is None:
                control_inside = start
            controls += 1
            continue
        rsv1 = bool(b0 & 0x40)
        if op == 0:
            if not in_message or rsv1:
                break
        else:
            if in_message or (rsv1 and deflate is None):
                break
            in_message, compressed, start = True, rsv1, (messages, controls)
        if compressed and deflate is not None and final_block is None:
            if inflater is None:
                inflater = zlib.decompressobj(-max(deflate.client_max_window_bits, 9))
            try:
                inflater.decompress(payload + (TAIL if fin else b""))
            except zlib.error:
                break
            if inflater.eof:
                final_block = start
            if fin and deflate.client_no_context_takeover:
                inflater = None
        if fin:
            in_message = False
            messages += 1
            flags.append(compressed)
    return Survey(control_inside, final_block, largest, long_control, inside, tuple(flags))


# -- the known, explained differences ------------------------------------------------------------


@dataclass(frozen=True)
class KnownDifference:
    oracle: Literal["wsproto", "websockets"]
    ratchetpy: str  # what ratchetpy does
    oracle_does: str
    why: str  # why ratchetpy's answer is right, or as right as the oracle's
    applies: Callable[[Outcome, Outcome, Survey], bool]
    rest_agrees: Callable[[Outcome, Outcome, Survey], bool]  # what must still be the same


def _fails(outcome: Outcome, code: int, explanation: str = "") -> bool:
    end = outcome.end
    return end.kind == "fail" and end.code == code and explanation in end.text


def _is_prefix(head: Sequence[Item], whole: Sequence[Item]) -> bool:
    return tuple(whole[: len(head)]) == tuple(head)


def _same_events(r: Outcome, o: Outcome, s: Survey) -> bool:
    return r.events == o.events


def _oracle_events_lead(r: Outcome, o: Outcome, s: Survey) -> bool:
    return _is_prefix(o.events, r.events)


def _ratchetpy_events_lead(r: Outcome, o: Outcome, s: Survey) -> bool:
    return _is_prefix(r.events, o.events)


def _same_before(position: Callable[[Survey], tuple[int, int] | None]) -> Callable[..., bool]:
    def check(r: Outcome, o: Outcome, s: Survey) -> bool:
        at = position(s)
        assert at is not None
        return r.events[: sum(at)] == o.events[: sum(at)]

    return check


def _waits_versus_fails(r: Outcome, o: Outcome, s: Survey) -> bool:
    kinds = {r.end.kind, o.end.kind}
    failed = r if r.end.kind == "fail" else o
    return s.ends_inside_frame and kinds == {"open", "fail"} and failed.end.code == 1002


def _compressed_message_at_divergence(r: Outcome, o: Outcome, s: Survey) -> bool:
    delivered = sum(1 for kind, _ in o.events if kind in ("text", "binary"))
    return (
        _fails(o, 1009)
        and delivered < len(s.compressed)
        and s.compressed[delivered]
        and sum(1 for kind, _ in r.events if kind in ("text", "binary")) > delivered
    )


def _inside_huge_frame(o: Outcome) -> bool:
    # No stream here holds 2**62 bytes, so the oracle is still inside that frame: waiting for
    # the rest of it, or failing UTF-8 in the part that came.
    return o.end.kind == "open" or _fails(o, 1007)


KNOWN_DIFFERENCES: dict[str, KnownDifference] = {
    "wsproto-rejects-non-minimal-length": KnownDifference(
        oracle="wsproto",
        ratchetpy="accepts a length written with more bytes than needed",
        oracle_does="fails with 1002",
        why="RFC 6455 5.2 requires the minimal encoding of senders, not a check of receivers; "
        "websockets accepts it too, and tests/protocol/test_websocket.py pins ratchetpy's leniency",
        applies=lambda r, o, s: (
            _fails(o, 1002, "would have sufficed")
            # wsproto reads a 16- or 64-bit length marker on a control frame as "over 125".
            or (_fails(o, 1002, "payload len > 125") and s.long_control_length)
        ),
        rest_agrees=_oracle_events_lead,
    ),
    "wsproto-rejects-close-code-1014": KnownDifference(
        oracle="wsproto",
        ratchetpy="accepts close code 1014",
        oracle_does="fails with 1002 (unknown reserved code)",
        why="1014 (Bad Gateway) is in IANA's WebSocket close code registry that RFC 6455 7.4.2 "
        "defers to; wsproto's list stops at 1013 (websockets accepts 1014)",
        applies=lambda r, o, s: (
            _fails(o, 1002, "unknown reserved code") and r.end.key()[:2] == ("close", 1014)
        ),
        rest_agrees=_same_events,
    ),
    "wsproto-corrupt-deflate-is-1007": KnownDifference(
        oracle="wsproto",
        ratchetpy="fails with 1002",
        oracle_does="fails with 1007",
        why="RFC 7692 only says to fail the connection; corrupt compressed data breaks the "
        "extension's framing, not the message's type (1007), so 1002 as websockets does and "
        "as docs/topics/errors.md says",
        applies=lambda r, o, s: (
            _fails(o, 1007, "error in extension") and _fails(r, 1002, "invalid compressed data")
        ),
        rest_agrees=_same_events,
    ),
    "wsproto-inflates-before-checking-fragment-order": KnownDifference(
        oracle="wsproto",
        ratchetpy="fails with 1002 (new message before the previous one was finished)",
        oracle_does="inflates that frame as part of the unfinished message first: 1007 when "
        "that fails",
        why="the frame header already breaks RFC 6455 5.4; what its payload inflates to is "
        "beside the point (websockets agrees with ratchetpy)",
        applies=lambda r, o, s: (
            _fails(o, 1007, "error in extension")
            and _fails(r, 1002, "new message before the previous one was finished")
        ),
        rest_agrees=_same_events,
    ),
    "wsproto-loses-compression-at-control-frame": KnownDifference(
        oracle="wsproto",
        ratchetpy="inflates every fragment of the message",
        oracle_does="stops inflating after a ping/pong between fragments (garbage or 1007)",
        why="RFC 6455 5.4 allows control frames between fragments; wsproto's PerMessageDeflate "
        "resets its 'message is compressed' flag at any control frame (websockets agrees with "
        "ratchetpy)",
        applies=lambda r, o, s: s.control_inside_compressed is not None,
        rest_agrees=_same_before(lambda s: s.control_inside_compressed),
    ),
    "wsproto-stops-at-final-deflate-block": KnownDifference(
        oracle="wsproto",
        ratchetpy="starts a new deflate stream after a block with BFINAL set",
        oracle_does="fails with 1007 or drops the later compressed data",
        why="RFC 7692 7.2.3.4 lets a sender end a message with a BFINAL block; zlib then "
        "reports end of stream, and only a fresh inflater can read what follows",
        applies=lambda r, o, s: s.final_block is not None,
        rest_agrees=_same_before(lambda s: s.final_block),
    ),
    "websockets-stops-at-final-deflate-block": KnownDifference(
        oracle="websockets",
        ratchetpy="starts a new deflate stream after a block with BFINAL set",
        oracle_does="delivers the later compressed messages empty",
        why="as for wsproto: RFC 7692 7.2.3.4 allows BFINAL blocks, and data after one needs a "
        "fresh inflater",
        applies=lambda r, o, s: s.final_block is not None,
        rest_agrees=_same_before(lambda s: s.final_block),
    ),
    "wsproto-unlimited-is-below-2**62": KnownDifference(
        oracle="wsproto",
        ratchetpy="fails with 1009 a frame announcing over 2**62 bytes, even without a limit",
        oracle_does="reads on into the payload",
        why="max_message_size=None is 2**62 bytes inside the codec, beyond any memory: such a "
        "frame could never be read anyway",
        applies=lambda r, o, s: (
            _fails(r, 1009) and s.largest_length > 2**62 and _inside_huge_frame(o)
        ),
        rest_agrees=_same_events,
    ),
    "websockets-unlimited-is-below-2**62": KnownDifference(
        oracle="websockets",
        ratchetpy="fails with 1009 a frame announcing over 2**62 bytes, even without a limit",
        oracle_does="reads on into the payload",
        why="as for wsproto: 2**62 bytes is beyond any memory",
        applies=lambda r, o, s: (
            _fails(r, 1009) and s.largest_length > 2**62 and _inside_huge_frame(o)
        ),
        rest_agrees=_same_events,
    ),
    "wsproto-no-size-limit": KnownDifference(
        oracle="wsproto",
        ratchetpy="fails with 1009 past max_message_size",
        oracle_does="has no limit and reads on",
        why="RFC 6455 10.4 leaves limits to the implementation; ratchetpy's is documented in "
        "docs/howto/limits.md",
        applies=lambda r, o, s: _fails(r, 1009, "message too big") and o.end.kind != "fail",
        rest_agrees=_ratchetpy_events_lead,
    ),
    "wsproto-checks-at-other-points-of-an-unfinished-frame": KnownDifference(
        oracle="wsproto",
        ratchetpy="checks a frame once its header and mask are in, fragment order included",
        oracle_does="checks the opcode before the mask arrives, fragment order only with payload",
        why="the stream stops inside that frame, so it is only about when a violation is seen: "
        "the same frame fails in both as soon as enough of it arrives",
        applies=_waits_versus_fails,
        rest_agrees=_same_events,
    ),
    "websockets-checks-at-other-points-of-an-unfinished-frame": KnownDifference(
        oracle="websockets",
        ratchetpy="checks a frame once its header and mask are in",
        oracle_does="checks reserved bits, control frame rules and fragment order with the "
        "whole payload",
        why="the stream stops inside that frame: only the moment the violation is seen differs",
        applies=_waits_versus_fails,
        rest_agrees=_same_events,
    ),
    "websockets-rejects-close-inside-fragmented-message": KnownDifference(
        oracle="websockets",
        ratchetpy="reports the close frame",
        oracle_does="fails with 1002 (incomplete fragmented message)",
        why="RFC 6455 5.4: control frames, close included, may come between fragments "
        "(wsproto agrees with ratchetpy)",
        applies=lambda r, o, s: (
            _fails(o, 1002, "incomplete fragmented message") and r.end.kind == "close"
        ),
        rest_agrees=_same_events,
    ),
    "websockets-checks-close-reason-before-code": KnownDifference(
        oracle="websockets",
        ratchetpy="fails with 1002 (invalid close code)",
        oracle_does="fails with 1007 when the reason of that close frame is not UTF-8 either",
        why="one close frame, two violations; RFC 6455 7.1.5/8.1 does not order the checks "
        "(wsproto also checks the code first)",
        applies=lambda r, o, s: (
            _fails(r, 1002, "invalid close code") and _fails(o, 1007, "UnicodeDecodeError")
        ),
        rest_agrees=_same_events,
    ),
    "websockets-ignores-length-msb": KnownDifference(
        oracle="websockets",
        ratchetpy="fails with 1002",
        oracle_does="reads the 64-bit length as is (waits for it, or 1009 with a limit)",
        why="RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0 (wsproto "
        "agrees with ratchetpy)",
        applies=lambda r, o, s: (
            _fails(r, 1002, "most significant bit") and (o.end.kind == "open" or _fails(o, 1009))
        ),
        rest_agrees=_same_events,
    ),
    "websockets-checks-utf8-per-message": KnownDifference(
        oracle="websockets",
        ratchetpy="fails with 1007 as soon as the bad bytes arrive",
        oracle_does="decodes text when the whole message is in (later events, later or no failure)",
        why="RFC 6455 8.1 lets an endpoint fail as soon as it sees invalid UTF-8; failing fast "
        "is what Autobahn 6.4 checks (wsproto fails fast too)",
        applies=lambda r, o, s: _fails(r, 1007, "invalid UTF-8 in text message"),
        rest_agrees=_ratchetpy_events_lead,
    ),
    "websockets-limits-control-frames": KnownDifference(
        oracle="websockets",
        ratchetpy="does not count control frames against max_message_size",
        oracle_does="fails with 1009 a ping or pong longer than a limit under 125 bytes",
        why="the limit is on messages (docs/reference/sans-io.md); control frames are not "
        "messages and RFC 6455 5.5 already bounds them to 125 bytes",
        applies=lambda r, o, s: (
            _fails(o, 1009)
            and len(r.events) > len(o.events)
            and r.events[len(o.events)][0] in ("ping", "pong")
        ),
        rest_agrees=_oracle_events_lead,
    ),
    "websockets-internal-error-without-limit": KnownDifference(
        oracle="websockets",
        ratchetpy="inflates the frame (or fails it with 1002 if it is corrupt)",
        oracle_does="fails with 1011: with max_size=None, a compressed final frame of 2044 "
        "bytes or more whose end-of-message tail still inflates trips an assertion",
        why="an internal error of the oracle (PayloadTooBig(None, None) asserts), not a "
        "protocol question; wsproto still checks ratchetpy on these streams",
        applies=lambda r, o, s: _fails(o, 1011, "AssertionError"),
        rest_agrees=_oracle_events_lead,
    ),
    "websockets-bounds-compressed-frames-differently": KnownDifference(
        oracle="websockets",
        ratchetpy="counts a compressed message's size after inflating it",
        oracle_does="fails with 1009 a compressed frame longer on the wire than the budget "
        "left, or one inflating to exactly the budget",
        why="docs/reference/sans-io.md: the limit counts bytes after decompression; an "
        "incompressible message at the limit is a bit longer compressed",
        applies=_compressed_message_at_divergence,
        rest_agrees=_oracle_events_lead,
    ),
}


def explanations(oracle: str, r: Outcome, o: Outcome, s: Survey) -> list[str]:
    """The known differences from ``oracle`` that account for ``r`` differing from ``o``."""
    return [
        name
        for name, diff in KNOWN_DIFFERENCES.items()
        if diff.oracle == oracle and diff.applies(r, o, s) and diff.rest_agrees(r, o, s)
    ]


def explain(oracle: str, r: Outcome, o: Outcome, s: Survey) -> str | None:
    """None if the outcomes agree; else the first known difference that explains them.

    Fails the test when none does.
    """
    if r.key() == o.key():
        return None
    names = explanations(oracle, r, o, s)
    if not names:
        applicable = [
            n for n, d in KNOWN_DIFFERENCES.items() if d.oracle == oracle and d.applies(r, o, s)
        ]
        pytest.fail(
            f"unexplained difference from {oracle} (applicable, but the rest differs: "
            f"{applicable})\nratchetpy: {r}\n{oracle}: {o}\n{s}"
        )
    return names[0]


def compare(oracle: str, r: Outcome, o: Outcome, s: Survey) -> str | None:
    """:func:`explain`, recording which known difference hypothesis ran into."""
    name = explain(oracle, r, o, s)
    if name is not None:
        event(f"known difference: {name}")
    return name
