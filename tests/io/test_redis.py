"""RedisConnection against a real redis-server: login, db, unix sockets, pipelining, error
replies, a lost connection and a cancelled caller."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from ratchetpy import BrokerUnavailable, RedisReplyError
from ratchetpy.io.redis import RedisConnection
from support.redis import RedisProcess, free_port, redis_server


async def test_commands_and_their_replies(redis: RedisProcess) -> None:
    async with await RedisConnection.open(redis.url, client_name="ratchetpy-test") as conn:
        assert await conn.execute("PING") == b"PONG"
        assert await conn.execute("SET", "k", "välue") == b"OK"
        assert await conn.execute("GET", "k") == "välue".encode()
        assert await conn.execute("GET", "missing") is None
        assert await conn.execute("RPUSH", "l", 1, 2.5, b"\x00\xff") == 3
        assert await conn.execute("LRANGE", "l", 0, -1) == [b"1", b"2.5", b"\x00\xff"]
        assert await conn.execute("CLIENT", "GETNAME") == b"ratchetpy-test"
        assert await conn.execute_many([]) == []


async def test_pipelined_callers_each_get_their_own_reply(redis: RedisProcess) -> None:
    async with await RedisConnection.open(redis.url) as conn:
        got: dict[int, list[object]] = {}

        async def one(i: int) -> None:
            got[i] = await conn.execute_many([("SET", f"k{i}", f"v{i}"), ("GET", f"k{i}")])

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        assert got == {i: [b"OK", f"v{i}".encode()] for i in range(200)}
        # One connection keeps the order of the commands it was given.
        replies = await conn.execute_many([("INCR", "n")] * 500)
        assert replies == list(range(1, 501))
    async with await RedisConnection.open(redis.url, max_in_flight=10) as small:
        with pytest.raises(ValueError, match="more than max_in_flight"):
            await small.execute_many([("PING",)] * 11)  # would wait for itself forever
        assert await small.execute_many([("PING",)] * 10) == [b"PONG"] * 10


async def test_an_error_reply_fails_one_command_and_the_connection_goes_on(
    redis: RedisProcess,
) -> None:
    async with await RedisConnection.open(redis.url) as conn:
        await conn.execute("SET", "text", "abc")
        with pytest.raises(RedisReplyError) as refused:
            await conn.execute("INCR", "text")
        assert refused.value.code == "ERR"
        assert refused.value.command == "INCR"
        assert "not an integer" in str(refused.value)
        with pytest.raises(RedisReplyError, match="WRONGTYPE"):
            await conn.execute_many([("PING",), ("LPUSH", "text", "x"), ("SET", "after", 1)])
        assert await conn.execute("GET", "after") == b"1"  # the rest of the batch ran
        assert not conn.broken


async def test_password_acl_user_db_and_unix_socket(tmp_path: Path) -> None:
    with redis_server(tmp_path, "--requirepass", "s3cret p@ss") as redis:
        base = f"127.0.0.1:{redis.port}"
        with pytest.raises(RedisReplyError) as wrong:
            await RedisConnection.open(f"redis://:nope@{base}")
        assert wrong.value.code == "WRONGPASS" and wrong.value.command == "AUTH"
        async with await RedisConnection.open(f"redis://{base}") as anonymous:
            with pytest.raises(RedisReplyError) as noauth:
                await anonymous.execute("GET", "x")
            assert noauth.value.code == "NOAUTH"
        async with await RedisConnection.open(f"redis://:s3cret%20p%40ss@{base}/3") as admin:
            assert await admin.execute("SET", "in3", "yes") == b"OK"
            await admin.execute("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all")
        async with await RedisConnection.open(f"redis://alice:pw@{base}/3") as alice:
            assert await alice.execute("ACL", "WHOAMI") == b"alice"
            assert await alice.execute("GET", "in3") == b"yes"
        url = f"unix://alice:pw@{redis.socket_path}?db=3"
        async with await RedisConnection.open(url) as over_unix:
            assert await over_unix.execute("GET", "in3") == b"yes"
        async with await RedisConnection.open(f"redis://alice:pw@{base}/0") as db0:
            assert await db0.execute("GET", "in3") is None


async def test_an_unreachable_server_is_broker_unavailable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(BrokerUnavailable) as unreachable:
        await RedisConnection.open(f"redis://user:secret@127.0.0.1:{port}/0")
    message = str(unreachable.value)
    assert f"cannot connect to redis://user@127.0.0.1:{port}/0" in message
    assert "secret" not in message


async def test_a_lost_connection_fails_what_is_under_way_and_what_follows(
    redis: RedisProcess,
) -> None:
    async with (
        await RedisConnection.open(redis.url, client_name="victim") as victim,
        await RedisConnection.open(redis.url) as killer,
    ):
        outcome: list[BaseException] = []

        async def blocked() -> None:
            try:
                await victim.execute("BLPOP", "never", 0)
            except BrokerUnavailable as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            assert await killer.execute("CLIENT", "KILL", "USER", "default", "SKIPME", "yes") >= 1
        assert len(outcome) == 1 and "was lost" in str(outcome[0])
        assert victim.broken
        with pytest.raises(BrokerUnavailable):
            await victim.execute("PING")


async def test_a_cancelled_caller_loses_only_its_own_reply(redis: RedisProcess) -> None:
    async with (
        await RedisConnection.open(redis.url) as conn,
        await RedisConnection.open(redis.url) as other,
    ):
        with trio.CancelScope() as scope:

            async def cancel_when_blocked() -> None:
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_blocked)
                await conn.execute("BLPOP", "queue", 0)
        assert scope.cancelled_caught
        await other.execute("RPUSH", "queue", "x")  # answers the abandoned BLPOP
        assert await conn.execute("PING") == b"PONG"
        assert await conn.execute("LLEN", "queue") == 0


async def test_rediss_speaks_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls_port = free_port()
    options = [
        "--tls-port", str(tls_port), "--tls-auth-clients", "no",
        "--tls-cert-file", str(tmp_path / "cert.pem"),
        "--tls-key-file", str(tmp_path / "key.pem"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
    ]  # fmt: skip
    with redis_server(tmp_path, *options):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = f"rediss://127.0.0.1:{tls_port}/0"
        async with await RedisConnection.open(url, ssl_context=context) as conn:
            assert await conn.execute("PING") == b"PONG"
        with pytest.raises(BrokerUnavailable, match="cannot connect to rediss://"):
            await RedisConnection.open(url)  # the system's CAs do not know this one
