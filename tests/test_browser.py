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

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixtures skip (or fail) with the reason
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHAT = EXAMPLES / "chat.py"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 5_000  # one step: a page load, a message crossing the server
RECONNECT_TIMEOUT_MS = 15_000  # chat.html retries after 0.5 s, 1 s, 2 s, 4 s, 8 s
RECEIVED = "#messages li:not(.mine):not(.info)"  # what the server delivered to this page


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The system Chromium, or skip; with ``RATCHETPY_REQUIRE_BROWSER=1`` a missing one fails."""
    missing = []
    if not HAVE_PLAYWRIGHT:
        missing.append("the playwright package (pip install -e '.[test]')")
    executable = shutil.which("chromium")
    if executable is None:
        missing.append("a chromium executable on PATH (apt-get install chromium)")
    if executable is None or missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("RATCHETPY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and RATCHETPY_REQUIRE_BROWSER=1 is set", pytrace=False)
        pytest.skip(reason)
    return executable


@pytest.fixture
def browser(chromium_executable: str, tmp_path: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile; its pages are tabs of one window."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=tmp_path / "chromium-profile",
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


class ChatProcess:
    """``examples/chat.py`` as a subprocess; its log (stderr) is collected and echoed."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHAT), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._terminated = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)", timeout=20)
        self.port = int(listening[0].group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            print(f"[chat.py pid {self.proc.pid}] {line.rstrip()}", flush=True)
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_log(
        self, pattern: str, count: int = 1, timeout: float = 10
    ) -> list[re.Match[str]]:
        """Wait until ``count`` log lines match ``pattern`` (or the log ends); return them."""

        def found() -> list[re.Match[str]]:
            return [m for line in self.lines if (m := re.search(pattern, line))]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count or self._eof, timeout)
            matches = found()
            log = "".join(self.lines)
        if len(matches) < count:
            state = "exited" if self.proc.poll() is not None else "still running"
            raise AssertionError(
                f"chat.py ({state}) logged {len(matches)} of {count} lines matching "
                f"{pattern!r}; its log:\n{log}"
            )
        return matches

    def errors(self) -> list[str]:
        """Log lines at level ERROR or above, and tracebacks."""
        return [
            line
            for line in self.lines
            if re.search(r" (ERROR|CRITICAL) ", line) or line.startswith("Traceback")
        ]

    def terminate(self) -> None:
        """Send SIGTERM (a graceful stop), once."""
        if not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (if not sent yet), wait for the exit; the exit status."""
        self.terminate()
        returncode = self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


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


# -- helpers -------------------------------------------------------------------------------


class Watched:
    """A page whose console messages and uncaught errors are printed and kept."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, msg: ConsoleMessage) -> None:
        source = msg.location.get("url", "")
        print(f"[page {self.name} console.{msg.type}] {msg.text} ({source})", flush=True)
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({source})")

    def _on_page_error(self, error: Error) -> None:
        print(f"[page {self.name} uncaught] {error}", flush=True)
        self.page_errors.append(str(error))

    def expect_status(self, status: str, timeout: float = TIMEOUT_MS) -> None:
        """chat.html keeps ``document.body.dataset.status``: "online" or "offline"."""
        expect(self.page.locator("body")).to_have_attribute("data-status", status, timeout=timeout)

    def send(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.click("#send")
        expect(self.page.locator("#messages li").last).to_have_text(text)
        expect(self.page.locator("#messages li").last).to_have_class("mine")
        expect(self.page.locator("#input")).to_have_value("")

    def expect_received(self, texts: list[str]) -> None:
        """Exactly these messages came from the server, in this order (and nothing else)."""
        expect(self.page.locator(RECEIVED)).to_have_text(texts, timeout=TIMEOUT_MS)


def open_chat(browser: BrowserContext, url: str, name: str) -> Watched:
    page = browser.pages[0] if name == "A" and browser.pages else browser.new_page()
    watched = Watched(page, name)
    response = page.goto(url)
    assert response is not None
    assert response.ok, f"GET {url}: {response.status}"
    watched.expect_status("online")
    return watched


# -- tests ---------------------------------------------------------------------------------


def test_chat_page_loads_cleanly_and_connects(
    browser: BrowserContext, chat_server: Callable[[int], ChatProcess]
) -> None:
    server = chat_server(0)
    url = f"http://127.0.0.1:{server.port}/"
    page = Watched(browser.pages[0] if browser.pages else browser.new_page(), "A")
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
