"""The state of a Redis subscriber connection, sans-IO: what it should be subscribed to, what
Redis confirmed, and what the replies in pub/sub mode mean.

The rule that keeps a worker from going deaf lives here: the channels *wanted* are the truth,
the channels *confirmed* are what this connection achieved. After a reconnect nothing is
confirmed; :meth:`PubSubState.connection_made` gives the commands that subscribe everything
wanted again, and :class:`Resubscribed` comes out once Redis confirmed them all, which is the
moment a subscriber may have missed messages (the ones published while it was away).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..exceptions import RedisProtocolError, RedisReplyError
from .resp import encode_command

__all__ = [
    "Confirmed",
    "ProbeAnswered",
    "PubSubEvent",
    "PubSubMessage",
    "PubSubState",
    "Resubscribed",
    "as_channel",
]

# SUBSCRIBE takes many channels at once; this many per command keeps each one small.
_BATCH = 500


def as_channel(channel: str | bytes) -> bytes:
    """A channel name as Redis sees it: bytes (``str`` as UTF-8)."""
    return channel.encode() if isinstance(channel, str) else bytes(channel)


@dataclass(frozen=True)
class PubSubMessage:
    """A message published to a channel this connection wants."""

    channel: bytes
    data: bytes


@dataclass(frozen=True)
class Confirmed:
    """Redis confirmed a subscription (``subscribed``) or its end (not ``subscribed``)."""

    channel: bytes
    subscribed: bool


@dataclass(frozen=True)
class Resubscribed:
    """Every channel wanted when the connection was made is confirmed again: messages
    published to them while the connection was away are lost (``channels``)."""

    channels: frozenset[bytes]


@dataclass(frozen=True)
class ProbeAnswered:
    """The answer to a liveness probe (``PING`` in pub/sub mode)."""


PubSubEvent = PubSubMessage | Confirmed | Resubscribed | ProbeAnswered


class PubSubState:
    """Channels wanted and confirmed on one subscriber connection (which reconnects).

    The owner calls :meth:`want` / :meth:`unwant` and sends what they return while
    connected; :meth:`connection_made` after each (re)connect; :meth:`receive` with every
    reply, which returns what it meant (or ``None``).
    """

    __slots__ = ("_awaiting", "_first", "_outstanding", "confirmed", "wanted")

    def __init__(self) -> None:
        self.wanted: set[bytes] = set()
        self.confirmed: set[bytes] = set()
        # Channels of the resubscription under way, still to be confirmed.
        self._awaiting: set[bytes] = set()
        # SUBSCRIBE / UNSUBSCRIBE commands per channel whose replies are still to come: until
        # they are in, a confirmation seen may be an older one's.
        self._outstanding: dict[bytes, int] = {}
        self._first = True  # the first connection resubscribes nothing: nothing was missed

    def want(self, channel: str | bytes) -> bytes:
        """Subscribe ``channel``: the command to send now (empty if already wanted)."""
        name = as_channel(channel)
        if name in self.wanted:
            return b""
        self.wanted.add(name)
        self._outstanding[name] = self._outstanding.get(name, 0) + 1
        return encode_command("SUBSCRIBE", name)

    def unwant(self, channel: str | bytes) -> bytes:
        """Stop wanting ``channel``: the command to send now (empty if not wanted)."""
        name = as_channel(channel)
        if name not in self.wanted:
            return b""
        self.wanted.discard(name)
        self._awaiting.discard(name)
        self._outstanding[name] = self._outstanding.get(name, 0) + 1
        return encode_command("UNSUBSCRIBE", name)

    def connection_made(self) -> bytes:
        """A new connection: nothing is confirmed on it. The commands that subscribe every
        wanted channel again."""
        self.confirmed.clear()
        channels = sorted(self.wanted)
        # The old connection's replies never come; this one's SUBSCRIBE is all there is.
        self._outstanding = dict.fromkeys(channels, 1)
        self._awaiting = set() if self._first else set(channels)
        self._first = False
        return b"".join(
            encode_command("SUBSCRIBE", *channels[start : start + _BATCH])
            for start in range(0, len(channels), _BATCH)
        )

    @staticmethod
    def probe() -> bytes:
        """The liveness probe: in pub/sub mode Redis answers ``PING`` with a ``pong`` push."""
        return encode_command("PING")

    def receive(self, reply: Any) -> PubSubEvent | None:
        """What ``reply`` (from :class:`~ratchetpy.protocol.resp.RespReader`) means.

        Raises :class:`~ratchetpy.RedisReplyError` for an error reply (a refused SUBSCRIBE:
        ``NOPERM``) and :class:`~ratchetpy.RedisProtocolError` for a reply no subscriber
        connection gets.
        """
        if isinstance(reply, RedisReplyError):
            raise reply
        if reply == b"PONG":
            # A connection subscribed to nothing is out of pub/sub mode, and answers a PING
            # as any connection does.
            return ProbeAnswered()
        if not (isinstance(reply, list) and reply and isinstance(reply[0], bytes)):
            raise RedisProtocolError(f"unexpected reply on a subscriber connection: {reply!r}")
        kind = reply[0].lower()
        if kind == b"message" and len(reply) == 3:
            channel, data = reply[1], reply[2]
            # After an UNSUBSCRIBE, messages already under way still arrive: not wanted.
            return PubSubMessage(channel, data) if channel in self.wanted else None
        if kind == b"subscribe" and len(reply) == 3:
            return self._confirmed(reply[1], subscribed=True)
        if kind == b"unsubscribe" and len(reply) == 3:
            return self._confirmed(reply[1], subscribed=False)
        if kind == b"pong":
            return ProbeAnswered()
        raise RedisProtocolError(f"unexpected reply on a subscriber connection: {reply!r}")

    def _confirmed(self, channel: Any, *, subscribed: bool) -> PubSubEvent:
        if not isinstance(channel, bytes):
            raise RedisProtocolError(f"a subscription reply without a channel: {channel!r}")
        left = self._outstanding.get(channel, 0) - 1
        if left > 0:
            self._outstanding[channel] = left
        else:
            self._outstanding.pop(channel, None)
        if subscribed:
            self.confirmed.add(channel)
        else:
            self.confirmed.discard(channel)
        awaiting = self._awaiting
        if subscribed and channel in awaiting:
            awaiting.discard(channel)
            if not awaiting:
                return Resubscribed(frozenset(self.wanted & self.confirmed))
        return Confirmed(channel, subscribed)

    @property
    def resubscribing(self) -> bool:
        """True while a resubscription is waiting for confirmations."""
        return bool(self._awaiting)

    def settled(self, channel: str | bytes) -> bool:
        """True when Redis confirmed ``channel`` and answered every command sent for it since:
        what :meth:`confirmed` says about it is then current."""
        name = as_channel(channel)
        return name in self.confirmed and name not in self._outstanding

    def missing(self) -> set[bytes]:
        """Channels wanted and not confirmed (a worker that reports healthy has none)."""
        return self.wanted - self.confirmed
