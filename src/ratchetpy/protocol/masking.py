"""Unmasking a client's payload (RFC 6455 5.3): in C where the accelerator was built, in pure
Python otherwise.

:data:`IMPLEMENTATION` says which one :func:`unmask` is: ``"c"`` or ``"python"``. The C one,
``ratchetpy.protocol._speedups``, is built at install where a compiler is found (see
``setup.py``). Setting ``RATCHETPY_NO_SPEEDUPS=1`` in the environment before ratchetpy is
imported picks the Python one even where C is built. Both give the same bytes, and the test
suite checks them against each other.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Literal, cast

__all__ = ["IMPLEMENTATION", "unmask", "unmask_python"]

_from_bytes = int.from_bytes

# Below this size the big-int XOR is fastest; above it, int.to_bytes becomes the bottleneck
# (about 3 ms per MiB here) and four strided translates win (about 1.2 ms per MiB).
TRANSLATE_MIN = 512
_XOR_TABLES = tuple(bytes(i ^ k for i in range(256)) for k in range(256))


def unmask_python(data: bytes, start: int, end: int, mask: bytes) -> bytes | bytearray:
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


def _load_c() -> Callable[[bytes, int, int, bytes], bytes] | None:
    if os.environ.get("RATCHETPY_NO_SPEEDUPS") == "1":
        return None
    try:
        # By name: a C extension has no source for the import-layer contracts to read (they
        # would take the import for one of the whole package); its types are in _speedups.pyi.
        speedups = importlib.import_module("ratchetpy.protocol._speedups")
    except ImportError:
        return None
    return cast("Callable[[bytes, int, int, bytes], bytes]", speedups.unmask)


_c_unmask = _load_c()

#: Which :func:`unmask` is active: ``"c"`` (the accelerator) or ``"python"``.
IMPLEMENTATION: Literal["c", "python"] = "python" if _c_unmask is None else "c"

#: ``unmask(data, start, end, mask)``: ``data[start:end]`` unmasked with the 4-byte ``mask``.
unmask: Callable[[bytes, int, int, bytes], bytes | bytearray] = (
    unmask_python if _c_unmask is None else _c_unmask
)
