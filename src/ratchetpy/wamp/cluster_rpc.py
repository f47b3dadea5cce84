"""WAMP calls between workers, sans-IO: what travels when the callee is on another worker.

A procedure registered on one worker is owned by that worker cluster-wide (the broker's
``acquire``, under :func:`procedure_key`), with its registration id as the value: a caller's
worker asks the broker for the owner, then sends the call on the owner's channel
(:func:`rpc_channel`); the callee's worker invokes its callee and sends the answer back on the
caller worker's channel. Each worker of a realm listens to its own channel only.

Bodies are JSON arrays in WAMP's JSON conventions (binary values as ``"\\u0000"`` + base64),
read back with the router's strict decoder::

    [1, 1, ref, reply_to, procedure, registration_id, args, kwargs]     a call
    [1, 2, ref, args, kwargs]                                           its result
    [1, 3, ref, error, args, kwargs]                                    its error

``ref`` numbers the calls of the caller's worker (the callee's worker only hands it back);
``reply_to`` is that worker's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..exceptions import SerializationError
from .messages import MAX_ID
from .serializers import JsonSerializer

__all__ = ["ClusterCall", "ClusterReply", "decode", "procedure_key", "rpc_channel"]

_VERSION = 1
_CALL, _RESULT, _ERROR = 1, 2, 3
_JSON = JsonSerializer()


def rpc_channel(realm: str, worker_id: str) -> str:
    """The broker channel on which ``worker_id`` receives the calls and answers of ``realm``.
    (Not ``wamp:...``: that is where topics are, and a topic may be called anything.)"""
    return f"wamp-rpc:{realm}:{worker_id}"


def procedure_key(realm: str, uri: str) -> str:
    """The broker key whose owner is the worker of the callee of ``uri`` in ``realm``."""
    return f"wamp-procedure:{realm}:{uri}"


@dataclass(frozen=True, slots=True)
class ClusterCall:
    """A call for a callee on the worker that receives it."""

    ref: int
    reply_to: str
    procedure: str
    registration_id: int
    args: list[Any]
    kwargs: dict[str, Any]

    def encode(self) -> bytes:
        """The body to send; :class:`~ratchetpy.EncodeError` for arguments JSON cannot carry."""
        message = [
            _VERSION,
            _CALL,
            self.ref,
            self.reply_to,
            self.procedure,
            self.registration_id,
            self.args,
            self.kwargs,
        ]
        return _JSON.encode(message).encode()


@dataclass(frozen=True, slots=True)
class ClusterReply:
    """The answer to call ``ref`` of the receiving worker: a result, or ``error`` (a URI)."""

    ref: int
    error: str | None
    args: list[Any]
    kwargs: dict[str, Any]

    def encode(self) -> bytes:
        """The body to send; :class:`~ratchetpy.EncodeError` for arguments JSON cannot carry."""
        if self.error is None:
            message = [_VERSION, _RESULT, self.ref, self.args, self.kwargs]
        else:
            message = [_VERSION, _ERROR, self.ref, self.error, self.args, self.kwargs]
        return _JSON.encode(message).encode()


def decode(body: bytes) -> ClusterCall | ClusterReply:
    """Read a body another worker sent on this worker's channel; ValueError if it is not one."""
    try:
        message = _JSON.decode(body.decode())
    except (SerializationError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a WAMP call or answer: {exc}") from None
    if len(message) < 5 or message[0] != _VERSION:
        raise ValueError("not a WAMP call or answer of this version")
    kind, ref = message[1], message[2]
    if type(ref) is not int or ref < 1:
        raise ValueError("a WAMP call or answer without a reference")
    if kind == _CALL and len(message) == 8:
        _, _, _, reply_to, procedure, registration_id, args, kwargs = message
        if not isinstance(reply_to, str) or not isinstance(procedure, str):
            raise ValueError("a WAMP call without a worker to answer or a procedure")
        if type(registration_id) is not int or not 1 <= registration_id <= MAX_ID:
            raise ValueError("a WAMP call without a registration id")
        _arguments(args, kwargs)
        return ClusterCall(ref, reply_to, procedure, registration_id, args, kwargs)
    if kind == _RESULT and len(message) == 5:
        _arguments(message[3], message[4])
        return ClusterReply(ref, None, message[3], message[4])
    if kind == _ERROR and len(message) == 6:
        if not isinstance(message[3], str):
            raise ValueError("a WAMP call's error without an error URI")
        _arguments(message[4], message[5])
        return ClusterReply(ref, message[3], message[4], message[5])
    raise ValueError("neither a WAMP call nor an answer")


def _arguments(args: Any, kwargs: Any) -> None:
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("a WAMP call or answer whose arguments are not a list and a dict")
