#!/usr/bin/env python3
"""Side-by-side WebSocket server benchmarks: ratchetpy vs websockets vs trio-websocket.

Each scenario runs every server alternately (``--rounds`` times), each run on a
fresh server process pinned to one core while the C load generator
(``bench/loadgen.c``, built here into ``bench/build/loadgen``) runs pinned to
another.  The loadgen measures the server's CPU time (utime+stime from
/proc/PID/stat) over exactly its measured window, so every figure is reported
per second of server CPU; medians over the rounds are printed as a markdown
table with ratchetpy's ratio to each reference server.

The ``pubsub`` scenario runs only where a WAMP router exists (ratchetpy's
``WampServer``); its rounds alternate with the ``broadcast`` rounds when both
are selected, and the report gives its ratio to plain broadcast.

Standard library only; Python 3.10+.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LOADGEN_SRC = BENCH / "loadgen.c"
LOADGEN = BENCH / "build" / "loadgen"

SERVERS = {
    "ratchetpy": ("bench_ratchetpy.py", "ratchetpy"),
    "ratchetpy-app": ("bench_ratchetpy_app.py", "ratchetpy"),
    "ratchetpy-metrics": ("bench_ratchetpy_metrics.py", "prometheus_client"),
    "websockets": ("bench_websockets.py", "websockets"),
    "trio-websocket": ("bench_trio_websocket.py", "trio_websocket"),
}
REFERENCES = ("websockets", "trio-websocket", "ratchetpy-app", "ratchetpy-baseline")
# --baseline SRC: ratchetpy's own scripts again, importing the ratchetpy under SRC (an older
# checkout), so that a change is measured against what it changes in the same run.
BASELINE = "ratchetpy-baseline"

LOADGEN_BUSY = 0.75  # loadgen core utilisation worth a warning
LOADGEN_BOUND = 0.90  # at or above this the result may be loadgen-bound
SHARED_CORE = 0.15  # core busy minus our process's share above this: foreign load


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    unit: str
    wall_unit: str
    server_mode: str  # --scenario passed to the server
    higher_is_better: bool = True
    # Servers this scenario runs on, each with its own (script, module to import), when
    # not every server has what it needs (a WAMP router); None: every server, as in SERVERS.
    only: dict[str, tuple[str, str]] | None = None
    # Run this scenario's rounds interleaved with those of the named one when both are
    # selected, so the two are measured under the same conditions and can be compared.
    pair_with: str | None = None

    def script(self, server: str) -> tuple[str, str] | None:
        """(server script, module it imports), or None if the scenario skips ``server``."""
        if server == BASELINE:
            server = "ratchetpy"
        if self.only is None:
            return SERVERS[server]
        return self.only.get(server)


SCENARIOS = [
    Scenario(
        "echo",
        "echo, 64 clients, 1 message in flight each",
        "round trips / server CPU s",
        "round trips/s",
        "echo",
    ),
    Scenario(
        "pipelined",
        "echo, 16 clients, 100 in flight each",
        "messages / server CPU s",
        "messages/s",
        "echo",
    ),
    Scenario(
        "broadcast",
        "broadcast, 1000 clients, window {window}",
        "deliveries / server CPU s",
        "deliveries/s",
        "broadcast",
    ),
    Scenario(
        "pubsub",
        "pub/sub (WAMP), 1 publisher, 1000 subscribers, window {window}",
        "deliveries / server CPU s",
        "deliveries/s",
        "pubsub",
        only={"ratchetpy": ("bench_ratchetpy_wamp.py", "ratchetpy.wamp")},
        pair_with="broadcast",
    ),
    Scenario(
        "idle",
        "idle, {clients} connections",
        "KiB of server RSS per connection",
        "s to open all",
        "echo",
        higher_is_better=False,
    ),
    Scenario(
        "handshake",
        "handshakes, 32 concurrent",
        "server CPU µs per handshake",
        "handshakes/s",
        "echo",
        higher_is_better=False,
    ),
    Scenario(
        "binary",
        "1 MiB binary echo, 1 client",
        "MB echoed / server CPU s",
        "MB/s",
        "echo",
    ),
]
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Run:
    scenario: str
    server: str
    round: int
    ok: bool = False
    metric: float | None = None  # the per-server-CPU figure (or KiB/conn, µs/handshake)
    wall_rate: float | None = None
    server_util: float | None = None
    loadgen_util: float | None = None
    server_core_busy: float | None = None  # whole core, any process (from /proc/stat)
    loadgen_core_busy: float | None = None
    loadgen_per_server_cpu: float | None = None  # loadgen CPU s per server CPU s
    note: str = ""
    loadgen: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_loadgen(cc: str) -> None:
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return
    LOADGEN.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(LOADGEN), str(LOADGEN_SRC)]
    log("building loadgen: " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by both children) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(needed, 65536)
    for limits in ((target, max(hard, target)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        log(f"warning: RLIMIT_NOFILE is {soft}, below the {needed} the idle scenario needs")
    return soft


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_listening(port: int) -> bool:
    """True if something listens on 127.0.0.1:port (or 0.0.0.0:port).

    Read from /proc/net/tcp rather than by connecting: a probe connection
    that closes without a handshake is noise in every server's log and must
    not be what decides whether a run starts.
    """
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] in want and parts[3] == "0A":
                    return True
        return False
    except OSError:  # no /proc: fall back to a connect probe
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0


def pin(cpu: int, cmd: list[str]) -> tuple[list[str], Any]:
    taskset = shutil.which("taskset")
    if taskset:
        return [taskset, "-c", str(cpu), *cmd], None
    return cmd, lambda: os.sched_setaffinity(0, {cpu})


def vmrss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settled_rss(pid: int, limit: float = 5.0) -> int:
    """VmRSS once two samples 0.25 s apart differ by less than 0.5 %."""
    deadline = time.monotonic() + limit
    prev = vmrss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cur = vmrss_kib(pid)
        if abs(cur - prev) <= prev * 0.005:
            return cur
        prev = cur
    return prev


class LineReader:
    """Read lines from a pipe with a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def readline(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("loadgen did not answer in time")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line.decode()
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return dict(json.loads(line))
    raise ValueError(f"no JSON from loadgen: {text[-300:]!r}")


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- one run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logdir = Path(tempfile.mkdtemp(prefix="ratchetpy-bench-"))
        self.env = self._env(ROOT / "src")
        self.baseline_env = self._env(Path(args.baseline)) if args.baseline else None

    @staticmethod
    def _env(src: Path) -> dict[str, str]:
        env = dict(os.environ)
        path = str(src)
        env["PYTHONPATH"] = path + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else path
        return env

    def env_for(self, server: str) -> dict[str, str]:
        if server == BASELINE:
            assert self.baseline_env is not None
            return self.baseline_env
        return self.env

    def server_available(self, server: str, module: str | None = None) -> str | None:
        module = module or SERVERS["ratchetpy" if server == BASELINE else server][1]
        r = subprocess.run(
            [self.args.python, "-c", f"import {module}"],
            env=self.env_for(server),
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            return None
        return (r.stderr.strip().splitlines() or ["import failed"])[-1]

    def start_server(
        self, server: str, sc: Scenario, tag: str
    ) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        found = sc.script(server)
        assert found is not None, f"{sc.name} does not run on {server}"
        script = BENCH / "servers" / found[0]
        cmd, preexec = pin(
            self.args.server_cpu,
            [self.args.python, str(script), "--port", str(port), "--scenario", sc.server_mode],
        )
        logfile = self.logdir / f"{tag}.log"
        with open(logfile, "wb") as err:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=self.env_for(server),
                preexec_fn=preexec,
            )
        deadline = time.monotonic() + 30
        while not is_listening(port):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}); log: {logfile}")
            if time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"server never listened; log: {logfile}")
            time.sleep(0.02)
        return proc, port, logfile

    def loadgen_cmd(self, sc: Scenario, port: int, pid: int) -> list[str]:
        a = self.args
        common = ["--port", str(port), "--server-pid", str(pid)]
        timed = ["--warmup", str(a.warmup), "--duration", str(a.duration)]
        if sc.name == "echo":
            mode = ["echo", "--clients", "64", "--inflight", "1", "--size", "32", *timed]
        elif sc.name == "pipelined":
            mode = ["echo", "--clients", "16", "--inflight", "100", "--size", "32", *timed]
        elif sc.name == "broadcast":
            mode = ["broadcast", "--clients", "1000", "--size", "32"]
            mode += ["--window", str(a.broadcast_window), *timed]
        elif sc.name == "pubsub":
            # 1000 subscribers plus the publisher; the published string is 32 characters
            mode = ["pubsub", "--clients", "1000", "--size", "32"]
            mode += ["--window", str(a.broadcast_window), *timed]
        elif sc.name == "handshake":
            mode = ["handshake", "--concurrency", "32", *timed]
        elif sc.name == "binary":
            mode = ["echo", "--clients", "1", "--inflight", "1", "--size", str(2**20)]
            mode += ["--binary", *timed]
        else:
            mode = ["idle", "--clients", str(a.idle_clients), "--warm", str(a.idle_warm)]
        cmd, _ = pin(a.loadgen_cpu, [str(LOADGEN), *mode, *common])
        return cmd

    def run_once(self, sc: Scenario, server: str, rnd: int) -> Run:
        run = Run(sc.name, server, rnd)
        tag = f"{sc.name}-{server}-{rnd}"
        try:
            proc, port, logfile = self.start_server(server, sc, tag)
        except RuntimeError as exc:
            run.note = str(exc)
            return run
        try:
            cmd = self.loadgen_cmd(sc, port, proc.pid)
            if sc.name == "idle":
                self.measure_idle(run, cmd, proc)
            else:
                self.measure_timed(run, sc, cmd)
            if proc.poll() is not None:
                run.ok = False
                run.note = f"server died during the run ({proc.returncode}); log: {logfile}"
        except (RuntimeError, ValueError, TimeoutError, subprocess.TimeoutExpired) as exc:
            run.ok = False
            run.note = f"{exc}; server log: {logfile}"
        finally:
            stop(proc)
        return run

    def measure_timed(self, run: Run, sc: Scenario, cmd: list[str]) -> None:
        a = self.args
        timeout = a.warmup + a.duration + 120
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        res = last_json(r.stdout)
        run.loadgen = res
        if "error" in res:
            raise RuntimeError(f"loadgen: {res['error']}")
        cpu, wall, count = res["server_cpu_s"], res["elapsed_s"], res["count"]
        if cpu is None:
            raise RuntimeError("loadgen could not read the server's CPU time")
        run.server_util = res["server_util"]
        run.loadgen_util = res["lg_util"]
        run.loadgen_per_server_cpu = res["lg_cpu_s"] / cpu if cpu > 0 else None
        busy = res.get("core_busy") or []
        if a.server_cpu < len(busy):
            run.server_core_busy = busy[a.server_cpu]
        if a.loadgen_cpu < len(busy):
            run.loadgen_core_busy = busy[a.loadgen_cpu]
        if count == 0 or cpu <= 0:
            raise RuntimeError(f"no progress (count {count}, server CPU {cpu} s)")
        if sc.name == "handshake":
            run.metric = cpu * 1e6 / count
            run.wall_rate = count / wall
        elif sc.name == "binary":
            mb = res["bytes"] / 1e6
            run.metric = mb / cpu
            run.wall_rate = mb / wall
        else:
            run.metric = count / cpu
            run.wall_rate = count / wall
        run.ok = True
        if res["errors"]:
            run.note = f"loadgen saw {res['errors']} errors: {res['first_error']}"
            run.ok = False

    def measure_idle(self, run: Run, cmd: list[str], server: subprocess.Popen[bytes]) -> None:
        a = self.args
        lg = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert lg.stdin is not None and lg.stdout is not None
        reader = LineReader(lg.stdout.fileno())
        try:
            warm = json.loads(reader.readline(60) or "{}")
            if warm.get("event") != "warm" or warm["opened"] != a.idle_warm:
                raise RuntimeError(f"warm-up connections failed: {warm}")
            rss0 = settled_rss(server.pid)
            lg.stdin.write(b"go\n")
            lg.stdin.flush()
            held = json.loads(reader.readline(300) or "{}")
            if held.get("event") != "held":
                raise RuntimeError(f"loadgen failed while opening: {held}")
            rss1 = settled_rss(server.pid)
            lg.stdin.close()
            final = json.loads(reader.readline(60) or "{}")
        finally:
            with contextlib.suppress(OSError):
                lg.stdin.close()
            try:
                lg.wait(timeout=30)
            except subprocess.TimeoutExpired:
                lg.kill()
                lg.wait()
        run.loadgen = final
        opened = held["opened"]
        failed = {k: v for k, v in held["failed"].items() if v}
        run.extra = {
            "rss_before_kib": rss0,
            "rss_held_kib": rss1,
            "opened": opened,
            "still_open": final.get("still_open"),
            "failed": failed,
            "open_seconds": held["open_seconds"],
        }
        new = opened - warm["opened"]
        if new <= 0:
            raise RuntimeError("no connection opened")
        run.metric = (rss1 - rss0) / new
        run.wall_rate = held["open_seconds"]
        run.ok = True
        if opened < a.idle_clients or failed:
            run.ok = False
            run.note = f"only {opened} of {a.idle_clients} connected; failures {failed}"
        elif final.get("still_open") != a.idle_clients:
            run.ok = False
            run.note = f"server dropped connections: {final.get('still_open')} still open"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- reporting


def describe(run: Run) -> str:
    if not run.ok and run.metric is None:
        return f"FAILED: {run.note}"
    sc = SCENARIO_BY_NAME[run.scenario]
    if sc.name == "idle":
        e = run.extra
        s = (
            f"{run.metric:.2f} KiB/conn (RSS {e['rss_before_kib']} -> {e['rss_held_kib']} KiB, "
            f"{e['opened']} open, {e['open_seconds']:.1f} s to open)"
        )
    else:
        s = (
            f"{fmt(run.metric)} {sc.unit} (wall {fmt(run.wall_rate)} {sc.wall_unit}, "
            f"server {pct(run.server_util)} of core {pct(run.server_core_busy)} busy, "
            f"loadgen {pct(run.loadgen_util)} of core {pct(run.loadgen_core_busy)} busy)"
        )
    return s if run.ok else f"{s} INVALID: {run.note}"


def summarize(runs: list[Run], servers: list[str], scenarios: list[Scenario]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sc in scenarios:
        per: dict[str, Any] = {}
        for srv in servers:
            good = [r for r in runs if r.scenario == sc.name and r.server == srv and r.ok]
            total = [r for r in runs if r.scenario == sc.name and r.server == srv]
            utils = [r.loadgen_util for r in good if r.loadgen_util is not None]
            sutils = [r.server_util for r in good if r.server_util is not None]
            lcore = [r.loadgen_core_busy for r in good if r.loadgen_core_busy is not None]
            score = [r.server_core_busy for r in good if r.server_core_busy is not None]
            lps = [r.loadgen_per_server_cpu for r in good if r.loadgen_per_server_cpu is not None]
            per[srv] = {
                "applies": sc.script(srv) is not None,
                "runs": len(total),
                "ok": len(good),
                "metric": median([r.metric for r in good if r.metric is not None]),
                "wall_rate": median([r.wall_rate for r in good if r.wall_rate is not None]),
                "loadgen_util": median(utils),
                "loadgen_util_max": max(utils) if utils else None,
                "server_util": median(sutils),
                "loadgen_core_busy": median(lcore),
                "loadgen_core_busy_max": max(lcore) if lcore else None,
                "server_core_busy": median(score),
                "loadgen_per_server_cpu_max": max(lps) if lps else None,
                "failures": [r.note for r in total if not r.ok],
            }
        mine = per.get("ratchetpy", {}).get("metric")
        ratios: dict[str, float | None] = {}
        for ref in REFERENCES:
            theirs = per.get(ref, {}).get("metric")
            if mine and theirs and "ratchetpy" in servers and ref in servers:
                ratios[ref] = mine / theirs if sc.higher_is_better else theirs / mine
            else:
                ratios[ref] = None
        out[sc.name] = {"servers": per, "advantage": ratios}
    pubsub, broadcast = out.get("pubsub"), out.get("broadcast")
    if pubsub is not None and broadcast is not None:
        # pub/sub on ratchetpy's WAMP router divided by plain broadcast on each server
        mine = pubsub["servers"].get("ratchetpy", {}).get("metric")
        vs: dict[str, float | None] = {}
        for srv in servers:
            theirs = broadcast["servers"][srv]["metric"]
            if srv == "ratchetpy" or theirs is not None:
                vs[srv] = mine / theirs if mine and theirs else None
        pubsub["vs_broadcast"] = vs
    return out


def flag_for(sc: Scenario, per: dict[str, Any], idle_clients: int) -> str:
    notes = []
    if sc.name == "idle":
        for srv, s in per.items():
            if s["ok"] < s["runs"]:
                notes.append(f"{srv}: {s['runs'] - s['ok']} failed (see log)")
        return "; ".join(notes) or f"all {idle_clients:,} connected, none refused"
    worst = max(
        ((s["loadgen_util_max"], srv) for srv, s in per.items() if s["loadgen_util_max"]),
        default=None,
    )
    for srv, s in per.items():
        if s["ok"] < s["runs"]:
            notes.append(f"{srv}: {s['runs'] - s['ok']}/{s['runs']} runs failed")
    if worst is None:
        return "; ".join(notes) or "—"
    util, srv = worst
    if util >= LOADGEN_BOUND:
        notes.insert(0, f"**LOADGEN-BOUND** ({srv}: loadgen {pct(util)})")
    elif util >= LOADGEN_BUSY:
        notes.insert(0, f"loadgen busy ({srv}: {pct(util)})")
    else:
        notes.insert(0, f"ok (loadgen ≤ {pct(util)} of its core)")
    ratio = max(
        (s["loadgen_per_server_cpu_max"] for s in per.values() if s["loadgen_per_server_cpu_max"]),
        default=None,
    )
    if ratio is not None:
        notes.insert(1, f"loadgen CPU ≤ {ratio:.2f}x server CPU")
    # other processes on either core: the loadgen may be starved although its own CPU is
    # low, and the server shares caches and gets preempted; per-CPU figures get noisier
    shared = []
    for s in per.values():
        for core, own in (
            (s["loadgen_core_busy"], s["loadgen_util"]),
            (s["server_core_busy"], s["server_util"]),
        ):
            if core is not None and own is not None and core - own > SHARED_CORE:
                shared.append(core - own)
    if shared:
        notes.append(f"cores shared with other processes (up to {pct(max(shared))} foreign load)")
    return "; ".join(notes)


def markdown(
    summary: dict[str, Any], servers: list[str], scenarios: list[Scenario], args: argparse.Namespace
) -> str:
    lines = []
    refs = [r for r in REFERENCES if r in servers and "ratchetpy" in servers]
    head = ["scenario", "figure", *servers, *[f"ratchetpy vs {r}" for r in refs], "loadgen"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for sc in scenarios:
        s = summary[sc.name]
        title = sc.title.format(window=args.broadcast_window, clients=f"{args.idle_clients:,}")
        unit = sc.unit + ("" if sc.higher_is_better else " (lower is better)")
        row = [title, unit]
        for srv in servers:
            m = s["servers"][srv]["metric"]
            if not s["servers"][srv]["applies"]:
                row.append("n/a")
            else:
                row.append(fmt(m) if m is not None else "FAILED")
        for ref in refs:
            v = s["advantage"][ref]
            row.append("—" if v is None else f"{v:.2f}x")
        row.append(flag_for(sc, s["servers"], args.idle_clients))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Medians over the rounds. Ratios are ratchetpy's advantage: > 1 means ratchetpy is "
        "better (more per CPU second, or fewer µs / KiB)."
    )
    lines.append("")
    pubsub_lines = pubsub_report(summary, servers, args)
    if pubsub_lines:
        lines.extend([*pubsub_lines, ""])
    lines.append(
        "Raw rates per wall second and utilisation (medians): rate / server process CPU "
        "(server core busy) / loadgen process CPU (loadgen core busy). A core busier than "
        "its process means other processes shared it."
    )
    lines.append("")
    head2 = ["scenario", *servers]
    lines.append("| " + " | ".join(head2) + " |")
    lines.append("|" + "---|" * len(head2))
    for sc in scenarios:
        row = [sc.name + f" ({sc.wall_unit})"]
        for srv in servers:
            p = summary[sc.name]["servers"][srv]
            if not p["applies"]:
                row.append("n/a")
            elif sc.name == "idle":
                row.append(f"{fmt(p['wall_rate'])} s to open" if p["wall_rate"] else "—")
            else:
                row.append(
                    f"{fmt(p['wall_rate'])} / {pct(p['server_util'])} "
                    f"({pct(p['server_core_busy'])}) / {pct(p['loadgen_util'])} "
                    f"({pct(p['loadgen_core_busy'])})"
                )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def pubsub_report(
    summary: dict[str, Any], servers: list[str], args: argparse.Namespace
) -> list[str]:
    """Pub/sub on ratchetpy's WAMP router against plain broadcast, as lines of markdown."""
    pubsub = summary.get("pubsub")
    if pubsub is None or "ratchetpy" not in servers:
        return []
    mine = fmt(pubsub["servers"]["ratchetpy"]["metric"])
    if "vs_broadcast" not in pubsub:
        return [
            f"Pub/sub (WAMP) on ratchetpy: {mine} deliveries / server CPU s; add the "
            "broadcast scenario to the run for its ratio to plain broadcast."
        ]
    lines = [
        f"Pub/sub (WAMP) on ratchetpy, {mine} deliveries / server CPU s, against plain "
        f"broadcast (same 1000 receivers, window {args.broadcast_window}; medians):",
        "",
        "| plain broadcast on | deliveries / server CPU s | WAMP pub/sub ÷ plain broadcast |",
        "|---|---|---|",
    ]
    broadcast = summary["broadcast"]["servers"]
    labels = {
        "ratchetpy": "ratchetpy (the same stack without WAMP: the router's cost)",
        "ratchetpy-app": "ratchetpy-app (plain broadcast through App)",
    }
    for srv, ratio in pubsub["vs_broadcast"].items():
        label = labels.get(srv, f"{srv} (no WAMP router; its plain broadcast, for reference)")
        value = "—" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {label} | {fmt(broadcast[srv]['metric'])} | {value} |")
    return lines


def schedule(scenarios: list[Scenario]) -> list[list[Scenario]]:
    """Group the scenarios whose rounds are interleaved (``pair_with``), in the order given."""
    names = {sc.name for sc in scenarios}
    groups: dict[str, list[Scenario]] = {}
    for sc in scenarios:
        lead = sc.pair_with if sc.pair_with in names else sc.name
        groups.setdefault(lead, []).append(sc)
    for group in groups.values():  # the paired-with scenario first in each round
        group.sort(key=lambda sc: sc.pair_with is not None)
    return list(groups.values())


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    venv_python = ROOT / ".venv" / "bin" / "python"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS),
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 6)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 1)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds (default 4)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 0.3+1 s, 1000 idle")
    p.add_argument("--idle-clients", type=int, default=None, help="default 10000")
    p.add_argument("--idle-warm", type=int, default=16, help="connections before the baseline")
    p.add_argument("--broadcast-window", type=int, default=10)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--loadgen-cpu", type=int, default=1)
    p.add_argument(
        "--python",
        default=str(venv_python) if venv_python.exists() else sys.executable,
        help="interpreter for the servers (default: the project's .venv)",
    )
    p.add_argument(
        "--baseline",
        metavar="SRC",
        help="also measure the ratchetpy package under SRC (the src/ of another checkout) as "
        f"{BASELINE!r}, for before/after ratios in one run",
    )
    p.add_argument("--cc", default="gcc")
    p.add_argument("--json", metavar="OUT", help="write every run and the summary as JSON")
    args = p.parse_args(argv)
    q = args.quick
    if args.rounds is None:
        args.rounds = 1 if q else 6
    if args.warmup is None:
        args.warmup = 0.3 if q else 1.0
    if args.duration is None:
        args.duration = 1.0 if q else 4.0
    if args.idle_clients is None:
        args.idle_clients = 1000 if q else 10000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = []
    for name in args.scenarios.split(","):
        if name.strip() not in SCENARIO_BY_NAME:
            sys.exit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_BY_NAME)}")
        scenarios.append(SCENARIO_BY_NAME[name.strip()])
    servers = [s.strip() for s in args.servers.split(",")]
    if args.baseline:
        servers.append(BASELINE)
    for srv in servers:
        if srv not in SERVERS and srv != BASELINE:
            sys.exit(f"unknown server {srv!r}; choose from {', '.join(SERVERS)}")
    if os.cpu_count() and max(args.server_cpu, args.loadgen_cpu) >= (os.cpu_count() or 1):
        sys.exit("--server-cpu/--loadgen-cpu name a CPU this machine does not have")

    build_loadgen(args.cc)
    nofile = raise_nofile(args.idle_clients + 1000)
    bench = Bench(args)

    available = []
    for srv in servers:
        problem = bench.server_available(srv)
        if problem:
            log(f"skipping {srv}: cannot import it with {args.python}: {problem}")
        else:
            available.append(srv)
    if not available:
        sys.exit("no server available")
    # per scenario, the servers it runs on (pubsub: only those with a WAMP router)
    runs_on: dict[str, list[str]] = {}
    for sc in scenarios:
        runs_on[sc.name] = []
        for srv in available:
            found = sc.script(srv)
            if found is None:
                continue
            problem = bench.server_available(srv, found[1])
            if problem:
                log(f"skipping {sc.name} on {srv}: cannot import {found[1]}: {problem}")
            else:
                runs_on[sc.name].append(srv)

    log(
        f"servers {', '.join(available)}; {args.rounds} rounds; warm-up {args.warmup} s, "
        f"window {args.duration} s; server on CPU {args.server_cpu}, loadgen on CPU "
        f"{args.loadgen_cpu}; RLIMIT_NOFILE {nofile}; logs in {bench.logdir}"
    )
    runs: list[Run] = []
    for group in schedule(scenarios):
        for rnd in range(1, args.rounds + 1):
            for sc in group:
                for srv in runs_on[sc.name]:
                    run = bench.run_once(sc, srv, rnd)
                    runs.append(run)
                    log(f"[{sc.name}] round {rnd}/{args.rounds} {srv}: {describe(run)}")

    summary = summarize(runs, available, scenarios)
    table = markdown(summary, available, scenarios, args)
    print(table)
    if args.json:
        doc = {
            "config": {
                k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))
            },
            "machine": {
                "python": args.python,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "summary": summary,
            "runs": [vars(r) for r in runs],
            "table": table,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    failed = [r for r in runs if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
