"""A WAMP router served by an App in a trio thread, for tests whose clients are not trio
(Autobahn|Python on asyncio, AutobahnJS in a browser driven by Playwright's sync API)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

from ratchetpy import App, InvalidStateError, Page
from ratchetpy.wamp import WampComponent, WampServer

TIMEOUT = 10.0

#: A same-origin page for browser tests to load scripts into.
BLANK_PAGE = "<!doctype html><html><head><link rel='icon' href='data:,'></head><body></body></html>"


class ServerThread:
    """An App serving a WAMP router at /ws on a free port, in a trio thread."""

    def __init__(self, app: App, wamp: WampServer) -> None:
        self.app = app
        self.wamp = wamp
        self.port = 0
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(self.app.serve)
                self._started.set()

        try:
            trio.run(serve)
        except BaseException as exc:  # reported by stop()
            self._error = exc
            self._started.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._started.wait(TIMEOUT), "server did not start"
        if self._error is not None:
            raise self._error
        return self

    def run_in_server(self, callback: Callable[[], Any]) -> Any:
        """Run ``callback`` in the server's trio thread and return its result."""
        results: queue.Queue[Any] = queue.Queue()
        self.app.call_soon_threadsafe(lambda: results.put(callback()))
        return results.get(timeout=TIMEOUT)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(InvalidStateError):  # stopping already
                self.app.call_soon_threadsafe(self.app.shutdown)
            self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "server did not stop"
        if self._error is not None:
            raise self._error

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_wamp(
    component: WampComponent | None = None, *, broker: Any = None, **options: Any
) -> ServerThread:
    """An App with the router at ``/ws`` (any origin) and a blank page at ``/``; with
    ``broker`` (a Redis URL or a broker), one worker of several."""
    app = App(None, 0, "127.0.0.1", shutdown_timeout=5, broker=broker)
    wamp = WampServer(component, **options)
    app.route("/ws", wamp, allowed_origins=["*"])
    app.route("/", Page(BLANK_PAGE))
    return ServerThread(app, wamp)
