"""ReplayGuard: which signed publications were accepted already, so none is delivered twice.

A signature binds a body to a timestamp, and :class:`~ratchetpy.wamp.PublishEndpoint` accepts
a timestamp for ``timestamp_window`` seconds either way. Within that time a captured request
would pass again; the guard remembers every accepted signature until its timestamp has left
the window, and refuses it a second time. Sans-IO: the caller passes the time.

Memory is bounded by ``max_entries``. When that many signatures are still inside their window
the guard refuses new ones (:attr:`Admission.FULL`) rather than forget one early, which would
let that one be replayed: the endpoint answers 503, visibly, instead of delivering a replay.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

__all__ = ["Admission", "ReplayGuard"]


class Admission(enum.Enum):
    """What :meth:`ReplayGuard.admit` decided."""

    FIRST = "first"  #: never seen: remembered now, deliver it
    REPLAYED = "replayed"  #: accepted before, inside its window: refuse it
    FULL = "full"  #: too many signatures inside their windows to remember one more


class ReplayGuard:
    """Remembers accepted signatures until they expire; at most ``max_entries`` at once.

    About 200 bytes per signature (a 32-byte digest and its expiry in an ordered dict): the
    default 100,000 take about 20 MB and sustain 333 signed publications a second with the
    default 300 s window.
    """

    __slots__ = ("_expires", "_next_sweep", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be positive, not {max_entries}")
        self.max_entries = max_entries
        # In the order accepted, which is nearly the order of expiry (timestamps are close to
        # the clock): the oldest entries are the first to go, in O(1) each.
        self._expires: OrderedDict[bytes, float] = OrderedDict()
        self._next_sweep = 0.0  # no entry expires before this (known after a full sweep)

    def __len__(self) -> int:
        return len(self._expires)

    @property
    def room_at(self) -> float:
        """When the earliest remembered signature expires, as far as the guard knows (exact
        right after it answered :attr:`Admission.FULL`)."""
        return self._next_sweep

    def admit(self, digest: bytes, *, expires: float, now: float) -> Admission:
        """Decide on the signature ``digest``, remembering it until ``expires`` if new."""
        seen = self._expires
        known = seen.get(digest)
        if known is not None and known >= now:
            return Admission.REPLAYED
        while seen:
            oldest, until = next(iter(seen.items()))
            if until >= now:
                break
            del seen[oldest]
        if len(seen) >= self.max_entries and not self._sweep(now):
            return Admission.FULL
        seen[digest] = expires
        seen.move_to_end(digest)
        return Admission.FIRST

    def forget(self, digest: bytes) -> None:
        """Drop ``digest``: it was admitted, but the request it signed was not delivered."""
        self._expires.pop(digest, None)

    def _sweep(self, now: float) -> bool:
        """Drop every expired entry, wherever clock skew put it; True if that made room.

        Until the earliest remaining expiry nothing can be dropped, so no other pass runs
        before then: a guard that stays full costs no more than one that does not.
        """
        if now < self._next_sweep:
            return False
        seen = self._expires
        for expired in [digest for digest, until in seen.items() if until < now]:
            del seen[expired]
        self._next_sweep = min(seen.values(), default=now)
        return len(seen) < self.max_entries
