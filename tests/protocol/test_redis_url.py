"""Redis URLs as redis-py and the Redis documentation write them."""

from __future__ import annotations

import pytest

from ratchetpy.protocol.redis_url import RedisAddress


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress()),
        ("redis://localhost", RedisAddress(host="localhost")),
        ("redis://h:7000/2", RedisAddress(host="h", port=7000, db=2)),
        ("redis://h?db=5", RedisAddress(host="h", db=5)),
        ("rediss://h:6380", RedisAddress(host="h", port=6380, tls=True)),
        ("redis://:pw@h", RedisAddress(host="h", password="pw")),
        ("redis://alice:p%40ss%3A@h/1",
         RedisAddress(host="h", db=1, username="alice", password="p@ss:")),
        ("redis://[::1]:6379", RedisAddress(host="::1")),
        ("unix:///run/redis.sock", RedisAddress(path="/run/redis.sock")),
        ("unix://:pw@/run/redis.sock?db=4",
         RedisAddress(path="/run/redis.sock", db=4, password="pw")),
    ],
)  # fmt: skip
def test_urls(url: str, expected: RedisAddress) -> None:
    assert RedisAddress.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h", "starts with redis://"),
        ("redis://h/x", "must be a number"),
        ("redis://h/1?db=2", "names its db twice"),
        ("redis://h:99999", "invalid port"),
        ("redis://h?timeout=1", "unknown option 'timeout'"),
        ("unix://", "needs a socket path"),
        ("redis://:hunter2@h/x", "redis://:***@h/x"),  # never the password in an error
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        RedisAddress.parse(url)
    assert why in str(info.value)
    assert "hunter2" not in str(info.value)


def test_describe_and_repr_leave_the_password_out() -> None:
    address = RedisAddress.parse("rediss://alice:secret@cache.example:6380/2")
    assert address.describe() == "rediss://alice@cache.example:6380/2"
    assert "secret" not in repr(address)
    assert RedisAddress.parse("unix:///tmp/r.sock?db=1").describe() == "unix:///tmp/r.sock?db=1"
    assert RedisAddress(host="::1").describe() == "redis://[::1]:6379/0"
