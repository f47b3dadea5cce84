"""Run the fuzz targets (fuzz/targets.py) under atheris, coverage-guided, each for a time.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python fuzz/run.py --seconds 60               # every target, 60 s each
    .venv/bin/python fuzz/run.py --seconds 600 websocket resp

Each target runs in a process of its own (libFuzzer's loop), seeded from and adding to
``fuzz/work/<target>/`` (not in git), with ``fuzz/corpus/<target>/`` (in git: the inputs kept
as regression tests) as a second, read-only seed directory. A crash or a hang (over 10 s for
one input) is written to ``fuzz/crashes/<target>/``: fix it, then copy the input into
``fuzz/corpus/<target>/`` so that ``tests/test_fuzz_regressions.py`` keeps replaying it. At
the end a table says, per target, the CPU seconds spent, the executions and what was found.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import TARGETS  # noqa: E402

_CHILD = """
import sys
sys.path.insert(0, {here!r})
import atheris
with atheris.instrument_imports():
    import ratchetpy.protocol.websocket, ratchetpy.protocol.deflate, ratchetpy.protocol.resp
    import ratchetpy.protocol.forwarded, ratchetpy.wamp.serializers, ratchetpy.wamp.messages
    import ratchetpy.components.session, ratchetpy.components.router, ratchetpy.wamp.publish
    import ratchetpy.protocol.http, ratchetpy.protocol.chunked, ratchetpy.protocol.handshake
    import ratchetpy.components.http_server, ratchetpy.components.ws_server, h11
from targets import TARGETS
atheris.Setup(sys.argv, TARGETS[{name!r}])
atheris.Fuzz()
"""


def run(name: str, seconds: int) -> dict[str, object]:
    work = HERE / "work" / name
    kept = HERE / "corpus" / name
    crashes = HERE / "crashes" / name
    for directory in (work, kept, crashes):
        directory.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD.format(here=str(HERE), name=name),
            f"-max_total_time={seconds}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={crashes}/",
            str(work),
            str(kept),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    runs = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)", done.stderr)
    found = sorted(p.name for p in crashes.iterdir())
    return {
        "target": name,
        "cpu": cpu,
        "executions": int(runs[-1]) if runs else 0,
        "exit": done.returncode,
        "found": found,
        "tail": done.stderr.strip().splitlines()[-15:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    results = [run(name, args.seconds) for name in args.targets]
    print("| target | CPU s | executions | crashes or hangs |")
    print("|---|---:|---:|---|")
    for result in results:
        found = ", ".join(result["found"]) or "none"  # type: ignore[arg-type]
        print(f"| {result['target']} | {result['cpu']:.0f} | {result['executions']:,} | {found} |")
    for result in results:
        if result["exit"] != 0:
            print(f"\n{result['target']} exited {result['exit']}:")
            print("\n".join(result["tail"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
