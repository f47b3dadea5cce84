"""Benchmark app: a WAMP router at ``/ws`` for ``bench/rpc_across.py``, served with
``ratchetpy serve bench_ratchetpy_rpc:make_app --workers 2 --broker URL``.

The router answers ``bench.pid`` itself (the pid of the worker serving the caller, so the
benchmark can place its sessions) and routes every other call to its callee, on whichever
worker that is.
"""

from __future__ import annotations

import os
from typing import Any

from ratchetpy import App
from ratchetpy.wamp import Procedure, WampComponent, WampConnection, WampServer


class Router(WampComponent):
    def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        if procedure.id == "bench.pid":
            conn.call_result(call_id, os.getpid())
            return None
        return procedure.call(conn, call_id, args, kwargs)


def make_app() -> App:
    app = App(None, 0, "127.0.0.1")
    app.route("/ws", WampServer(Router()), allowed_origins=["*"])
    return app
