"""Push, end to end in headless Chromium: from a web backend to every subscribed tab.

* ``examples/flask_push.py``: a Flask app saves a record from an AJAX request and pushes it;
  the other tabs of the same user, and another user's browser, show the change without a
  reload; the "saved" notice reaches the tabs of the user who saved, and nobody else's; a
  WebSocket handshake without a signed-in session gets 401.
* ``examples/pubsub.py``: every way to publish (the blocking HTTP client, the trio WAMP
  client, another page) reaches two subscribed tabs; a publication with a wrong secret is
  refused, logged and delivers nothing.

Playwright's sync API runs in the test thread, so trio code runs in a worker thread
(``trio.run`` there); the blocking ``ratchetpy.client.publish`` runs in the test thread.
Without playwright or chromium the browser tests skip, unless ``RATCHETPY_REQUIRE_BROWSER=1``.
The tests at the end drive the Flask app in process (no browser) for what a browser cannot
easily show: validation and a push that fails.
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import secrets
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import trio

from ratchetpy.client import PublishError, WampRequestError, open_session, publish
from support.browser import (
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    Watched,
    browser,
    chromium_executable,
    expect,
)
from support.examples import EXAMPLES
from support.processes import ExampleProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

__all__ = ["browser", "chromium_executable"]  # fixtures, used by name

FLASK_PUSH = EXAMPLES / "flask_push.py"
PUBSUB = EXAMPLES / "pubsub.py"


def run_trio(fn: Callable[[], Any], timeout: float = 10) -> Any:
    """``trio.run(fn)`` in a worker thread (this thread belongs to Playwright); its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(trio.run, fn).result(timeout=timeout)


# -- examples/flask_push.py ------------------------------------------------------------------


class FlaskPushProcess(ExampleProcess):
    """``examples/flask_push.py --port 0 --ws-port 0``: ``web_port`` and ``ws_port``."""

    def __init__(self) -> None:
        super().__init__(FLASK_PUSH, 0, "--ws-port", "0")  # "listening on": the ratchetpy one
        self.ws_port = self.port
        found = self.wait_for_log(r"web app at http://127\.0\.0\.1:(\d+)/ ; WAMP at ws://")
        self.web_port = int(found[0].group(1))
        self.web = f"http://127.0.0.1:{self.web_port}"


@pytest.fixture
def flask_push() -> Iterator[FlaskPushProcess]:
    server = FlaskPushProcess()
    yield server
    server.kill()


@pytest.fixture
def chromium(chromium_executable: str) -> Iterator[Browser]:
    """A headless Chromium in which each ``new_context()`` is a browser of its own (cookies)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


class RecordPage(Watched):
    """``/records/<id>`` of flask_push: the record, an edit form, the user's notices."""

    def expect_record(self, title: str, body: str, updated_by: str, version: int) -> None:
        expect(self.page.locator("#title")).to_have_text(title)
        expect(self.page.locator("#body")).to_have_text(body)
        expect(self.page.locator("#updated-by")).to_have_text(updated_by)
        expect(self.page.locator("#version")).to_have_text(str(version))

    def save(self, title: str, body: str) -> None:
        self.page.fill("#edit-title", title)
        self.page.fill("#edit-body", body)
        self.page.click("#save")
        expect(self.page.locator("#save-status")).to_have_text("saved")

    def expect_notices(self, texts: list[str]) -> None:
        """Exactly these notices, in this order."""
        expect(self.page.locator("#notices li")).to_have_text(texts)


def open_record(context: BrowserContext, server: FlaskPushProcess, name: str) -> RecordPage:
    page = RecordPage(context.new_page(), name)
    response = page.page.goto(f"{server.web}/records/1")
    assert response is not None and response.ok
    expect(page.page).to_have_url(f"{server.web}/records/1")  # signed in: no redirect
    page.expect_status("online")  # set once both subscriptions are confirmed
    return page


def sign_in(chromium: Browser, server: FlaskPushProcess, user: str) -> BrowserContext:
    """A browser of its own (cookies included) in which ``user`` signed in."""
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = Watched(context.new_page(), f"{user} sign-in")
    page.page.goto(f"{server.web}/")
    page.page.fill("#user-name", user)
    page.page.click("#sign-in")
    expect(page.page).to_have_url(f"{server.web}/records")
    expect(page.page.locator("#user")).to_have_text(user)
    assert page.console_errors == [] and page.page_errors == []
    page.page.close()
    return context


def handshake(port: int, *, origin: str | None, cookie: str | None) -> tuple[int, dict[str, str]]:
    """A WebSocket opening handshake for WAMP at ``/ws``: the status and headers of the answer."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "wamp.2.json",
    }
    if origin is not None:
        headers["Origin"] = origin
    if cookie is not None:
        headers["Cookie"] = cookie
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/ws", headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def forged_session(user: str) -> str:
    """A Cookie header with a Flask session for ``user`` signed with a key of our own."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    forger = Flask("forger")
    forger.secret_key = secrets.token_urlsafe(32)
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    assert serializer is not None
    return f"session={serializer.dumps({'user': user})}"


def test_a_save_in_one_tab_reaches_every_tab_and_the_notice_only_its_user(
    chromium: Browser, flask_push: FlaskPushProcess
) -> None:
    server = flask_push
    alice = sign_in(chromium, server, "alice")
    bob = sign_in(chromium, server, "bob")
    a1 = open_record(alice, server, "alice-1")
    a2 = open_record(alice, server, "alice-2")  # another tab, the same cookie
    b1 = open_record(bob, server, "bob-1")
    server.wait_for_log(r"WAMP session \d+ joined 'realm1' .*, user alice\)", count=2)
    server.wait_for_log(r"WAMP session \d+ joined 'realm1' .*, user bob\)")
    pages = [a1, a2, b1]
    for page in pages:
        page.expect_record("Quarterly report", "Draft.", "nobody", 1)

    # Alice saves in one tab: all three pages show version 2 without a reload.
    a1.save("Quarterly report (Q3)", "Numbers are in.")
    for page in pages:
        page.expect_record("Quarterly report (Q3)", "Numbers are in.", "alice", 2)
    a1.expect_notices(["saved: Quarterly report (Q3)"])
    a2.expect_notices(["saved: Quarterly report (Q3)"])
    expect(a2.page.locator("#edit-title")).to_have_value("Quarterly report (Q3)")

    # Bob saves: when his notice arrives, alice's (published before it on the same topic)
    # would have arrived before it, had it been sent to him.
    b1.save("Q3 report", "Reviewed.")
    for page in pages:
        page.expect_record("Q3 report", "Reviewed.", "bob", 3)
    b1.expect_notices(["saved: Q3 report"])

    # Alice saves again, in her other tab: her tabs get this notice, and never got bob's.
    a2.save("Q3 report, final", "Reviewed and approved.")
    for page in pages:
        page.expect_record("Q3 report, final", "Reviewed and approved.", "alice", 4)
    a1.expect_notices(["saved: Quarterly report (Q3)", "saved: Q3 report, final"])
    a2.expect_notices(["saved: Quarterly report (Q3)", "saved: Q3 report, final"])
    b1.expect_notices(["saved: Q3 report"])

    # A page loaded now shows the saved state (the store is the web app's, not the pages').
    b2 = open_record(bob, server, "bob-2")
    b2.expect_record("Q3 report, final", "Reviewed and approved.", "alice", 4)
    b2.expect_notices([])

    # The WebSocket server reads the Flask session: no session, no socket.
    page_origin = server.web
    status, headers = handshake(server.ws_port, origin=page_origin, cookie=None)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    server.wait_for_log(r"HTTP 401 to 127\.0\.0\.1: GET /ws: authentication required")
    (cookie,) = [c for c in alice.cookies() if c.get("name") == "session"]
    session_cookie = f"session={cookie.get('value')}"
    status, _ = handshake(server.ws_port, origin=page_origin, cookie=session_cookie)
    assert status == 101
    status, _ = handshake(server.ws_port, origin=page_origin, cookie=forged_session("alice"))
    assert status == 401
    server.wait_for_log(r"session of 127\.0\.0\.1 ignored: GET /ws: bad signature")
    # Signed in, but from a page of another site: refused before the session is looked at.
    status, _ = handshake(server.ws_port, origin="http://evil.example", cookie=session_cookie)
    assert status == 403

    # A signed-in WAMP client may subscribe to records and notices only, and publish nothing.
    async def outside_the_rules() -> list[str]:
        refusals = []
        async with open_session(
            f"ws://127.0.0.1:{server.ws_port}/ws", headers=[("Cookie", session_cookie)]
        ) as session:
            await session.subscribe("com.example.record.2", lambda *args: None)
            for attempt in (
                session.subscribe("com.example.secrets", lambda *args: None),
                session.publish("com.example.record.1", {"title": "forged"}, acknowledge=True),
            ):
                try:
                    await attempt
                except WampRequestError as exc:
                    refusals.append(exc.error)
        return refusals

    assert run_trio(outside_the_rules) == ["wamp.error.not_authorized"] * 2
    for page in pages:
        page.expect_record("Q3 report, final", "Reviewed and approved.", "alice", 4)

    for page in [*pages, b2]:
        assert page.console_errors == [], page.name
        assert page.page_errors == [], page.name
    alice.close()
    bob.close()
    assert server.stop() == 0
    assert server.errors() == []


# -- examples/pubsub.py ----------------------------------------------------------------------

TOPIC = "com.example.push"


class PubSubPage(Watched):
    """The page of examples/pubsub.py."""

    def subscribe(self, topic: str) -> None:
        """Subscribe through the page's form, once connected: the page says "subscribed"
        when the router confirmed it, so from then on it receives every publication."""
        self.page.fill("#topic", topic)
        self.page.click("#subscribe-form button")
        expect(self.page.locator("#events li.info").last).to_have_text(f"subscribed to {topic}")

    def publish(self, text: str) -> None:
        self.page.fill("#text", text)
        self.page.click("#publish-form button")
        expect(self.page.locator("#text")).to_have_value("")  # acknowledged by the router

    def expect_events(self, texts: list[str]) -> None:
        """Exactly these events arrived, in this order."""
        expect(self.page.locator("#events li.event")).to_have_text(texts)


def test_every_push_path_reaches_subscribed_pages(browser: BrowserContext) -> None:
    secret = secrets.token_urlsafe(24)
    server = ExampleProcess(PUBSUB, 0, f"--secret={secret}")  # the secret may start with "-"
    try:
        url = f"http://127.0.0.1:{server.port}/publish"
        pages = []
        for name in ("A", "B", "publisher"):
            page = PubSubPage(browser.new_page(), name)
            response = page.page.goto(f"http://127.0.0.1:{server.port}/")
            assert response is not None and response.ok
            page.expect_status("online")
            page.subscribe(TOPIC)
            pages.append(page)
        a, b, publisher = pages

        def event(text: str) -> str:
            return f'{TOPIC} ["{text}"]'

        # 1. The blocking HTTP client, as a web app calls it.
        answer = publish(url, TOPIC, "via http", secret=secret)
        assert answer["receivers"] == 3
        for page in pages:
            page.expect_events([event("via http")])

        # 2. The trio WAMP client (a WAMP session of its own).
        async def via_trio() -> int | None:
            async with open_session(f"ws://127.0.0.1:{server.port}/ws") as session:
                return await session.publish(TOPIC, "via trio", acknowledge=True)

        assert isinstance(run_trio(via_trio), int)
        for page in pages:
            page.expect_events([event("via http"), event("via trio")])

        # 3. Another page, through its form (WAMP's exclude_me: not to itself).
        publisher.publish("via page")
        for page in (a, b):
            page.expect_events([event("via http"), event("via trio"), event("via page")])

        # A wrong secret: refused with 401, logged, and delivered to nobody.
        with pytest.raises(PublishError) as refused:
            publish(url, TOPIC, "forged", secret="not-the-secret-" + secrets.token_urlsafe(8))
        assert refused.value.status == 401
        assert refused.value.error == "bad_signature"
        server.wait_for_log(r"HTTP publish refused with 401 to 127\.0\.0\.1: bad_signature")
        # Publications reach each page in order: when the marker is there, a forged one
        # that got through would be there too.
        assert publish(url, TOPIC, "marker", secret=secret)["receivers"] == 3
        expected = [event("via http"), event("via trio"), event("via page"), event("marker")]
        a.expect_events(expected)
        b.expect_events(expected)
        publisher.expect_events([event("via http"), event("via trio"), event("marker")])

        for page in pages:
            assert page.console_errors == [], page.name
            assert page.page_errors == [], page.name
        assert server.stop() == 0
        assert server.errors() == []
    finally:
        server.kill()


# -- the Flask app in process (no browser, no servers) ---------------------------------------


@pytest.fixture(scope="module")
def flask_push_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flask_push_example", FLASK_PUSH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now


def test_the_save_handler_validates_and_survives_a_failed_push(
    flask_push_module: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    web = flask_push_module.make_web_app(
        secret_key=secrets.token_urlsafe(32),
        publish_secret=secrets.token_urlsafe(32),
        publish_url=f"http://127.0.0.1:{closed_port()}/publish",
    )
    client = web.test_client()
    api = "/api/records/1"
    headers = {"X-Requested-With": "fetch"}
    good = {"title": "New title", "body": "text"}

    assert client.post(api, json=good, headers=headers).status_code == 401  # not signed in
    assert client.get(api).status_code == 401
    assert client.get("/records/1").status_code == 302  # to the sign-in page
    assert client.post("/signin", data={"user": "no spaces please"}).status_code == 400
    answer = client.post("/signin", data={"user": "alice"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/records"

    def post(body: Any = None, **options: Any) -> tuple[int, Any]:
        options.setdefault("headers", headers)
        if body is not None:
            options["json"] = body
        response = client.post(api, **options)
        return response.status_code, response.get_json()

    # Cross-site: no custom header, or another Origin.
    assert post(good, headers={})[0] == 403
    assert post(good, headers={**headers, "Origin": "http://evil.example"})[0] == 403
    assert post(good, headers={**headers, "Origin": "http://localhost"})[0] == 200
    # Bad input.
    assert post(data="title=x", content_type="application/x-www-form-urlencoded")[0] == 415
    assert post(data="{not json", content_type="application/json")[0] == 400
    assert post(["title", "body"])[0] == 400
    assert post({"title": "only a title"})[0] == 400
    assert post({"title": 5, "body": ""})[0] == 400
    assert post({"title": "   ", "body": ""})[0] == 400
    assert post({"title": "x" * 121, "body": ""})[1]["error"] == "too_long"
    assert post({"title": "x", "body": "y" * 4001})[1]["error"] == "too_long"
    assert post({"title": "x", "body": "y" * 70_000})[0] == 413
    assert client.post("/api/records/99", json=good, headers=headers).status_code == 404

    # Nothing listens at the publish URL: the save stands, the answer says the push failed.
    with caplog.at_level(logging.WARNING, logger="flask_push"):
        status, data = post({"title": "  Saved anyway ", "body": "b"})
    assert status == 200
    assert data["record"] == {
        "id": 1,
        "title": "Saved anyway",
        "body": "b",
        "updated_by": "alice",
        "version": 3,  # the save from localhost above was version 2
    }
    assert data["pushed"] is False and "no answer from" in data["push_error"]
    assert any("push to" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
    assert client.get(api).get_json()["record"]["version"] == 3
    assert client.get("/records/1").status_code == 200


def test_the_router_lets_pages_subscribe_to_records_and_notices_only(
    flask_push_module: ModuleType,
) -> None:
    from ratchetpy import WampError, WampServer

    records = flask_push_module.Records()
    allowed = ["com.example.record.1", "com.example.record.123456789", "com.example.notice"]
    refused = ["com.example.record", "com.example.record.x", "com.example.record.1.2", "x.y"]
    refused.append("com.example.record.\u0661")  # an Arabic-Indic digit is no record id

    topics = WampServer().realm().topics  # views of topics nobody subscribes to

    for topic in allowed:
        records.on_subscribe(None, topics[topic])
    for topic in refused:
        with pytest.raises(WampError):
            records.on_subscribe(None, topics[topic])
    with pytest.raises(WampError):
        records.on_publish(None, topics[allowed[0]], None, [], None)
