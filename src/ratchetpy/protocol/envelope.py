"""The envelope of a message between worker processes, and the check that none is missed or
seen twice; sans-IO.

Every message a worker publishes to Redis for the others carries a one-line header naming the
worker it came from and its number among that worker's messages on that channel:

.. code-block:: text

    rp1 <origin> <sequence>\\n<body>

``origin`` is the publishing worker's id (1 to 64 of ``A-Z a-z 0-9 . _ : -``), ``sequence``
counts from 1 per origin and channel, and ``body`` is whatever the fan-out path put in. A
receiver that sees a number jump knows it missed messages (Redis pub/sub is at most once);
one that sees a number again drops the message, so nothing is ever delivered twice. A
backend may publish to Redis directly in the same form with sequence ``0``: not counted, so
never reported missing.
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from dataclasses import dataclass

from ..exceptions import RedisProtocolError

__all__ = ["Envelope", "SequenceTracker", "Verdict"]

_MAGIC = b"rp1 "
_ORIGIN = re.compile(rb"[A-Za-z0-9._:-]{1,64}\Z")
_MAX_SEQUENCE_DIGITS = 20


@dataclass(frozen=True)
class Envelope:
    """One message between workers: who sent it, its number, and what it carries."""

    origin: str
    sequence: int
    body: bytes

    def __post_init__(self) -> None:
        if not _ORIGIN.match(self.origin.encode("ascii", "replace")):
            raise ValueError(f"an origin is 1 to 64 of A-Z a-z 0-9 . _ : -, not {self.origin!r}")
        if self.sequence < 0:
            raise ValueError(f"a sequence is 0 or more, not {self.sequence}")

    def encode(self) -> bytes:
        """The bytes to PUBLISH."""
        return b"%s%s %d\n%s" % (_MAGIC, self.origin.encode("ascii"), self.sequence, self.body)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Read a message from Redis; :class:`~ratchetpy.RedisProtocolError` if it is not one
        of ours (the caller logs it and drops it: someone else published to our channel)."""
        header, newline, body = data.partition(b"\n")
        if not (header.startswith(_MAGIC) and newline):
            raise RedisProtocolError(f"not a ratchetpy message: {data[:40]!r}")
        origin, _, sequence = header[len(_MAGIC) :].partition(b" ")
        if (
            not _ORIGIN.match(origin)
            or not sequence.isdigit()
            or len(sequence) > _MAX_SEQUENCE_DIGITS
        ):
            raise RedisProtocolError(f"a malformed ratchetpy message header: {header[:80]!r}")
        return cls(origin.decode("ascii"), int(sequence), body)


class Verdict(enum.Enum):
    """What :meth:`SequenceTracker.observe` made of a message."""

    FIRST = "first"  #: the first seen from this origin on this channel
    NEXT = "next"  #: the one after the last seen
    GAP = "gap"  #: later than the next: messages in between were missed (deliver it)
    DUPLICATE = "duplicate"  #: seen already, or older than what was seen: drop it
    UNCOUNTED = "uncounted"  #: sequence 0 (a backend's own publication): not checked


class SequenceTracker:
    """The last sequence seen per (origin, channel), for at most ``max_streams`` of them.

    Workers that stopped leave their streams behind; past the bound the least recently seen
    are forgotten (a forgotten stream's next message counts as FIRST: no duplicate is
    invented, a gap just goes unnoticed for it).
    """

    __slots__ = ("_last", "_origins", "max_streams")

    def __init__(self, max_streams: int = 100_000) -> None:
        self.max_streams = max_streams
        self._last: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._origins: dict[bytes, set[str]] = {}  # the streams of each channel

    def forget(self, channel: bytes) -> None:
        """Forget every stream of ``channel`` (this worker stopped listening to it: what is
        published meanwhile is not missed, and the next message of each stream is FIRST)."""
        for origin in self._origins.pop(channel, ()):
            self._last.pop((origin, channel), None)

    def observe(self, channel: bytes, envelope: Envelope) -> tuple[Verdict, int]:
        """Judge ``envelope`` received on ``channel``; the verdict and, for a GAP, how many
        messages were missed (else 0)."""
        if envelope.sequence == 0:
            return Verdict.UNCOUNTED, 0
        key = (envelope.origin, channel)
        last = self._last.get(key)
        if last is not None and envelope.sequence <= last:
            self._last.move_to_end(key)
            return Verdict.DUPLICATE, 0
        self._last[key] = envelope.sequence
        self._last.move_to_end(key)
        if last is None:
            self._origins.setdefault(channel, set()).add(envelope.origin)
        if len(self._last) > self.max_streams:
            (origin, oldest), _ = self._last.popitem(last=False)
            streams = self._origins.get(oldest)
            if streams is not None:
                streams.discard(origin)
                if not streams:
                    del self._origins[oldest]
        if last is None:
            return Verdict.FIRST, 0
        missed = envelope.sequence - last - 1
        return (Verdict.GAP, missed) if missed else (Verdict.NEXT, 0)

    def __len__(self) -> int:
        return len(self._last)
