"""Differential tests: what ratchetpy's codec decodes from valid client byte streams.

The oracles are wsproto and websockets, run sans-IO (tests/support/oracles.py): a wsproto client
connection writes the streams, and wsproto's server connection and websockets' ``ServerProtocol``
decode them next to ``WebSocketProtocol.receive_data``. Valid streams (text, binary, fragmented,
masked, with and without permessage-deflate, control frames between fragments, a close frame
and bytes after it, split into random reads) must give exactly the messages that were sent, and
the same as both oracles, but for the one wsproto defect named in ``KNOWN_DIFFERENCES``, which
the last test shows on a plain example.

Broken streams are in test_codec_mutations.py, the message size limit in test_codec_limits.py.
"""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from support.client_streams import (
    DEFAULT_DEFLATE,
    Case,
    Control,
    DataMessage,
    Negotiation,
    cases,
    draw_chunks,
    remask,
)
from support.known_differences import (
    compare,
    explain,
    survey,
)
from support.oracles import (
    run_ratchetpy,
    run_websockets,
    run_wsproto,
)


@given(case=cases(), data=st.data())
def test_valid_streams_decode_like_wsproto_and_websockets(case: Case, data: st.DataObject) -> None:
    frames = remask(data, case.client_frames())
    stream = b"".join(f.encode() for f in frames) + case.trailer
    chunks = draw_chunks(data, stream)
    s = survey(stream, case.params)
    expected = case.expected()
    event("permessage-deflate" if case.negotiation else "no compression")

    r = run_ratchetpy(chunks, case.params, 2**20)
    assert r == expected
    assert compare("wsproto", r, run_wsproto(chunks, case.response), s) in (
        None,
        "wsproto-loses-compression-at-control-frame",
    )
    assert compare("websockets", r, run_websockets(chunks, case.params, 2**20), s) is None


def test_control_frame_between_compressed_fragments() -> None:
    """A plain example of the wsproto defect the valid-stream test tolerates."""
    negotiation = Negotiation(False, 15, False, 15, *DEFAULT_DEFLATE)
    op = DataMessage(("hello " * 10, "world " * 10), ((Control("ping", b"x"),),))
    case = Case(negotiation, (op, DataMessage(("again",), ())), None, b"")
    stream = b"".join(f.encode() for f in case.client_frames())
    r = run_ratchetpy([stream], case.params, 2**20)
    assert r == case.expected()
    assert run_websockets([stream], case.params, 2**20) == r
    w = run_wsproto([stream], case.response)
    assert w.key() != r.key()
    assert explain("wsproto", r, w, survey(stream, case.params)) == (
        "wsproto-loses-compression-at-control-frame"
    )
