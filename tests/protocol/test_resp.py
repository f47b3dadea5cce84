"""RESP without sockets: the encoder against hiredis' own packer (the oracle), the reader's
replies, its bound and its verdict on bytes that are not RESP."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratchetpy import RedisProtocolError, RedisReplyError
from ratchetpy.protocol.resp import RespReader, encode_command

args = st.one_of(
    st.binary(max_size=50),
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@given(st.text(min_size=1, max_size=10), st.lists(args, max_size=6))
def test_commands_encode_as_hiredis_packs_them(name: str, rest: list[bytes | str | int]) -> None:
    assert encode_command(name, *rest) == hiredis.pack_command((name, *rest))


def test_encoding_refuses_what_redis_would_misread() -> None:
    assert encode_command("SET", "k", 1.5) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n"
    with pytest.raises(TypeError, match="bool"):
        encode_command("SET", "k", True)
    with pytest.raises(TypeError, match="not NoneType"):
        encode_command("SET", "k", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="its name"):
        encode_command()


def test_replies_come_out_in_order_whatever_the_split() -> None:
    data = (
        b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n"
        b"$2\r\nhi\r\n-WRONGPASS invalid username-password pair\r\n"
    )
    for step in (1, 3, len(data)):
        reader = RespReader()
        replies: list[object] = []
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            replies.extend(reader.replies())
        *values, error = replies
        assert values == [b"OK", 42, b"hello", None, [b"message", b"room", b"hi"]]
        assert isinstance(error, RedisReplyError)  # a value: it answers one command
        assert error.code == "WRONGPASS"


def test_bytes_that_are_not_resp_are_the_servers_fault() -> None:
    reader = RespReader()
    reader.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(RedisProtocolError, match="not RESP"):
        list(reader.replies())


def test_a_reply_python_cannot_hold_is_the_servers_fault_too() -> None:
    # Found by fuzzing (fuzz/corpus/resp/crash-map-with-an-array-key): a RESP3 map whose key
    # is an array made hiredis raise TypeError, which escaped the connection's reader.
    reader = RespReader()
    reader.feed(b"*2\r\n%1\r\n*2\r\n$-1\r\n:-5\r\n")
    with pytest.raises(RedisProtocolError, match="cannot be read"):
        list(reader.replies())


def test_a_reply_cannot_grow_past_the_bound() -> None:
    reader = RespReader(max_pending=1000)
    reader.feed(b"$100000\r\n" + b"x" * 900)
    with pytest.raises(RedisProtocolError, match="over 1000 bytes"):
        reader.feed(b"x" * 200)
