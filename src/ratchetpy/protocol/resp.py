"""RESP, the Redis protocol, sans-IO: commands to bytes, bytes to replies.

Commands are encoded here (RESP2 arrays of bulk strings: what every Redis and Valkey accepts).
Replies are parsed by hiredis' ``Reader``, the C parser redis-py uses, behind
:class:`RespReader`, which adds what a server needs and hiredis leaves out: a bound on the
bytes a reply may hold before it is complete, and errors that say whose fault they are.

hiredis is optional (``pip install ratchetpy[redis]``): this module imports it when a
:class:`RespReader` is made, with a clear :class:`ImportError` when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..exceptions import RedisProtocolError, RedisReplyError

__all__ = ["RespReader", "encode_command"]

Arg = bytes | str | int | float


def _as_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):  # a bool is an int to Python, but never what a caller meant
        raise TypeError("a Redis command argument cannot be a bool")
    if isinstance(arg, (int, float)):
        return repr(arg).encode()
    kind = type(arg).__name__
    raise TypeError(f"a Redis command argument is bytes, str, int or float, not {kind}")


def encode_command(*args: Arg) -> bytes:
    """One command as RESP: ``encode_command("PUBLISH", "room", b"hi")``.

    ``str`` goes as UTF-8, numbers in their decimal form; raises TypeError for anything else.
    """
    if not args:
        raise ValueError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _as_bytes(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class RespReader:
    """Feed it the bytes a Redis server sends; take replies out in order.

    Replies are ``bytes`` (simple and bulk strings), ``int``, ``None`` (nil), ``list``
    (arrays, pub/sub pushes), or a :class:`~ratchetpy.RedisReplyError` *instance* for an
    error reply (``-ERR ...``): a value, since it answers one command of a pipeline and the
    connection goes on; whoever waits for that reply raises it.

    ``max_pending`` bounds the bytes held for a reply that is not complete yet: a server (or
    something posing as one) cannot make the reader buffer without limit. Past it
    :class:`~ratchetpy.RedisProtocolError` is raised, as it is for bytes that are not RESP;
    both mean the connection cannot be trusted any more: close it.
    """

    __slots__ = ("_reader", "max_pending")

    def __init__(self, *, max_pending: int = 64 * 2**20) -> None:
        try:
            import hiredis
        except ImportError:  # pragma: no cover - exercised only where hiredis is missing
            raise ImportError(
                "ratchetpy's Redis support needs hiredis: pip install 'ratchetpy[redis]'"
            ) from None
        self._reader: Any = hiredis.Reader(replyError=RedisReplyError, protocolError=_BadReply)
        self.max_pending = max_pending

    def feed(self, data: bytes | bytearray) -> None:
        """Take bytes read from the connection."""
        self._reader.feed(data)
        if self._reader.len() > self.max_pending:
            raise RedisProtocolError(
                f"a reply from the Redis server is over {self.max_pending} bytes"
            )

    def replies(self) -> Iterator[Any]:
        """Every reply complete so far, in order."""
        reader = self._reader
        while True:
            try:
                reply = reader.gets()
            except _BadReply as exc:
                raise RedisProtocolError(
                    f"the Redis server sent bytes that are not RESP: {exc}"
                ) from None
            except (TypeError, ValueError) as exc:
                # Well-formed RESP that Python cannot hold: a RESP3 map or set whose key is
                # an array (found by fuzzing). A reply nobody can read ends the connection.
                raise RedisProtocolError(
                    f"the Redis server sent a reply that cannot be read: {exc}"
                ) from None
            if reply is False:
                return
            yield reply


class _BadReply(Exception):
    """What hiredis raises on bytes that are not RESP (turned into RedisProtocolError)."""
