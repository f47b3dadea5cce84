"""Differential tests: ratchetpy's ``max_message_size`` on client byte streams.

Hypothesis draws a limit and messages around it (text, incompressible and very compressible
bytes, fragmented, with and without permessage-deflate, control frames between them). What
ratchetpy must do is worked out here from docs/howto/limits.md: deliver every message of at most
``limit`` bytes after decompression, all fragments counted together, then fail with 1009. The
oracles (tests/support/oracles.py) are wsproto's server connection, which has no limit, and
websockets' ``ServerProtocol`` with ``max_size`` set to the same limit, which bounds a few
things differently; those differences are the ones named in ``KNOWN_DIFFERENCES``.
"""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from support.client_streams import (
    Case,
    Control,
    DataMessage,
    Negotiation,
    controls,
    draw_chunks,
    negotiations,
    remask,
    text_of_size,
)
from support.known_differences import (
    compare,
    survey,
)
from support.oracles import (
    STILL_OPEN,
    End,
    Item,
    Outcome,
    run_ratchetpy,
    run_websockets,
    run_wsproto,
)


@st.composite
def sized_messages(draw: st.DrawFn, limit: int) -> DataMessage:
    size = max(
        0, draw(st.sampled_from([limit - 1, limit, limit + 1]) | st.integers(0, 2 * limit + 2))
    )
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["text", "random", "zeros"]))
    value: str | bytes
    if kind == "text":
        value = text_of_size(rng, size)
    elif kind == "random":
        value = rng.randbytes(size)  # compressed, it is a little longer than the limit
    else:
        value = bytes(size)  # compressed, it is far shorter than the limit
    pieces = draw(st.integers(1, 3))
    cuts = sorted(
        draw(st.lists(st.integers(0, len(value)), min_size=pieces - 1, max_size=pieces - 1))
    )
    bounds = [0, *cuts, len(value)]
    parts = tuple(value[a:b] for a, b in pairwise(bounds))
    return DataMessage(parts, ((),) * (len(parts) - 1))  # type: ignore[arg-type]


@given(limit=st.integers(0, 3000), negotiation=st.none() | negotiations(), data=st.data())
def test_message_size_limit(
    limit: int, negotiation: Negotiation | None, data: st.DataObject
) -> None:
    ops: list[DataMessage | Control] = []
    for message in data.draw(st.lists(sized_messages(limit), min_size=1, max_size=4)):
        ops.extend(data.draw(st.lists(controls, max_size=1)))
        ops.append(message)
    case = Case(negotiation, tuple(ops), None, b"")
    stream = b"".join(f.encode() for f in remask(data, case.client_frames()))
    chunks = draw_chunks(data, stream)

    # The limit counts bytes after decompression, all fragments together, and a message exactly
    # at the limit passes (docs/howto/limits.md).
    items: list[Item] = []
    end = STILL_OPEN
    for op in ops:
        if isinstance(op, DataMessage):
            value = op.item[1]
            if len(value.encode() if isinstance(value, str) else value) > limit:
                end = End("fail", 1009)
                break
            items.append(op.item)
        else:
            items.append((op.kind, op.payload))
    r = run_ratchetpy(chunks, case.params, limit)
    assert r.key() == Outcome(tuple(items), end).key()
    assert run_ratchetpy(chunks, case.params, None) == case.expected()

    s = survey(stream, case.params)
    assert compare("wsproto", r, run_wsproto(chunks, case.response), s) in (
        None,
        "wsproto-no-size-limit",
    )
    assert compare("websockets", r, run_websockets(chunks, case.params, limit), s) in (
        None,
        "websockets-limits-control-frames",
        "websockets-bounds-compressed-frames-differently",
    )
