"""Unmasking a client's payload (RFC 6455 5.3): in C where the accelerator was built, in pure
Python otherwise.

:func:`unmask` gives one frame's payload, or a piece of it, as new bytes. :class:`MessageBuffer`
holds a large message whose pieces come in several reads: each piece is unmasked into the
message's final bytes, so the whole needs no join (in C; the Python one joins at the end).

:data:`IMPLEMENTATION` says which pair is active: ``"c"`` or ``"python"``. The C one,
``ratchetpy.protocol._speedups``, is built at install where a compiler is found (see
``setup.py``). Setting ``RATCHETPY_NO_SPEEDUPS=1`` in the environment before ratchetpy is
imported picks the Python one even where C is built. Both give the same bytes, and the test
suite checks them against each other.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Literal, Protocol, cast

__all__ = [
    "IMPLEMENTATION",
    "MessageBuffer",
    "MessageBufferPython",
    "MessageBufferType",
    "unmask",
    "unmask_python",
]

_from_bytes = int.from_bytes

# Below this size the big-int XOR is fastest; above it, int.to_bytes becomes the bottleneck
# (about 3 ms per MiB here) and four strided translates win (about 1.2 ms per MiB).
TRANSLATE_MIN = 512
_XOR_TABLES = tuple(bytes(i ^ k for i in range(256)) for k in range(256))


def unmask_python(data: bytes | bytearray, start: int, end: int, mask: bytes) -> bytes | bytearray:
    """``data[start:end]`` XORed with ``mask`` repeated, without a Python loop over bytes."""
    n = end - start
    if n < TRANSLATE_MIN:
        key = _from_bytes((mask * ((n >> 2) + 1))[:n], "little")
        return (_from_bytes(data[start:end], "little") ^ key).to_bytes(n, "little")
    # One copy straight into the mutable result instead of a slice and then a copy of it.
    out = bytearray(memoryview(data)[start:end]) if start or end != len(data) else bytearray(data)
    tables = _XOR_TABLES
    out[0::4] = out[0::4].translate(tables[mask[0]])
    out[1::4] = out[1::4].translate(tables[mask[1]])
    out[2::4] = out[2::4].translate(tables[mask[2]])
    out[3::4] = out[3::4].translate(tables[mask[3]])
    return out


class MessageBufferType(Protocol):
    """What both message buffers do (the C one is ``_speedups.MessageBuffer``)."""

    @property
    def filled(self) -> int: ...
    def unmask_into(
        self, data: bytes | bytearray, start: int, end: int, mask: bytes, /
    ) -> None: ...
    def take(self) -> bytes: ...


class MessageBufferPython:
    """A message of ``size`` bytes, unmasked piece by piece, then taken whole as bytes.

    The reference for the C one: the same checks, with the pieces kept and joined by
    :meth:`take`.
    """

    __slots__ = ("_filled", "_pieces", "_size")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self._size = size
        self._filled = 0
        self._pieces: list[bytes | bytearray] | None = []

    @property
    def filled(self) -> int:
        """Bytes written so far."""
        return self._filled

    def unmask_into(self, data: bytes | bytearray, start: int, end: int, mask: bytes, /) -> None:
        """Append ``data[start:end]`` unmasked; ValueError past ``size`` or after take()."""
        if self._pieces is None:
            raise ValueError("the message was already taken")
        if len(mask) != 4:
            raise ValueError("the mask must be 4 bytes")
        if not 0 <= start <= end <= len(data):
            raise ValueError("start and end must satisfy 0 <= start <= end <= len(data)")
        if end - start > self._size - self._filled:
            raise ValueError("more bytes than the message has room for")
        self._pieces.append(unmask_python(data, start, end, mask))
        self._filled += end - start

    def take(self) -> bytes:
        """The message, once full; the buffer is empty afterwards (ValueError otherwise)."""
        if self._pieces is None:
            raise ValueError("the message was already taken")
        if self._filled != self._size:
            raise ValueError(f"the message has {self._filled} of its {self._size} bytes")
        pieces, self._pieces = self._pieces, None
        return b"".join(pieces)


class _Speedups(Protocol):
    unmask: Callable[[bytes, int, int, bytes], bytes]
    MessageBuffer: Callable[[int], MessageBufferType]


def _load_c() -> _Speedups | None:
    if os.environ.get("RATCHETPY_NO_SPEEDUPS") == "1":
        return None
    try:
        # By name: a C extension has no source for the import-layer contracts to read (they
        # would take the import for one of the whole package); its types are in _speedups.pyi.
        speedups = importlib.import_module("ratchetpy.protocol._speedups")
    except ImportError:
        return None
    return cast("_Speedups", speedups)


_c = _load_c()

#: Which :func:`unmask` and :class:`MessageBuffer` are active: ``"c"`` (the accelerator) or
#: ``"python"``.
IMPLEMENTATION: Literal["c", "python"] = "python" if _c is None else "c"

#: ``unmask(data, start, end, mask)``: ``data[start:end]`` unmasked with the 4-byte ``mask``.
unmask: Callable[[bytes, int, int, bytes], bytes | bytearray] = (
    unmask_python if _c is None else _c.unmask
)

#: ``MessageBuffer(size)``: a message unmasked into place as its pieces come (see the module).
MessageBuffer: Callable[[int], MessageBufferType] = (
    MessageBufferPython if _c is None else _c.MessageBuffer
)
