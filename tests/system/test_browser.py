"""End to end in a real browser: ``examples/chat.py`` and its page in headless Chromium.

Driven by Playwright's sync API (plain test functions: pytest-trio leaves them alone, and no
asyncio loop runs in the test thread) against the system ``chromium``; Playwright downloads
no browser. Without playwright or chromium these tests are skipped, unless
``RATCHETPY_REQUIRE_BROWSER=1`` is set (``scripts/test.sh`` sets it when chromium is present),
in which case they fail.

Everything the server logs and every console message of the pages is printed as it arrives,
so a failing test shows both in its captured output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from support.browser import (
    RECONNECT_TIMEOUT_MS,
    TIMEOUT_MS,
    Watched,
    browser,
    chromium_executable,
    expect,
)
from support.examples import EXAMPLES
from support.processes import ExampleProcess

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

__all__ = ["browser", "chromium_executable"]  # fixtures, used by name

CHAT = EXAMPLES / "chat.py"
RECEIVED = "#messages li:not(.mine):not(.info)"  # what the server delivered to this page


class ChatProcess(ExampleProcess):
    """``examples/chat.py`` as a subprocess."""

    def __init__(self, port: int) -> None:
        super().__init__(CHAT, port)


@pytest.fixture
def chat_server() -> Iterator[Callable[[int], ChatProcess]]:
    """``server = chat_server(port)`` starts ``examples/chat.py`` (port 0: a free one)."""
    started: list[ChatProcess] = []

    def start(port: int = 0) -> ChatProcess:
        server = ChatProcess(port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


class ChatPage(Watched):
    """A chat.html page."""

    def send(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.click("#send")
        expect(self.page.locator("#messages li").last).to_have_text(text)
        expect(self.page.locator("#messages li").last).to_have_class("mine")
        expect(self.page.locator("#input")).to_have_value("")

    def expect_received(self, texts: list[str]) -> None:
        """Exactly these messages came from the server, in this order (and nothing else)."""
        expect(self.page.locator(RECEIVED)).to_have_text(texts, timeout=TIMEOUT_MS)


def open_chat(browser: BrowserContext, url: str, name: str) -> ChatPage:
    page = browser.pages[0] if name == "A" and browser.pages else browser.new_page()
    watched = ChatPage(page, name)
    response = page.goto(url)
    assert response is not None
    assert response.ok, f"GET {url}: {response.status}"
    watched.expect_status("online")
    return watched


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # the README's two addresses
def test_chat_page_loads_cleanly_and_connects(
    browser: BrowserContext, chat_server: Callable[[int], ChatProcess], host: str
) -> None:
    server = chat_server(0)
    url = f"http://{host}:{server.port}/"
    page = ChatPage(browser.pages[0] if browser.pages else browser.new_page(), "A")
    response = page.page.goto(url)
    assert response is not None
    assert response.status == 200
    assert response.header_value("content-type") == "text/html; charset=utf-8"
    assert response.body() == (EXAMPLES / "chat.html").read_bytes()
    page.expect_status("online")
    expect(page.page).to_have_title("ratchetpy chat")
    expect(page.page.locator("#status")).to_have_text("connected")
    server.wait_for_log(r"new connection #\d+")
    assert page.console_errors == []
    assert page.page_errors == []
    assert server.stop() == 0
    assert server.errors() == []


def test_two_pages_chat_both_ways_and_reconnect_after_a_server_restart(
    browser: BrowserContext, chat_server: Callable[[int], ChatProcess]
) -> None:
    started = time.monotonic()
    server = chat_server(0)
    url = f"http://127.0.0.1:{server.port}/"
    a = open_chat(browser, url, "A")
    b = open_chat(browser, url, "B")
    server.wait_for_log(r"new connection #\d+", count=2)

    # Every message the server delivers arrives after all those it delivered before on the same
    # connection, so when B's reply reaches A, an echo of A's own message would already be there:
    # exact lists of received messages prove that no sender gets its message back.
    a.send("A1: hello from A")
    b.expect_received(["A1: hello from A"])
    b.send("B1: hello from B")
    a.expect_received(["B1: hello from B"])
    a.send("A2: still A")
    b.expect_received(["A1: hello from A", "A2: still A"])
    a.expect_received(["B1: hello from B"])

    # Stop the server: both pages see the close and go offline; the process exits cleanly.
    stopping = time.monotonic()
    server.terminate()
    a.expect_status("offline")
    b.expect_status("offline")
    assert server.stop() == 0
    server.wait_for_log(r"shutting down gracefully")
    assert server.errors() == []

    # Start it again on the same port; the pages reconnect by themselves (no reload: their
    # message lists are kept) with their backoff.
    restarted = chat_server(server.port)
    assert restarted.port == server.port
    a.expect_status("online", timeout=RECONNECT_TIMEOUT_MS)
    b.expect_status("online", timeout=RECONNECT_TIMEOUT_MS)
    restarted.wait_for_log(r"new connection #\d+", count=2)
    reconnected = time.monotonic()

    b.send("B2: back again")
    a.expect_received(["B1: hello from B", "B2: back again"])
    a.send("A3: welcome back")
    b.expect_received(["A1: hello from A", "A2: still A", "A3: welcome back"])
    a.expect_received(["B1: hello from B", "B2: back again"])

    for page in (a, b):
        expect(page.page.locator("#messages li.info")).to_have_count(0)  # "not connected: ..."
        assert page.page_errors == []
    assert restarted.stop() == 0
    assert restarted.errors() == []
    print(
        f"timing: whole test {time.monotonic() - started:.2f} s, "
        f"SIGTERM to both pages back online {reconnected - stopping:.2f} s"
    )
