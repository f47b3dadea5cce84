"""The envelope between workers and the sequence check, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratchetpy import RedisProtocolError
from ratchetpy.protocol.envelope import Envelope, SequenceTracker, Verdict


@given(
    st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
    st.integers(min_value=0, max_value=2**63),
    st.binary(max_size=200),
)
def test_an_envelope_reads_back_as_written(origin: str, sequence: int, body: bytes) -> None:
    envelope = Envelope(origin, sequence, body)
    assert Envelope.decode(envelope.encode()) == envelope


def test_the_documented_form() -> None:
    # What a backend may publish to Redis itself (sequence 0: not counted).
    assert Envelope.decode(b'rp1 backend 0\n{"x": 1}') == Envelope("backend", 0, b'{"x": 1}')
    assert Envelope("w1", 7, b"hi\nthere").encode() == b"rp1 w1 7\nhi\nthere"


@pytest.mark.parametrize(
    "data",
    [b"hello", b"rp1 w1 7", b"rp1 w 1 7\nx", b"rp1 w1 -1\nx", b"rp1 \n", b"rp1 w1 x\nb",
     b"rp1 " + b"o" * 65 + b" 1\nx", b"rp1 w1 " + b"9" * 21 + b"\nx", b"rp2 w1 1\nx"],
    ids=repr,
)  # fmt: skip
def test_what_is_not_an_envelope_is_refused(data: bytes) -> None:
    with pytest.raises(RedisProtocolError):
        Envelope.decode(data)


def test_bad_envelopes_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="origin"):
        Envelope("has space", 1, b"")
    with pytest.raises(ValueError, match="sequence"):
        Envelope("w1", -1, b"")


def test_gaps_and_duplicates_per_origin_and_channel() -> None:
    tracker = SequenceTracker()

    def seen(channel: bytes, origin: str, sequence: int) -> tuple[Verdict, int]:
        return tracker.observe(channel, Envelope(origin, sequence, b""))

    assert seen(b"a", "w1", 1) == (Verdict.FIRST, 0)
    assert seen(b"a", "w1", 2) == (Verdict.NEXT, 0)
    assert seen(b"a", "w1", 2) == (Verdict.DUPLICATE, 0)
    assert seen(b"a", "w1", 1) == (Verdict.DUPLICATE, 0)
    assert seen(b"a", "w1", 6) == (Verdict.GAP, 3)
    assert seen(b"b", "w1", 9) == (Verdict.FIRST, 0)  # another channel, its own count
    assert seen(b"a", "w2", 1) == (Verdict.FIRST, 0)  # another worker
    assert seen(b"a", "backend", 0) == (Verdict.UNCOUNTED, 0)
    assert seen(b"a", "backend", 0) == (Verdict.UNCOUNTED, 0)


def test_the_tracker_forgets_the_least_recent_streams_past_its_bound() -> None:
    tracker = SequenceTracker(max_streams=2)
    for origin in ("w1", "w2"):
        tracker.observe(b"a", Envelope(origin, 5, b""))
    tracker.observe(b"a", Envelope("w1", 6, b""))  # w1 is the most recent now
    tracker.observe(b"a", Envelope("w3", 1, b""))  # w2 is forgotten
    assert len(tracker) == 2
    assert tracker.observe(b"a", Envelope("w2", 5, b"")) == (Verdict.FIRST, 0)
    assert tracker.observe(b"a", Envelope("w1", 7, b"")) == (Verdict.FIRST, 0)  # evicted by w2


def test_a_channel_no_longer_listened_to_is_forgotten_with_all_its_streams() -> None:
    tracker = SequenceTracker(max_streams=3)
    tracker.observe(b"room", Envelope("w1", 5, b""))
    tracker.observe(b"room", Envelope("w2", 9, b""))
    tracker.observe(b"other", Envelope("w1", 2, b""))
    tracker.forget(b"room")
    tracker.forget(b"never-seen")  # harmless
    assert len(tracker) == 1
    # Listening again later: what came meanwhile is not "missed".
    assert tracker.observe(b"room", Envelope("w1", 40, b"")) == (Verdict.FIRST, 0)
    assert tracker.observe(b"other", Envelope("w1", 3, b"")) == (Verdict.NEXT, 0)
    for n in range(4):  # evictions keep the index right
        tracker.observe(b"x", Envelope(f"v{n}", 1, b""))
    tracker.forget(b"x")
    assert len(tracker) == 0
