"""AutobahnJS (npm ``autobahn-browser``, the browser build of npm ``autobahn``) in headless
Chromium against the WAMP router: the browser side of WAMP interoperability.

``scripts/fetch-autobahn-js.sh`` fetches the pinned AutobahnJS into ``.cache/`` (npm registry);
without it (or without chromium) these tests skip, unless ``RATCHETPY_REQUIRE_BROWSER=1``.
The page is a blank same-origin page; AutobahnJS is loaded into it and driven with
``page.evaluate``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support.browser import Watched, browser, chromium_executable
from support.wamp_threads import ServerThread, serve_wamp

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

__all__ = ["browser", "chromium_executable"]  # fixtures, used by name

from support.examples import ROOT


@pytest.fixture(scope="session")
def autobahn_js() -> Path:
    """The path of autobahn.min.js, fetched once (skip, or fail when browsers are required)."""
    try:
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "fetch-autobahn-js.sh")],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        reason = f"AutobahnJS could not be fetched from npm: {exc}"
        if os.environ.get("RATCHETPY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and RATCHETPY_REQUIRE_BROWSER=1 is set", pytrace=False)
        pytest.skip(reason)
    return Path(out.strip().splitlines()[-1])


@pytest.fixture
def router() -> Iterator[ServerThread]:
    with serve_wamp() as server:
        yield server


def open_autobahn_page(
    browser: BrowserContext, server: ServerThread, autobahn_js: Path, name: str = "A"
) -> Watched:
    page = browser.pages[0] if name == "A" and browser.pages else browser.new_page()
    watched = Watched(page, name)
    response = page.goto(f"http://127.0.0.1:{server.port}/")
    assert response is not None and response.ok
    page.add_script_tag(path=str(autobahn_js))
    assert page.evaluate("typeof autobahn.Connection") == "function"
    # Helpers in the page: open a session with one serializer, wait for a condition.
    page.evaluate(
        """() => {
        window.openSession = (serializer) => new Promise((resolve, reject) => {
            const connection = new autobahn.Connection({
                url: "ws://" + location.host + "/ws",
                realm: "realm1",
                serializers: [serializer === "msgpack"
                    ? new autobahn.serializer.MsgpackSerializer()
                    : new autobahn.serializer.JSONSerializer()],
                max_retries: 0,
            });
            connection.onopen = (session, details) => resolve({connection, session, details});
            connection.onclose = (reason, details) => {
                reject(new Error("closed: " + reason + " " + JSON.stringify(details)));
                return true;  // do not reconnect
            };
            connection.open();
        });
        window.waitFor = (condition, ms = 5000) => new Promise((resolve, reject) => {
            const started = Date.now();
            const poll = () => {
                if (condition()) resolve();
                else if (Date.now() - started > ms) reject(new Error("timed out"));
                else setTimeout(poll, 10);
            };
            poll();
        });
    }"""
    )
    return watched


def test_autobahn_js_pubsub_and_rpc_in_chromium(
    browser: BrowserContext, router: ServerThread, autobahn_js: Path
) -> None:
    page = open_autobahn_page(browser, router, autobahn_js)
    result: dict[str, Any] = page.page.evaluate(
        """async () => {
        const a = await openSession("json");
        const b = await openSession("msgpack");
        const events = [];
        await a.session.subscribe("com.example.js.news",
            (args, kwargs, details) => events.push({args, kwargs, topic: details.topic || null}));
        await b.session.subscribe("com.example.js.news",
            (args, kwargs) => events.push({from: "b-self", args}));
        await b.session.register("com.example.js.mul", (args, kwargs) => args[0] * args[1]);
        await b.session.register("com.example.js.fail", () => {
            throw new autobahn.Error("com.example.error.nope", ["refused"], {code: 7});
        });
        const product = await a.session.call("com.example.js.mul", [6, 7]);
        let failure = null;
        try { await a.session.call("com.example.js.fail"); }
        catch (error) { failure = {error: error.error, args: error.args, kwargs: error.kwargs}; }
        let missing = null;
        try { await a.session.call("com.example.js.nobody"); }
        catch (error) { missing = error.error; }
        const published = await b.session.publish(
            "com.example.js.news", ["hello", 1, {nested: true}], {by: "b"}, {acknowledge: true});
        await waitFor(() => events.length >= 1);
        const closed = new Promise((resolve) => {
            a.connection.onclose = (reason) => { resolve(reason); return true; };
        });
        a.connection.close();
        b.connection.close();
        return {
            product, failure, missing, events,
            publicationId: published.id,
            sessionA: a.session.id, sessionB: b.session.id,
            roles: Object.keys(a.details.roles).sort(),
            closed: await closed,
        };
    }"""
    )
    assert result["product"] == 42
    assert result["failure"] == {
        "error": "com.example.error.nope",
        "args": ["refused"],
        "kwargs": {"code": 7},
    }
    assert result["missing"] == "wamp.error.no_such_procedure"
    # b published with the default exclude_me: only a received it.
    assert [e["args"] for e in result["events"]] == [["hello", 1, {"nested": True}]]
    assert result["events"][0]["kwargs"] == {"by": "b"}
    assert isinstance(result["publicationId"], int)
    assert isinstance(result["sessionA"], int) and result["sessionA"] != result["sessionB"]
    assert result["roles"] == ["broker", "dealer"]
    assert result["closed"] == "closed"
    # AutobahnJS logs the exception our failing procedure raised on purpose; nothing else.
    unexpected = [e for e in page.console_errors if "invocation handler" not in e]
    assert unexpected == [] and page.page_errors == []


def test_server_side_publish_reaches_autobahn_js(
    browser: BrowserContext, router: ServerThread, autobahn_js: Path
) -> None:
    page = open_autobahn_page(browser, router, autobahn_js)
    page.page.evaluate(
        """async () => {
        window.received = [];
        const {session} = await openSession("msgpack");
        window.session = session;
        await session.subscribe("com.example.alerts",
            (args, kwargs) => window.received.push({args, kwargs}));
    }"""
    )
    receivers = router.run_in_server(
        lambda: router.wamp.publish("com.example.alerts", ["disk", b"\x00\x01"], {"level": 3})
    )
    assert receivers == 1
    page.page.wait_for_function("window.received.length === 1")
    received = page.page.evaluate(
        "() => window.received.map(e => ({args: [e.args[0], Array.from(e.args[1])],"
        " kwargs: e.kwargs}))"
    )
    assert received == [{"args": ["disk", [0, 1]], "kwargs": {"level": 3}}]
    # Chromium negotiated permessage-deflate; the router asked for no context takeover, so a
    # large event goes out as one shared compressed frame, which the browser must inflate.
    large = "compressible " * 500
    assert router.run_in_server(lambda: router.wamp.publish("com.example.alerts", [large])) == 1
    page.page.wait_for_function("window.received.length === 2")
    assert page.page.evaluate("() => window.received[1].args[0]") == large
    assert page.console_errors == [] and page.page_errors == []
