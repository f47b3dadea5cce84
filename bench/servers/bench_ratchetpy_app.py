"""Benchmark server: ratchetpy served through ``App`` (router, origin check, block list and
limits in the path), with the same components and options as ``bench_ratchetpy.py``.

Comparing the two shows what the App layers cost. Run by bench/run.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ratchetpy import MAX_SIZE, Broadcast, Echo

from ratchetpy import App, WsServer


def main(*, metrics: bool = False) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    args = parser.parse_args()
    component = Echo() if args.scenario == "echo" else Broadcast()
    app = App("localhost", args.port, "127.0.0.1")
    # bench/loadgen sends no Origin header and ../shared/bench/wsload sends
    # "http://127.0.0.1": the origin check lets both in while still running for every
    # handshake.
    app.route(
        "/",
        WsServer(component, compression=None, max_message_size=MAX_SIZE),
        allowed_origins=["127.0.0.1"],
    )
    if metrics:  # bench_ratchetpy_metrics.py: what collecting them costs
        app.route("/metrics", app.metrics)
    app.run()


if __name__ == "__main__":
    main()
