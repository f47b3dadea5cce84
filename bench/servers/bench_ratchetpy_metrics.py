"""Benchmark server: ``bench_ratchetpy_app.py``'s App with ``app.metrics`` routed too, so the
server collects what its metrics need (the scheduler-lag probe runs) while it is measured.

Against ``ratchetpy-app`` in the same run it gives what metrics cost on the hot path. Run by
bench/run.py (``--servers ratchetpy-app,ratchetpy-metrics``); see bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ratchetpy_app

if __name__ == "__main__":
    bench_ratchetpy_app.main(metrics=True)
