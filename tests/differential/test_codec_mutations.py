"""Differential tests: how ratchetpy's codec ends on broken client byte streams.

The oracles are wsproto's server connection and websockets' ``ServerProtocol``, run sans-IO
(tests/support/oracles.py). Hypothesis takes the streams a wsproto client writes and breaks
them, frame by frame (reserved bits, opcodes, lengths, masks, fragment order, invalid UTF-8,
bad close frames, corrupt or truncated compressed data) and byte by byte (flipped bits, a cut);
all three implementations must then give the same messages and end the same way: the same
close code, or the same "still open". A disagreement is allowed only where it is named in
``KNOWN_DIFFERENCES``, with the reason ratchetpy's answer is right.

Also here: each known difference on one small stream of its own (it still exists, and the
table's rule is the one that recognizes it), the classic protocol violations one by one, and a
regression test for data after a final deflate block.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from ratchetpy.protocol import DeflateParameters
from support.client_streams import (
    DEFAULT_DEFLATE,
    Case,
    cases,
    draw_chunks,
    remask,
)
from support.frames import client_frame
from support.known_differences import (
    KNOWN_DIFFERENCES,
    TAIL,
    compare,
    explain,
    explanations,
    survey,
)
from support.oracles import (
    STILL_OPEN,
    End,
    Outcome,
    WireFrame,
    run_ratchetpy,
    run_websockets,
    run_wsproto,
)

INVALID_UTF8 = (b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82")
CLOSE_CODES_TO_TRY = (0, 999, 1000, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 3000, 4999, 5000)

# Mutations of the frame list, then mutations of the bytes.
STRUCTURAL = (
    "rsv",
    "fin",
    "opcode",
    "unmask",
    "long_length",
    "msb_length",
    "huge_length",
    "oversize_control",
    "insert_continuation",
    "insert_data",
    "bad_utf8",
    "bad_utf8_message",
    "bad_close",
    "drop",
    "duplicate",
    "truncate_compressed",
    "corrupt_compressed",
)
BYTE_LEVEL = ("flip_header_bit", "flip_any_bit", "cut_stream")


@dataclass(frozen=True)
class Mutation:
    kind: str
    where: int  # picks the frame or position (modulo how many there are)
    value: int  # picks the variant: bit, opcode, code, offset...
    blob: bytes  # bytes the mutation inserts, if it inserts any


mutation_strategy = st.builds(
    Mutation,
    st.sampled_from(STRUCTURAL + BYTE_LEVEL),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**16 - 1),
    st.binary(max_size=16),
)


def deflate_alone(data: bytes, window_bits: int) -> bytes:
    """A message compressed alone, as a client without context takeover would (by zlib itself)."""
    compressor = zlib.compressobj(wbits=-window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def frame_roles(frames: Sequence[WireFrame], compression: bool) -> list[tuple[int, bool] | None]:
    """For each data frame, (opcode of its message, compressed); None for control frames."""
    roles: list[tuple[int, bool] | None] = []
    opcode, compressed = 0, False
    for f in frames:
        op = f.b0 & 0x0F
        if op >= 8:
            roles.append(None)
            continue
        if op:
            opcode, compressed = op, compression and bool(f.b0 & 0x40)
        roles.append((opcode, compressed))
    return roles


def mutate(
    frames: list[WireFrame], m: Mutation, params: DeflateParameters | None
) -> list[WireFrame]:
    frames = list(frames)
    mask = (m.value * 2654435761 % 2**32).to_bytes(4, "big")
    at = m.where % (len(frames) + 1)
    roles = frame_roles(frames, params is not None)
    bad = INVALID_UTF8[m.value % len(INVALID_UTF8)]
    kind = m.kind
    if kind == "oversize_control":
        size = 126 + m.value % 130
        payload = ((m.blob or b"x") * size)[:size]
        frames.insert(at, WireFrame(0x80 | (0x8, 0x9, 0xA)[m.value % 3], payload, mask))
    elif kind == "insert_continuation":
        frames.insert(at, WireFrame(0x80 if m.value & 1 else 0, m.blob, mask))
    elif kind == "insert_data":
        b0 = (0x80 if m.value & 1 else 0) | (0x40 if m.value & 2 else 0) | (1 + (m.value >> 2) % 2)
        frames.insert(at, WireFrame(b0, m.blob, mask))
    elif kind == "bad_utf8_message":
        text = m.blob[:4] + bad + m.blob[4:]
        if params is not None and m.value & 1:
            frames.insert(
                at, WireFrame(0xC1, deflate_alone(text, params.client_max_window_bits), mask)
            )
        else:
            frames.insert(at, WireFrame(0x81, text, mask))
    elif kind == "bad_close":
        variant = m.value % 4
        if variant == 0:
            payload = m.blob[:1] or b"\x03"  # one byte: half a code
        elif variant == 1:
            code = CLOSE_CODES_TO_TRY[(m.value >> 2) % len(CLOSE_CODES_TO_TRY)]
            payload = struct.pack("!H", code) + b"bye"
        elif variant == 2:
            payload = struct.pack("!H", 1000) + b"ok" + bad
        else:
            payload = struct.pack("!H", 1001) + m.blob
        frames.insert(at, WireFrame(0x88, payload, mask))
    elif kind in ("bad_utf8", "truncate_compressed", "corrupt_compressed"):
        if kind == "bad_utf8":
            targets = [i for i, role in enumerate(roles) if role == (1, False)]
        else:
            targets = [i for i, role in enumerate(roles) if role and role[1] and frames[i].payload]
        if not targets:
            return frames
        i = targets[m.where % len(targets)]
        p = frames[i].payload
        if kind == "bad_utf8":
            offset = m.value % (len(p) + 1)
            p = p[:offset] + bad + p[offset:]
        elif kind == "truncate_compressed":
            p = p[: m.value % len(p)]
        elif m.value & 1:
            p = m.blob or b"\xff"
        else:
            offset = (m.value >> 1) % len(p)
            p = p[:offset] + bytes((p[offset] ^ (1 + (m.value >> 8) % 255),)) + p[offset + 1 :]
        frames[i] = replace(frames[i], payload=p)
    elif frames:
        i = m.where % len(frames)
        f = frames[i]
        if kind == "rsv":
            frames[i] = replace(f, b0=f.b0 | (0x40, 0x20, 0x10, 0x70)[m.value % 4])
        elif kind == "fin":
            frames[i] = replace(f, b0=f.b0 ^ 0x80)
        elif kind == "opcode":
            frames[i] = replace(f, b0=(f.b0 & 0xF0) | m.value % 16)
        elif kind == "unmask":
            frames[i] = replace(f, mask=None)
        elif kind == "long_length":
            frames[i] = replace(f, form=(16, 64)[m.value % 2])
        elif kind == "msb_length":
            frames[i] = replace(f, declared=1 << 63 | m.value << m.value % 40)
        elif kind == "huge_length":
            more = (
                2**62 + 1 + m.value
                if m.value % 4 == 0
                else len(f.payload) + 1 + (m.value << m.value % 32)
            )
            frames[i] = replace(f, declared=more)
        elif kind == "drop":
            del frames[i]
        elif kind == "duplicate":
            frames.insert(i, f)
    return frames


def serialize(frames: Sequence[WireFrame], byte_mutations: Sequence[Mutation]) -> bytes:
    spans: list[tuple[int, int]] = []  # (start, header size without the mask) of each frame
    out = bytearray()
    for f in frames:
        spans.append((len(out), f.header_size()))
        out += f.encode()
    cut = len(out)
    for m in byte_mutations:
        if m.kind == "flip_header_bit" and spans:
            start, size = spans[m.where % len(spans)]
            bit = m.value % (8 * size)
            out[start + bit // 8] ^= 1 << bit % 8
        elif m.kind == "flip_any_bit" and out:
            bit = (m.value * 8 * len(out)) >> 16
            out[bit // 8] ^= 1 << bit % 8
        elif m.kind == "cut_stream":
            cut = min(
                cut,
                len(out) - (m.value >> 1) % 16 - 1 if m.value & 1 else (m.value * len(out)) >> 16,
            )
    return bytes(out[: max(cut, 0)])


@given(
    case=cases(trailer=False),
    mutations=st.lists(mutation_strategy, min_size=1, max_size=3),
    data=st.data(),
)
def test_mutated_streams_end_like_wsproto_and_websockets(
    case: Case, mutations: list[Mutation], data: st.DataObject
) -> None:
    frames = remask(data, case.client_frames())
    for m in mutations:
        if m.kind in STRUCTURAL:
            frames = mutate(frames, m, case.params)
    stream = serialize(frames, [m for m in mutations if m.kind in BYTE_LEVEL])
    chunks = draw_chunks(data, stream)
    s = survey(stream, case.params)
    note(f"stream: {stream.hex()}")

    r = run_ratchetpy(chunks, case.params, None)
    event(f"ratchetpy: {r.end.kind} {r.end.code or ''}")
    whole = run_ratchetpy([stream], case.params, None)
    assert whole == r or _corrupt_text_either_way(whole, r), "depends on how bytes are split"
    compare("wsproto", r, run_wsproto(chunks, case.response), s)
    compare("websockets", r, run_websockets(chunks, case.params, None), s)


def _corrupt_text_either_way(a: Outcome, b: Outcome) -> bool:
    # Inflating a corrupt compressed text message piece by piece may output bytes that are
    # not UTF-8 before zlib sees the corruption; inflated in one go, zlib fails first and
    # keeps its partial output. Either code describes the same broken frame.
    return a.events == b.events and {a.end.text, b.end.text} == {
        "invalid compressed data",
        "invalid UTF-8 in text message",
    }


# -- each known difference, on one small stream ------------------------------------------------

EXAMPLE_MASK = b"\x37\xfa\x21\x3d"  # fixed, so that the bytes of these examples never change


def fixed_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    length_form: int | None = None,
) -> bytes:
    """support.frames.client_frame, masked with ``EXAMPLE_MASK``."""
    return client_frame(
        opcode, payload, fin=fin, rsv=rsv, length_form=length_form, mask=EXAMPLE_MASK
    )


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return fixed_frame(0x8, struct.pack("!H", code) + reason)


def lying_frame(opcode: int, payload: bytes, declared: int) -> bytes:
    """A final frame whose length field says ``declared``, whatever the payload is."""
    return WireFrame(0x80 | opcode, payload, EXAMPLE_MASK, declared=declared).encode()


def final_block(data: bytes) -> bytes:
    """``data`` compressed into deflate blocks ending with BFINAL set (RFC 7692 7.2.3.4)."""
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)


@dataclass(frozen=True)
class Example:
    stream: bytes
    ratchetpy: Outcome  # what ratchetpy must make of it
    deflate: bool = False  # with permessage-deflate at its defaults
    limit: int | None = None  # max_message_size, the same for websockets


_HELLO = deflate_alone(b"hello world " * 10, 15)
_RANDOM_100 = random.Random(0).randbytes(100)
_STORED_4000 = b"\x00" + struct.pack("<HH", 4000, 4000 ^ 0xFFFF) + b"a" * 2100
_TWO_FINAL_BLOCKS = fixed_frame(0x1, final_block(b"Hello"), rsv=0x40) + fixed_frame(
    0x1, final_block(b"again"), rsv=0x40
)

DIFFERENCE_EXAMPLES: dict[str, Example] = {
    "wsproto-rejects-non-minimal-length": Example(
        fixed_frame(0x1, b"hi", length_form=16), Outcome((("text", "hi"),), STILL_OPEN)
    ),
    "wsproto-rejects-close-code-1014": Example(
        close_frame(1014, b"bad gateway"), Outcome((), End("close", 1014, "bad gateway"))
    ),
    "wsproto-corrupt-deflate-is-1007": Example(
        fixed_frame(0x1, b"\xff\xff\xff", rsv=0x40), Outcome((), End("fail", 1002)), deflate=True
    ),
    "wsproto-inflates-before-checking-fragment-order": Example(
        fixed_frame(0x2, fin=False, rsv=0x40) + fixed_frame(0x1, bytes(5), fin=False),
        Outcome((), End("fail", 1002)),
        deflate=True,
    ),
    "wsproto-loses-compression-at-control-frame": Example(
        fixed_frame(0x1, _HELLO[:5], fin=False, rsv=0x40)
        + fixed_frame(0x9, b"x")
        + fixed_frame(0x0, _HELLO[5:]),
        Outcome((("ping", b"x"), ("text", "hello world " * 10)), STILL_OPEN),
        deflate=True,
    ),
    "wsproto-stops-at-final-deflate-block": Example(
        _TWO_FINAL_BLOCKS, Outcome((("text", "Hello"), ("text", "again")), STILL_OPEN), True
    ),
    "websockets-stops-at-final-deflate-block": Example(
        _TWO_FINAL_BLOCKS, Outcome((("text", "Hello"), ("text", "again")), STILL_OPEN), True
    ),
    "wsproto-no-size-limit": Example(
        fixed_frame(0x2, bytes(11)), Outcome((), End("fail", 1009)), limit=10
    ),
    "wsproto-unlimited-is-below-2**62": Example(
        lying_frame(0x2, b"", 2**62 + 1), Outcome((), End("fail", 1009))
    ),
    "websockets-unlimited-is-below-2**62": Example(
        lying_frame(0x2, b"", 2**62 + 1), Outcome((), End("fail", 1009))
    ),
    "wsproto-checks-at-other-points-of-an-unfinished-frame": Example(
        b"\x83\x85",
        Outcome((), STILL_OPEN),  # a reserved opcode, and the stream stops
    ),
    "websockets-checks-at-other-points-of-an-unfinished-frame": Example(
        fixed_frame(0x1, b"hello", rsv=0x20)[:-2],
        Outcome((), End("fail", 1002)),  # RSV2, cut short
    ),
    "websockets-rejects-close-inside-fragmented-message": Example(
        fixed_frame(0x1, b"hel", fin=False) + close_frame(1000, b"bye"),
        Outcome((), End("close", 1000, "bye")),
    ),
    "websockets-checks-close-reason-before-code": Example(
        close_frame(0, b"\x80"), Outcome((), End("fail", 1002))
    ),
    "websockets-ignores-length-msb": Example(
        lying_frame(0x2, b"x", 2**63 + 1), Outcome((), End("fail", 1002))
    ),
    "websockets-checks-utf8-per-message": Example(
        fixed_frame(0x1, b"\xff", fin=False) + fixed_frame(0x9, b"p"),
        Outcome((), End("fail", 1007)),
    ),
    "websockets-limits-control-frames": Example(
        fixed_frame(0x9, b"0123456789ab"),
        Outcome((("ping", b"0123456789ab"),), STILL_OPEN),
        limit=10,
    ),
    "websockets-internal-error-without-limit": Example(
        # A stored deflate block announcing 4000 bytes with 2100 present: the tail that the
        # receiver appends becomes 4 more bytes of it.
        fixed_frame(0x2, _STORED_4000, rsv=0x40),
        Outcome((("binary", b"a" * 2100 + TAIL),), STILL_OPEN),
        deflate=True,
    ),
    "websockets-bounds-compressed-frames-differently": Example(
        fixed_frame(0x2, deflate_alone(_RANDOM_100, 15), rsv=0x40),
        Outcome((("binary", _RANDOM_100),), STILL_OPEN),
        deflate=True,
        limit=100,
    ),
}


def test_every_known_difference_has_an_example() -> None:
    assert set(DIFFERENCE_EXAMPLES) == set(KNOWN_DIFFERENCES)


@pytest.mark.parametrize("name", list(KNOWN_DIFFERENCES))
def test_known_difference(name: str) -> None:
    """The difference still exists, ratchetpy gives the answer argued for, and the table's
    rule is the one that recognizes it."""
    diff, example = KNOWN_DIFFERENCES[name], DIFFERENCE_EXAMPLES[name]
    params, response = DEFAULT_DEFLATE if example.deflate else (None, None)
    chunks = [example.stream]
    r = run_ratchetpy(chunks, params, example.limit)
    assert r.key() == example.ratchetpy.key()
    if diff.oracle == "wsproto":
        o = run_wsproto(chunks, response)
    else:
        o = run_websockets(chunks, params, example.limit)
    assert o.key() != r.key(), f"{diff.oracle} now agrees with ratchetpy: drop {name}"
    assert name in explanations(diff.oracle, r, o, survey(example.stream, params))


# -- the classic violations, one by one --------------------------------------------------------

_ONE_FRAGMENT = deflate_alone(b"fragmented", 15)

VIOLATIONS: list[tuple[str, bytes, bool, int]] = [
    # (name, stream, with permessage-deflate, the close code ratchetpy must answer)
    ("unmasked", client_frame(0x1, b"hi", masked=False), False, 1002),
    ("rsv1-without-deflate", fixed_frame(0x1, b"hi", rsv=0x40), False, 1002),
    ("rsv2", fixed_frame(0x1, b"hi", rsv=0x20), True, 1002),
    ("rsv3", fixed_frame(0x2, b"hi", rsv=0x10), True, 1002),
    ("rsv1-on-ping", fixed_frame(0x9, b"hi", rsv=0x40), True, 1002),
    (
        "rsv1-on-continuation",
        fixed_frame(0x1, _ONE_FRAGMENT[:3], fin=False, rsv=0x40)
        + fixed_frame(0x0, _ONE_FRAGMENT[3:], rsv=0x40),
        True,
        1002,
    ),
    ("reserved-data-opcode", fixed_frame(0x3, b"hi"), False, 1002),
    ("reserved-control-opcode", fixed_frame(0xB, b"hi"), False, 1002),
    ("ping-of-126-bytes", fixed_frame(0x9, bytes(126)), False, 1002),
    ("close-of-126-bytes", fixed_frame(0x8, b"\x03\xe8" + bytes(124)), False, 1002),
    ("fragmented-ping", fixed_frame(0x9, b"hi", fin=False) + fixed_frame(0x0, b"!"), False, 1002),
    ("continuation-without-start", fixed_frame(0x0, b"hi"), False, 1002),
    (
        "new-message-inside-fragmented",
        fixed_frame(0x1, b"a", fin=False) + fixed_frame(0x1, b"b"),
        False,
        1002,
    ),
    ("invalid-utf8", fixed_frame(0x1, b"caf\xff"), False, 1007),
    ("overlong-utf8", fixed_frame(0x1, b"\xc0\xaf"), False, 1007),
    ("surrogate-in-utf8", fixed_frame(0x1, b"\xed\xa0\x80"), False, 1007),
    ("utf8-cut-at-message-end", fixed_frame(0x1, b"\xe2\x82"), False, 1007),
    (
        "invalid-utf8-across-fragments",
        fixed_frame(0x1, b"\xe2\x82", fin=False) + fixed_frame(0x0, b"A"),
        False,
        1007,
    ),
    (
        "invalid-utf8-compressed",
        fixed_frame(0x1, deflate_alone(b"caf\xff", 15), rsv=0x40),
        True,
        1007,
    ),
    ("invalid-utf8-close-reason", close_frame(1000, b"\xff"), False, 1007),
    ("close-payload-of-one-byte", fixed_frame(0x8, b"\x03"), False, 1002),
    *(
        (f"close-code-{code}", close_frame(code), False, 1002)
        for code in CLOSE_CODES_TO_TRY
        if code not in (1000, 1014, 3000, 4999)
    ),
    ("length-msb-set", lying_frame(0x2, b"", 2**63), False, 1002),
    ("corrupt-compressed", fixed_frame(0x2, b"\xff\xff", rsv=0x40), True, 1002),
    (
        "truncated-compressed",
        fixed_frame(0x1, deflate_alone(b"hello hello hello", 15)[:8], rsv=0x40),
        True,
        1002,
    ),
]


@pytest.mark.parametrize(
    ("stream", "deflate", "code"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_violation(stream: bytes, deflate: bool, code: int) -> None:
    params, response = DEFAULT_DEFLATE if deflate else (None, None)
    s = survey(stream, params)
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        r = run_ratchetpy(chunks, params, None)
        assert r.end.key() == ("fail", code)
        explain("wsproto", r, run_wsproto(chunks, response), s)
        explain("websockets", r, run_websockets(chunks, params, None), s)


# -- a regression test -------------------------------------------------------------------------


def test_data_after_a_final_deflate_block_does_not_depend_on_reads() -> None:
    """After a deflate block with BFINAL set, the rest of the message is ignored whether it
    comes in the same read or a later one.

    It used to be dropped in the same read but inflated as a new deflate stream in a later
    one, which failed the connection with 1002 (fixed in ratchetpy/protocol/deflate.py's
    Inflater); the mutated-stream test found it.
    """
    # "Hello" in a BFINAL block, then one byte that is not valid deflate on its own. wsproto
    # and websockets both give "Hello" (zlib leaves the byte as unused data), in any chunks.
    stream = fixed_frame(0x1, final_block(b"Hello") + b"\xff", rsv=0x40)
    assert stream.hex() == "c18837fa213dc4b2ecf4fefd21c2"
    params, response = DEFAULT_DEFLATE
    whole = run_ratchetpy([stream], params, None)
    assert whole == Outcome((("text", "Hello"),), STILL_OPEN)
    assert run_wsproto([stream[:-1], stream[-1:]], response) == whole
    assert run_websockets([stream[:-1], stream[-1:]], params, None) == whole
    assert run_ratchetpy([stream[:-1], stream[-1:]], params, None) == whole
