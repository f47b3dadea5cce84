"""What the browser tests share: the system Chromium through Playwright and pages whose
console errors are kept (example servers as subprocesses: :mod:`support.processes`).

Without playwright or chromium the browser fixtures skip, unless ``RATCHETPY_REQUIRE_BROWSER=1``
is set (``scripts/test.sh`` sets it when chromium is present), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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
RECONNECT_TIMEOUT_MS = 15_000  # the pages retry after 0.5 s, 1 s, 2 s, 4 s, 8 s


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
        """The example pages keep ``document.body.dataset.status``: "online" or "offline"."""
        expect(self.page.locator("body")).to_have_attribute("data-status", status, timeout=timeout)
