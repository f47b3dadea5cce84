#!/usr/bin/env python3
"""Soak test: the server under churn for N minutes, its memory, descriptors, tasks and timers
sampled; they must be flat once warmed up and back at their idle values once every client
has left.

It starts ``bench/servers/soak_server.py`` (one process serving a plain and a TLS ``App``
with the same components: chat rooms, an echo whose ``boom`` raises, a WAMP router; pinned
to core 0 with ``taskset`` when there is one) and runs the load in this process (pinned to
core 1) and ``--load-processes`` - 1 more (``soak_share.py``; three by default, which the kernel
places): about ``--clients`` clients open at all times, each living a random time, then
replaced. The mix, by share of the clients started
(``soak_config.py``; the clients are in ``soak_load.py``, the checks in ``soak_report.py``):

* 60 % chat (``ws://``) and 15 % chat over TLS (``wss://``, the throwaway ``trustme`` CA):
  ``websockets``' trio client, one in four offering permessage-deflate; join a room of about
  ``--room-size``, send a message every 4-12 s (one in twenty a 4 KiB paste) and read
  everything; every message must come back to its sender (the room sends it to all its
  members), then a normal close (1000). One room in ten is busy: half its messages are
  64 KiB pastes; the slow consumers join those;
* 10 % WAMP (``wamp.2.json``): HELLO, SUBSCRIBE to one of the ``com.soak.N`` topics (about
  ``--topic-size`` subscribers each), PUBLISH with acknowledgement every 5-15 s while
  receiving the others' EVENTs; every publication must be acknowledged; GOODBYE, close
  (1000);
* 5 % slow consumers: a raw client with a 4 KiB receive buffer and a 1448-byte MSS (what a
  client across a real network gets, not loopback's 64 KiB segments, with which the kernel
  alone would buffer megabytes) joins a busy room and reads nothing until the server
  (``/debug/rooms``) says its room was sent more than the write limit plus what the kernels'
  buffers can hold, and then one more message (the send at which the server finds it over
  the limit); then it reads: the server must have closed it with 1008. One whose room stays
  too quiet, or that is still waiting when the load stops, is counted apart (neither right
  nor wrong);
* 5 % handler errors: echo a few messages on ``/echo``, then send ``boom``: 1011;
* 5 % malformed frames: a hand-made handshake, one good echo, then a broken frame (unmasked,
  reserved opcode or bits, fragmented or long control frame, stray continuation, bad close
  payload): 1002.

The WAMP, slow, error and malformed clients go over TLS one time in five (``--tls-share``).
Each client must end the way its kind should; anything else is counted as unexpected,
with what happened.

Every few seconds it samples the server process: RSS and open descriptors from ``/proc``,
and both servers' ``/metrics`` (tasks, timers, open connections by kind, counters). At the
end all clients leave, it waits until the servers hold no WebSocket and the timers and tasks
are back, takes a final sample, and stops the server with SIGTERM (it must exit 0).

Analysis: warm-up is the first quarter of the run (at least 30 s, and at least until every
client of the ramp was replaced); a least-squares line is fitted to RSS, descriptors, tasks
and timers over the samples after it. ``--check`` fails (exit 1, saying why) when RSS grows
by more than ``--max-rss-per-connection`` bytes (128; 4096 for runs under 10 minutes) per
connection opened after warm-up, the descriptors beyond one per connection drift,
descriptors, tasks or timers do not come back to their idle values, a client ended
unexpectedly, the server logged an unexpected warning or error, the Python objects the
garbage collector tracks did not come back to their idle count, the load generator itself
fell behind, or the server did not exit 0. See bench/README.md ("Soak").

    .venv/bin/python bench/soak.py --minutes 2 --check                       # CI
    .venv/bin/python bench/soak.py --minutes 60 --plot docs/images/soak.png \\
        --json bench/results/soak.json                                       # the hour

Needs trio, websockets, trustme and prometheus-client (matplotlib for ``--plot``). Linux
(``/proc``); 127.0.0.1 only; no root, no Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio
import trustme
from soak_config import HOST, Config, KiB
from soak_load import Load, freeze_heap
from soak_report import analyse, markdown, plot
from soak_share import others

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "bench" / "servers" / "soak_server.py"
MALLOC_FIXED = "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=131072"


# -- the server process ----------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile, ca


def start_server(
    config: Config, certfile: Path, keyfile: Path, log: Path
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    command = [
        sys.executable,
        str(SERVER),
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        "--write-limit",
        str(config.write_limit),
        "--close-timeout",
        str(config.close_timeout),
    ]
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pinned:
        command = ["taskset", "-c", "0", *command]
    env = dict(os.environ)
    if config.malloc == "fixed":
        # glibc's initial thresholds, but fixed: without this, freeing a large block raises
        # the mmap threshold to its size, and later large blocks fragment the heap, so RSS
        # keeps climbing for minutes with memory malloc_trim(0) gives back (bench/README.md).
        env["GLIBC_TUNABLES"] = MALLOC_FIXED
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT / "src"), env.get("PYTHONPATH")) if part
    )
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:  # one line; the server prints it once listening
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    if not line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the soak server did not start:\n{log.read_text()[-3000:]}")
    ports = json.loads(line)
    return proc, ports


def stop_server(proc: subprocess.Popen[str], timeout: float) -> tuple[int | None, float]:
    """SIGTERM, then the exit status and how long it took (None: killed after ``timeout``)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    return code, time.monotonic() - started


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ([\w.]+): (.*)$")


def read_server_log(log: Path) -> dict[str, Any]:
    """Count the server's log records; those not expected from the soak are listed."""
    expected: Counter[str] = Counter()
    unexpected: list[str] = []
    for line in log.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue  # a traceback line, or the like, of the record before
        level, name, message = match.groups()
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        if name == "ratchetpy.ws" and "over the write limit; closing it (1008)" in message:
            expected["slow consumer closed (1008)"] += 1
        elif level == "ERROR" and name == "ratchetpy" and message.startswith("handler error on"):
            expected["handler error (boom)"] += 1
        else:
            unexpected.append(line)
    return {
        "expected": dict(expected),
        "unexpected": unexpected[:50],
        "unexpected_count": len(unexpected),
    }


# -- main ------------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Soak test of ratchetpy: churn, leaks, shutdown (see bench/README.md)."
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the load")
    parser.add_argument("--clients", type=int, default=2000, help="clients open at once")
    parser.add_argument("--check", action="store_true", help="exit 1 if a check fails")
    parser.add_argument("--json", type=Path, help="write samples and summary here")
    parser.add_argument("--plot", type=Path, help="write a PNG here (needs matplotlib)")
    parser.add_argument(
        "--replot", type=Path, help="no load: draw --plot from a run's --json document"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--room-size", type=int, default=10, help="clients per chat room")
    parser.add_argument("--topic-size", type=int, default=20, help="subscribers per topic")
    parser.add_argument("--max-rate", type=float, default=100.0, help="new connections/s")
    parser.add_argument("--tls-share", type=float, default=0.2)
    parser.add_argument("--lifetime", help="MIN,MAX seconds a client lives (default: by --minutes)")
    parser.add_argument(
        "--mix", help="kinds and shares instead of the default, e.g. chat-tls=1 (debugging)"
    )
    parser.add_argument("--write-limit", type=int, default=256 * KiB)
    parser.add_argument("--sample-interval", type=float, default=None)
    parser.add_argument(
        "--max-rss-per-connection",
        type=float,
        default=None,
        help="bytes of RSS growth allowed per connection opened after warm-up (default: 128, "
        "4096 for runs under 10 minutes)",
    )
    parser.add_argument(
        "--malloc",
        choices=("fixed", "glibc"),
        default="fixed",
        help="the server's glibc malloc: fixed thresholds (default) or glibc's dynamic ones",
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        default=4 if (os.cpu_count() or 1) >= 2 else 1,
        help="processes the clients are spread over (default: 4 with two cores or more)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep certificates and log")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    return args


def main() -> int:
    args = parse_args()
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # Said now, not after an hour of load.
        raise SystemExit("--plot needs matplotlib (pip install matplotlib)")
    if args.replot:
        if not args.plot:
            raise SystemExit("--replot needs --plot PNG")
        document = json.loads(args.replot.read_text())
        plot(
            Config.from_json(document["config"]),
            document["samples"],
            document["summary"],
            args.plot,
        )
        return 0
    config = Config.from_args(args)
    raise_fd_limit()

    temp = Path(tempfile.mkdtemp(prefix="ratchetpy-soak-"))
    proc: subprocess.Popen[str] | None = None
    try:
        certfile, keyfile, ca = make_certificates(temp)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        log_path = temp / "server.log"
        proc, ports = start_server(config, certfile, keyfile, log_path)
        if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {1})
        print(
            f"server pid {ports['pid']}: plain :{ports['plain']}, TLS :{ports['tls']}; "
            f"seed {config.seed}",
            file=sys.stderr,
            flush=True,
        )
        cafile = temp / "ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        load = Load(config, ports, ports["pid"], context, share=(0, config.load_processes))
        helpers = others(config, ports, cafile, temp) if config.load_processes > 1 else None
        freeze_heap()
        result = trio.run(load.run, helpers)
        exit_code, exit_seconds = stop_server(proc, timeout=15.0)
        log = read_server_log(log_path)
        summary = analyse(config, load, result, exit_code, exit_seconds, log)
        table = markdown(config, summary)
        print(table)
        for check in summary["checks"]:
            mark = "ok  " if check["ok"] else "FAIL"
            print(f"{mark} {check['name']}: {check['detail']}", file=sys.stderr)
        for item in summary["unexpected"][:10]:
            print(f"     unexpected: {item}", file=sys.stderr)
        for line in log["unexpected"][:10]:
            print(f"     server log: {line}", file=sys.stderr)
        if args.plot:
            plot(config, load.samples, summary, args.plot)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "config": asdict(config),
                "summary": summary,
                "markdown": table,
                "samples": load.samples,
            }
            args.json.write_text(json.dumps(document, indent=1))
        if args.keep_temp:
            print(f"kept {temp}", file=sys.stderr)
        if args.check and not summary["ok"]:
            failed = [check["name"] for check in summary["checks"] if not check["ok"]]
            print(f"soak check FAILED: {'; '.join(failed)}", file=sys.stderr)
            return 1
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if not args.keep_temp:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
