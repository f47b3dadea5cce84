"""The PHP publisher (clients/php/src/Publisher.php), run by Debian's php-cli against a real
server: what it publishes reaches a subscribed WebSocket client (the websockets library,
speaking WAMP's JSON), every refusal comes back as a PublishRefused with the endpoint's status
and code, and nothing refused is delivered. Skipped without php (with its curl extension),
unless ``RATCHETPY_REQUIRE_PHP=1`` (then it fails)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
import trio
from websockets.trio.client import ClientConnection, connect

from ratchetpy import App
from ratchetpy.client import sign
from ratchetpy.wamp import PublishEndpoint, WampServer
from support.examples import ROOT
from support.redis import free_port

SCRIPT = ROOT / "tests" / "support" / "publish.php"
SECRET = "the PHP publisher's test secret, 32+"


def _php() -> str:
    php = shutil.which("php")
    usable = (
        php is not None
        and "curl"
        in subprocess.run([php, "-m"], capture_output=True, text=True, check=False).stdout.split()
    )
    if not usable:
        if os.environ.get("RATCHETPY_REQUIRE_PHP") == "1":
            pytest.fail(
                "php-cli with the curl extension is required (apt install php-cli php-curl)"
            )
        pytest.skip("php-cli with the curl extension is not installed")
    assert php is not None
    return php


async def php_publish(url: str, secret: str, case: str) -> dict[str, Any]:
    """Run the PHP publisher for one ``case``; what it printed."""
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [_php(), str(SCRIPT), url, secret, case],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def subscribe(ws: ClientConnection, topics: list[str]) -> None:
    """Join realm1 as a WAMP JSON client and subscribe to ``topics``."""
    await ws.send(json.dumps([1, "realm1", {"roles": {"subscriber": {}}}]))
    assert json.loads(await ws.recv())[0] == 2  # WELCOME
    for n, topic in enumerate(topics, 1):
        await ws.send(json.dumps([32, n, {}, topic]))
        assert json.loads(await ws.recv())[0] == 33  # SUBSCRIBED


async def test_what_php_publishes_arrives_and_every_refusal_is_reported(
    nursery: trio.Nursery,
) -> None:
    _php()
    wamp = WampServer()
    app = App(None, 0, "127.0.0.1")
    app.route("/ws", wamp)
    endpoint = PublishEndpoint(
        wamp, secret=SECRET, allow_topics=["com.example"], max_body_size=1024
    )
    app.route("/publish", endpoint)
    port = await nursery.start(app.serve)
    url = f"http://127.0.0.1:{port}/publish"
    async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["wamp.2.json"]) as ws:
        await subscribe(ws, ["com.example.news", "org.elsewhere.news"])
        with trio.fail_after(30):
            answer = await php_publish(url, SECRET, "good")
            assert answer["published"]["receivers"] == 1
            event = json.loads(await ws.recv())
            assert event[0] == 36 and event[2] == answer["published"]["id"]  # EVENT, its id
            assert event[4:] == [["hello", 42], {"by": "php", "ok": True}]

            refusals = {
                "bad secret": (await php_publish(url, "not the secret, but 16+ long", "x"), 401),
                "old": (await php_publish(url, SECRET, "old"), 401),
                "topic": (await php_publish(url, SECRET, "topic"), 403),
                "big": (await php_publish(url, SECRET, "big"), 413),
            }
            codes = {
                case: (got.get("refused"), got.get("error")) for case, (got, _) in refusals.items()
            }
            assert codes == {
                "bad secret": (401, "bad_signature"),
                "old": (401, "stale_timestamp"),
                "topic": (403, "topic_not_allowed"),
                "big": (413, "too_large"),
            }
            for got, status in refusals.values():
                assert got["reason"] and f"publish refused with {status}" in got["message"]

            # Nothing refused was delivered: the next event is the marker.
            marker = await php_publish(url, SECRET, "marker")
            event = json.loads(await ws.recv())
            assert event[2] == marker["published"]["id"] and event[4] == ["marker"]


async def test_a_server_php_cannot_reach_is_a_publish_error() -> None:
    _php()
    got = await php_publish(f"http://127.0.0.1:{free_port()}/publish", SECRET, "good")
    assert got["failed"] == "Ratchetpy\\PublishError" and "could not be reached" in got["message"]


async def test_php_signs_exactly_as_the_python_client_does() -> None:
    php = _php()
    body = '{"topic":"com.example.news","args":["é",1],"nonce":"n"}'
    code = (
        f"require '{ROOT / 'clients' / 'php' / 'src' / 'Publisher.php'}';"
        "$p = new Ratchetpy\\Publisher('http://127.0.0.1/publish', $argv[1], 5.0,"
        " fn () => 1700000000);"
        "echo json_encode($p->sign($argv[2]));"
    )
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [php, "-r", code, SECRET, body], capture_output=True, text=True, check=True
        )
    )
    expected = sign(body.encode(), SECRET, timestamp=1700000000)
    assert json.loads(done.stdout) == [f"{name}: {value}" for name, value in expected.items()]
