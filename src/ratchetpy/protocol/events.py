"""Events of the sans-IO WebSocket protocol (:class:`~ratchetpy.protocol.WebSocketProtocol`).

Like wsproto and h11: bytes go in, these frozen events come out. They never hold sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CloseReceived", "Event", "Message", "Ping", "Pong", "ProtocolFailure"]


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message: ``str`` for a text message, ``bytes`` for a binary one."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a ping; answer with ``protocol.encode_pong(payload)``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer answered a ping (or sent an unsolicited pong)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer sent a close frame.

    ``code`` is 1005 when the frame carried no status code. If we had not sent a close frame
    yet, the closing handshake wants one back (see ``WebSocketProtocol.encode_close``).
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The peer broke the protocol; close with ``code`` and ``reason`` and stop reading.

    ``code`` is 1002 (protocol error), 1007 (invalid UTF-8) or 1009 (message too big).
    It is always the last event of a ``receive_data`` call; later data is ignored.
    """

    code: int
    reason: str


Event = Message | Ping | Pong | CloseReceived | ProtocolFailure
