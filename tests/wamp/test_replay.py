"""ReplayGuard, sans-IO: signatures admitted once while inside their window, bounded memory."""

from __future__ import annotations

import pytest

from ratchetpy.wamp import Admission, ReplayGuard


def digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_a_signature_is_admitted_once_until_it_expires() -> None:
    guard = ReplayGuard()
    assert guard.admit(digest(1), expires=100.0, now=0.0) is Admission.FIRST
    assert guard.admit(digest(1), expires=100.0, now=50.0) is Admission.REPLAYED
    assert guard.admit(digest(1), expires=100.0, now=100.0) is Admission.REPLAYED
    # Past its expiry the endpoint refuses the timestamp itself; the guard forgets it.
    assert guard.admit(digest(2), expires=300.0, now=101.0) is Admission.FIRST
    assert len(guard) == 1
    assert guard.admit(digest(1), expires=400.0, now=101.0) is Admission.FIRST


def test_expired_signatures_make_room_and_a_full_guard_says_when() -> None:
    guard = ReplayGuard(max_entries=3)
    for n, expires in enumerate((50.0, 40.0, 60.0)):  # clock skew: not in expiry order
        assert guard.admit(digest(n), expires=expires, now=0.0) is Admission.FIRST
    assert guard.admit(digest(9), expires=99.0, now=10.0) is Admission.FULL
    assert guard.room_at == 40.0  # the earliest expiry, though it is not the oldest entry
    assert guard.admit(digest(9), expires=99.0, now=39.0) is Admission.FULL  # no sweep yet
    assert guard.admit(digest(9), expires=99.0, now=45.0) is Admission.FIRST
    assert len(guard) == 3
    assert guard.admit(digest(1), expires=99.0, now=45.0) is Admission.FULL  # 0, 2, 9 remain
    assert guard.admit(digest(0), expires=99.0, now=46.0) is Admission.REPLAYED


def test_memory_stays_bounded_under_a_steady_stream() -> None:
    guard = ReplayGuard(max_entries=1000)
    for n in range(10_000):
        now = n / 10  # ten a second, each valid for 60 s: 600 at a time
        assert guard.admit(digest(n), expires=now + 60, now=now) is Admission.FIRST
    assert len(guard) <= 601


def test_a_forgotten_signature_is_admitted_again() -> None:
    guard = ReplayGuard()
    assert guard.admit(digest(1), expires=100.0, now=0.0) is Admission.FIRST
    guard.forget(digest(1))
    guard.forget(digest(2))  # unknown: nothing to do
    assert guard.admit(digest(1), expires=100.0, now=1.0) is Admission.FIRST


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries must be positive"):
        ReplayGuard(0)
