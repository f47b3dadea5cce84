"""The two unmasking implementations (unmask and MessageBuffer): the C accelerator against the
pure-Python one, and the switch between them."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratchetpy.protocol import masking

ROOT = Path(__file__).resolve().parents[2]

try:
    from ratchetpy.protocol._speedups import MessageBuffer as MessageBufferC
    from ratchetpy.protocol._speedups import unmask as unmask_c
except ImportError:  # no compiler at install: only the Python path exists
    if os.environ.get("RATCHETPY_BUILD_SPEEDUPS") == "1":
        raise  # the test command builds it: missing here means the build is broken
    unmask_c = None
    MessageBufferC = None  # type: ignore[assignment,misc]

needs_c = pytest.mark.skipif(unmask_c is None, reason="the C accelerator was not built")


def reference(data: bytes, start: int, end: int, mask: bytes) -> bytes:
    """RFC 6455 5.3 as written: octet i XOR mask octet i mod 4."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data[start:end]))


implementations: list[Callable[[bytes, int, int, bytes], bytes | bytearray]] = [
    masking.unmask_python
]
if unmask_c is not None:
    implementations.append(unmask_c)


@pytest.mark.parametrize("unmask", implementations, ids=lambda f: f.__module__)
@given(
    data=st.binary(max_size=3000),
    mask=st.binary(min_size=4, max_size=4),
    cut=st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
)
def test_each_implementation_matches_the_rfc(
    unmask: Callable[[bytes, int, int, bytes], bytes | bytearray],
    data: bytes,
    mask: bytes,
    cut: tuple[int, int],
) -> None:
    start, end = sorted(min(c, len(data)) for c in cut)
    assert bytes(unmask(data, start, end, mask)) == reference(data, start, end, mask)


@needs_c
@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 511, 512, 4096, 2**20 + 3])
def test_c_and_python_agree_on_sizes_around_their_strides(size: int) -> None:
    assert unmask_c is not None
    data = os.urandom(size + 5)
    mask = os.urandom(4)
    assert unmask_c(data, 5, size + 5, mask) == bytes(
        masking.unmask_python(data, 5, size + 5, mask)
    )
    assert unmask_c(bytearray(data), 0, size, mask) == bytes(
        masking.unmask_python(data, 0, size, mask)
    )
    assert unmask_c(memoryview(data), 0, size, mask) == unmask_c(data, 0, size, mask)  # type: ignore[arg-type]


@needs_c
def test_c_refuses_what_the_parser_never_passes() -> None:
    assert unmask_c is not None
    with pytest.raises(ValueError, match="4 bytes"):
        unmask_c(b"abcd", 0, 4, b"abc")
    with pytest.raises(ValueError, match="start and end"):
        unmask_c(b"abcd", 2, 1, b"abcd")
    with pytest.raises(ValueError, match="start and end"):
        unmask_c(b"abcd", 0, 5, b"abcd")
    with pytest.raises(TypeError):
        unmask_c("text", 0, 1, b"abcd")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="4 arguments"):
        unmask_c(b"abcd", 0, 4)  # type: ignore[call-arg]


buffer_types: list[Callable[[int], masking.MessageBufferType]] = [masking.MessageBufferPython]
if MessageBufferC is not None:
    buffer_types.append(MessageBufferC)


def rotated(mask: bytes, by: int) -> bytes:
    shift = by & 3
    return mask[shift:] + mask[:shift]


@pytest.mark.parametrize("buffer_type", buffer_types, ids=lambda t: t.__module__)
@given(
    data=st.binary(max_size=5000),
    mask=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
)
def test_each_message_buffer_gives_what_one_unmask_would(
    buffer_type: Callable[[int], masking.MessageBufferType],
    data: bytes,
    mask: bytes,
    cuts: list[int],
) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    buffer = buffer_type(len(data))
    key = mask
    for start, end in itertools.pairwise(points):
        buffer.unmask_into(data, start, end, key)
        key = rotated(key, end - start)  # as the codec turns it for the next piece
    assert buffer.filled == len(data)
    message = buffer.take()
    assert type(message) is bytes
    assert message == reference(data, 0, len(data), mask)


@pytest.mark.parametrize("buffer_type", buffer_types, ids=lambda t: t.__module__)
def test_each_message_buffer_refuses_the_same_misuse(
    buffer_type: Callable[[int], masking.MessageBufferType],
) -> None:
    with pytest.raises(ValueError, match="size must be >= 0"):
        buffer_type(-1)
    buffer = buffer_type(4)
    with pytest.raises(ValueError, match="4 bytes"):
        buffer.unmask_into(b"abcd", 0, 4, b"abc")
    with pytest.raises(ValueError, match="start and end"):
        buffer.unmask_into(b"abcd", 3, 2, b"abcd")
    with pytest.raises(ValueError, match="room for"):
        buffer.unmask_into(b"abcde", 0, 5, b"abcd")
    buffer.unmask_into(b"abcde", 0, 3, b"abcd")
    with pytest.raises(ValueError, match="has 3 of its 4 bytes"):
        buffer.take()
    buffer.unmask_into(b"z", 0, 1, b"abcd")
    assert buffer.take() == b"\0\0\0" + bytes((ord("z") ^ ord("a"),))
    with pytest.raises(ValueError, match="already taken"):
        buffer.take()
    with pytest.raises(ValueError, match="already taken"):
        buffer.unmask_into(b"", 0, 0, b"abcd")
    assert buffer_type(0).take() == b""


def test_the_active_implementation_is_the_c_one_where_it_was_built() -> None:
    expected = (
        "python" if unmask_c is None or os.environ.get("RATCHETPY_NO_SPEEDUPS") == "1" else "c"
    )
    assert expected == masking.IMPLEMENTATION
    assert (masking.unmask is unmask_c) == (expected == "c")
    assert (masking.MessageBuffer is MessageBufferC) == (expected == "c")


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_ratchetpy_no_speedups_picks_the_python_path() -> None:
    code = (
        "from ratchetpy.protocol import masking; print(masking.IMPLEMENTATION, "
        "masking.unmask is masking.unmask_python)"
    )
    assert run_python(code, RATCHETPY_NO_SPEEDUPS="1") == "python True"


def test_the_protocol_tests_pass_on_the_python_path_too() -> None:
    """The suite runs on whichever implementation is active (C where built); the codec's own
    tests and the differential tests against wsproto run again on the Python one."""
    if os.environ.get("RATCHETPY_NO_SPEEDUPS") == "1":
        pytest.skip("this whole run is on the Python path already")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/protocol/test_websocket.py",
            "tests/protocol/test_deflate.py",
            "tests/differential",
        ],
        cwd=ROOT,
        env={**os.environ, "RATCHETPY_NO_SPEEDUPS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
