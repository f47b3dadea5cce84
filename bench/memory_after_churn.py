#!/usr/bin/env python3
"""What holds the chat server's memory after a churn of WebSocket clients?

Starts ``examples/chat.py``'s app (``make_app``) in a server subprocess, with tracemalloc
on from interpreter start and one extra route, ``/debug/{state,baseline,report,quit}``, that
answers diagnostics as JSON. Then it drives a churn from client worker processes (asyncio,
raw sockets: a real RFC 6455 handshake, masked frames, permessage-deflate offered by a share
of the clients, which then send compressed messages; what the server sends is read and
thrown away, unparsed, so the clients stay cheap):

* ``--concurrency`` normal clients at all times, each living ``--lifetime`` seconds, then
  closing cleanly (close frame, wait for the server's close and FIN) or abruptly
  (``--abrupt`` of them: half just drop the TCP connection with a FIN, half with an RST);
* chat messages of ``--message-size`` bytes at ``--rate`` per second from random live
  clients (the chat sends each to every other client), plus ``--big-rate`` pastes of
  ``--big-size`` bytes per second;
* ``--slow`` slow consumers spread over the run: tiny receive buffer, no compression, never
  read; the pastes fill their queues until the server drops them (write limit, 4 MiB).

After the churn it waits until the server holds no connection, and reports the server's RSS
at start, peak and after every client left, then what ``/debug/report`` found in the
server: RSS after ``gc.collect()`` and after ``malloc_trim(0)``, glibc's ``mallinfo2``,
pymalloc's arenas (``sys._debugmallocstats``), live objects by type against the start, the
tracemalloc allocation sites still alive against the start, and the size of every
per-connection registry of the library (which must all be empty by then).

    .venv/bin/python bench/memory_after_churn.py                    # 90 s of churn
    .venv/bin/python bench/memory_after_churn.py --duration 20 --concurrency 300 --slow 4
    .venv/bin/python bench/memory_after_churn.py --tracemalloc-frames 0   # RSS without tracing
    .venv/bin/python bench/memory_after_churn.py --rounds 2 --json /tmp/mem.json

With tracemalloc on, it also lists what is live two thirds into the churn, by allocation site.
``--keepalive S`` turns on the chat's WebSocket keepalive (the example has none).

``--rounds 2`` runs the churn twice: memory that a leak holds grows with every round, memory
the allocators keep for reuse does not. tracemalloc costs CPU and memory of its own (its
traces are malloc'd outside what it traces): compare RSS figures with ``--tracemalloc-frames
0``. Linux only (``/proc``, glibc).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import http.client
import importlib.util
import json
import logging
import os
import random
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WORDS = ("hello", "chat", "room", "lorem", "ipsum", "dolor", "sit", "amet", "message", "python")


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon, RssFile of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


# -- the server side (python -X tracemalloc=N memory_after_churn.py --serve) -------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def mallinfo() -> dict[str, int]:
    """glibc's heap: ``arena`` (brk heap), ``hblkhd`` (mmapped chunks), ``uordblks`` (in use),
    ``fordblks`` (free but kept), ``keepcost`` (free at the top, trimmable)."""
    info = _LIBC.mallinfo2()
    names = ("arena", "hblkhd", "uordblks", "fordblks", "keepcost")
    return {name: getattr(info, name) for name in names}


def pymalloc_stats() -> dict[str, int]:
    """The arena summary of ``sys._debugmallocstats()`` (which writes to fd 2)."""
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    stats = {}
    for line in text.split("arena map counts")[0].splitlines():
        if m := re.match(r"# (arenas [a-z ]+|bytes [a-z ]+?)\s+=\s+([\d,]+)", line):
            stats[m[1].strip()] = int(m[2].replace(",", ""))
        elif m := re.match(r"(\d+) unused pools \* (\d+) bytes\s+=\s+([\d,]+)", line):
            stats["bytes in unused pools"] = int(m[3].replace(",", ""))
    return stats


def census() -> collections.Counter[str]:
    """Live objects by type: every gc-tracked object and what they reach that gc does not track
    (bytes, str, ints, untracked tuples and dicts)."""
    gc.collect()
    counts: collections.Counter[str] = collections.Counter()
    level = gc.get_objects()
    seen = {id(level)}
    while level:
        deeper = []
        for obj in level:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            cls = type(obj)
            counts[f"{cls.__module__}.{cls.__qualname__}"] += 1
            deeper.extend(r for r in gc.get_referents(obj) if not gc.is_tracked(r))
        level = deeper
    return counts


def _notable(name: str) -> bool:
    prefixes = ("ratchetpy.", "chat.", "h11.", "trio.", "zlib.", "socket.", "builtins.b")
    return name.startswith(prefixes) or name in (
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.function",
        "builtins.cell",
        "builtins.coroutine",
        "builtins.frame",
        "builtins.memoryview",
    )


#: Left out of the snapshots: tracemalloc's own allocations and this script's (the census).
_IGNORE = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]


def _site(frame: Any) -> str:
    name = frame.filename
    for prefix in (f"{ROOT}/", f"{sys.prefix}/", f"{sys.base_prefix}/"):
        name = name.removeprefix(prefix)
    return f"{name}:{frame.lineno}"


class Debug:
    """An HTTP component: ``GET /debug/<action>`` answers JSON about the server's memory."""

    methods = ("GET",)

    def __init__(self, app: Any, chat: Any, workdir: Path) -> None:
        self.app = app
        self.chat = chat  # the Chat component, for its clients set
        self.baseline_file = workdir / "baseline.tracemalloc"
        self.baseline_census: collections.Counter[str] = collections.Counter()
        self.baseline_traced = 0

    def on_open(self, conn: Any, request: Any) -> Any:
        from ratchetpy import HttpResponse

        action = request.path_params.get("action", "")
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            return HttpResponse.error(404, f"no debug action {action!r}")
        body = json.dumps(handler(conn, request))
        return HttpResponse(200, body, content_type="application/json")

    def on_message(self, conn: Any, data: bytes) -> None:
        pass

    def on_close(self, conn: Any) -> None:
        pass

    def on_error(self, conn: Any, exc: Exception) -> None:
        logging.getLogger("debug").error("debug action failed", exc_info=exc)
        conn.close()

    def registries(self, me: Any) -> dict[str, int | None]:
        """Entries of every per-connection dict of the stack, this request's connection left
        out. Private names: ``None`` where the library no longer has one."""

        def size(obj: Any, attr: str) -> int | None:
            value = getattr(obj, attr, None)
            if isinstance(value, dict) and any(isinstance(v, set) for v in value.values()):
                return sum(len(v - {me}) for v in value.values())  # address -> connections
            return None if value is None else sum(1 for key in value if key is not me)

        app = self.app
        server = app.server
        hub = getattr(server, "_hub", None)
        timers = getattr(hub, "timers", None)
        heap = getattr(timers, "_heap", [])
        out = {
            "IoServer._connections": size(server, "_connections"),
            "Hub._dirty": size(hub, "_dirty"),
            "TimerQueue._heap": len(heap),
            "TimerQueue._heap (cancelled)": sum(1 for entry in heap if entry[-1].cancelled),
            "ServerTimers._timers": size(getattr(server, "_timers", None), "_timers"),
            "HttpServer._conns": size(app.http, "_conns"),
            "IpBlackList._open": size(app.blacklist, "_open"),
            "IpBlackList._keys": size(app.blacklist, "_keys"),
            "ConnectionLimits._open": size(app.limits, "_open"),
            "ConnectionLimits._keys": size(app.limits, "_keys"),
            "ConnectionLimits._buckets": size(app.limits, "_buckets"),
            "Router._conns": size(app.router, "_conns"),
            "Chat.clients": len(self.chat.clients),
        }
        for route in app.router.routes:
            component = route.component
            while not hasattr(component, "_conns") and hasattr(component, "component"):
                component = component.component  # through OriginCheck
            if type(component).__name__ == "WsServer":
                out[f"WsServer({route.path})._conns"] = size(component, "_conns")
        return out

    def do_state(self, conn: Any, request: Any = None) -> dict[str, Any]:
        stats = self.app.stats()
        return {
            "connections": stats.connections - 1,
            "connections_total": stats.connections_total,
            "slow_consumer_closes": stats.slow_consumer_closes,
            "messages_in": stats.messages_in,
            "messages_out": stats.messages_out,
            "bytes_out": stats.bytes_out,
            "status": proc_status(),
        }

    def do_baseline(self, conn: Any, request: Any = None) -> dict[str, Any]:
        gc.collect()
        out: dict[str, Any] = {"status": proc_status()}
        self.baseline_census = census()
        if tracemalloc.is_tracing():
            self.baseline_traced = tracemalloc.get_traced_memory()[0]
            tracemalloc.take_snapshot().dump(str(self.baseline_file))
            gc.collect()
        out["pymalloc"] = pymalloc_stats()
        out["mallinfo"] = mallinfo()
        out["traced"] = self.baseline_traced
        out["registries"] = self.registries(conn)
        return out

    def do_report(self, conn: Any, request: Any = None) -> dict[str, Any]:
        """RSS, allocators, live objects and registries, cheapest and least disturbing first
        (the census and the tracemalloc snapshots allocate plenty themselves)."""
        out: dict[str, Any] = {"before_gc": proc_status()}
        out["gc_collected"] = gc.collect()
        out["after_gc"] = proc_status()
        out["pymalloc"] = pymalloc_stats()  # {} while tracemalloc hooks the allocator
        out["allocated_blocks"] = sys.getallocatedblocks()
        out["mallinfo"] = mallinfo()
        out["malloc_trim"] = _LIBC.malloc_trim(0)
        out["after_trim"] = proc_status()
        out["mallinfo_after_trim"] = mallinfo()
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            out["traced"] = {"start": self.baseline_traced, "now": current, "peak": peak}
            out["tracemalloc_own_memory"] = tracemalloc.get_tracemalloc_memory()
            out["tracemalloc"] = self._compare_snapshots()
        now = census()
        before = self.baseline_census
        names = set(now) | set(before)
        out["objects_total"] = {"start": sum(before.values()), "now": sum(now.values())}
        grown = sorted(names, key=lambda n: now[n] - before[n], reverse=True)
        out["objects_grown"] = [(n, before[n], now[n]) for n in grown[:25] if now[n] > before[n]]
        out["objects_notable"] = [(n, before[n], now[n]) for n in sorted(names) if _notable(n)]
        out["registries"] = self.registries(conn)
        out["stats"] = self.do_state(conn)
        gc.collect()
        out["after_report"] = proc_status()
        return out

    def _compare_snapshots(self) -> dict[str, Any]:
        after = tracemalloc.take_snapshot().filter_traces(_IGNORE)
        before = tracemalloc.Snapshot.load(str(self.baseline_file)).filter_traces(_IGNORE)

        def rows(stats: list[Any], limit: int) -> list[dict[str, Any]]:
            return [
                {
                    "site": _site(s.traceback[0]),
                    "size": s.size,
                    "count": s.count,
                    "size_diff": getattr(s, "size_diff", None),
                    "count_diff": getattr(s, "count_diff", None),
                }
                for s in stats[:limit]
            ]

        by_line = after.compare_to(before, "lineno")
        grown = sorted((s for s in by_line if s.size_diff > 0), key=lambda s: -s.size_diff)
        by_file = sorted(after.compare_to(before, "filename"), key=lambda s: -s.size_diff)
        traces = sorted(after.compare_to(before, "traceback"), key=lambda s: -s.size_diff)
        return {
            "grown_by_line": rows(grown, 15),
            "largest_by_line": rows(after.statistics("lineno"), 10),
            "grown_by_file": rows(by_file, 10),
            "grown_tracebacks": [
                {
                    "size_diff": s.size_diff,
                    "count_diff": s.count_diff,
                    "frames": [_site(f) for f in s.traceback],
                }
                for s in traces[:5]
            ],
        }

    def do_top(self, conn: Any, request: Any = None) -> dict[str, Any]:
        """During the churn: what is live now, by allocation site (tracemalloc only)."""
        if not tracemalloc.is_tracing():
            return {}
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORE)
        top = [
            {"site": _site(s.traceback[0]), "size": s.size, "count": s.count}
            for s in snapshot.statistics("lineno")[:12]
        ]
        return {"status": proc_status(), "traced": tracemalloc.get_traced_memory()[0], "top": top}

    def do_quit(self, conn: Any, request: Any = None) -> dict[str, Any]:
        self.app.shutdown()
        return {"ok": True}


def serve(args: argparse.Namespace) -> None:
    import trio

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    spec = importlib.util.spec_from_file_location("chat", ROOT / "examples" / "chat.py")
    assert spec is not None and spec.loader is not None
    chat = importlib.util.module_from_spec(spec)
    sys.modules["chat"] = chat
    spec.loader.exec_module(chat)
    app = chat.make_app(0, HOST)
    ws_server = next(r.component for r in app.router.routes if r.path == "/chat").component
    ws_server.keepalive = args.keepalive  # OriginCheck -> WsServer; it reads this per handshake
    chat_component = ws_server.component
    with tempfile.TemporaryDirectory() as workdir:
        app.route(
            "/debug/{action}", Debug(app, chat_component, Path(workdir)), allowed_origins=["*"]
        )

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(app.serve)
                print(port, flush=True)

        trio.run(main)


# -- the client side (memory_after_churn.py --client-worker JSON) ------------------------------


def ws_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """A masked client frame."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    if not n:
        return head + mask
    key = (mask * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return head + mask + masked.to_bytes(n, "little")


def handshake(port: int, deflate: bool) -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    return (
        f"GET /chat HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{ext if deflate else ''}\r\n"
    ).encode()


class Client(asyncio.Protocol):
    """One WebSocket client: reads the 101, then throws away everything the server sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: collections.Counter[str]):
        self.counters = counters
        self.head = bytearray()
        self.opened: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.wbits: int | None = None  # set when permessage-deflate was agreed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.counters["bytes_received"] += len(data)
        if not self.opened.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end >= 0:
                self.opened.set_result(bytes(self.head[:end]))
                self.head = bytearray()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the 101"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: bytes) -> None:
        if self.wbits is None:
            self.transport.write(ws_frame(1, text))  # type: ignore[union-attr]
            return
        compressor = zlib.compressobj(6, zlib.DEFLATED, -self.wbits)
        data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.transport.write(ws_frame(1, data[:-4], rsv1=True))  # type: ignore[union-attr]


async def churn(cfg: dict[str, Any]) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    rng = random.Random(cfg["seed"])
    counters: collections.Counter[str] = collections.Counter()
    live: set[Client] = set()
    port = cfg["port"]
    end = loop.time() + cfg["duration"]

    async def connect(deflate: bool, rcvbuf: int | None = None) -> Client:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), 10)
        except BaseException:
            sock.close()
            raise
        _, client = await loop.create_connection(lambda: Client(loop, counters), sock=sock)
        client.transport.write(handshake(port, deflate))  # type: ignore[union-attr]
        try:
            head = await asyncio.wait_for(client.opened, 10)
        except BaseException:
            client.transport.abort()  # type: ignore[union-attr]
            raise
        if not head.startswith(b"HTTP/1.1 101"):
            client.transport.abort()  # type: ignore[union-attr]
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        text = head.decode("latin-1").lower()
        if "permessage-deflate" in text:
            bits = re.search(r"client_max_window_bits=(\d+)", text)
            client.wbits = int(bits[1]) if bits else 15
        counters["opened"] += 1
        return client

    async def session() -> None:
        client = await connect(rng.random() < cfg["deflate"])
        live.add(client)
        try:
            await asyncio.sleep(min(rng.uniform(*cfg["lifetime"]), max(0.0, end - loop.time())))
        finally:
            live.discard(client)
        transport = client.transport
        assert transport is not None
        if rng.random() >= cfg["abrupt"]:
            transport.write(ws_frame(8, struct.pack("!H", 1000)))
            try:  # the server answers with its close frame, then FIN
                await asyncio.wait_for(asyncio.shield(client.closed), 10)
                counters["closed_clean"] += 1
            except TimeoutError:
                counters["clean_close_timed_out"] += 1
                transport.abort()
        elif rng.random() < 0.5:
            transport.close()  # FIN, no close frame
            counters["closed_fin"] += 1
        else:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()  # RST
            counters["closed_rst"] += 1

    async def slot(delay: float) -> None:
        await asyncio.sleep(delay)
        while loop.time() < end:
            try:
                await session()
            except (TimeoutError, OSError) as exc:
                counters[f"error {type(exc).__name__}: {str(exc)[:60]}"] += 1
                await asyncio.sleep(0.5)

    async def slow_consumer(delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            client = await connect(False, rcvbuf=4096)
        except (TimeoutError, OSError) as exc:
            counters[f"error {type(exc).__name__}: {str(exc)[:60]}"] += 1
            return
        transport = client.transport
        assert transport is not None
        transport.pause_reading()  # and the kernel's buffers fill up
        counters["slow_opened"] += 1
        await asyncio.sleep(min(cfg["slow_hold"], max(0.0, end - loop.time())))
        transport.resume_reading()  # dropped by the server: what it had sent, then EOF
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), 10)
            counters["slow_saw_eof"] += 1
        except TimeoutError:
            counters["slow_still_open"] += 1
        transport.abort()

    async def sender(rate: float, sizes: tuple[int, int], big: bool) -> None:
        if rate <= 0:
            return
        next_at = loop.time()
        while True:
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() >= end:
                return
            if not live:
                continue
            size = rng.randint(*sizes)
            if big:  # a paste: repetitive, so cheap for the server to deflate per client
                text = (f"{counters['sent']:08d} paste " * (size // 15 + 1))[:size]
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(size // 5 + 1))[:size]
            rng.choice(tuple(live)).send_text(text.encode())
            counters["sent"] += 1

    n, slow = cfg["concurrency"], cfg["slow"]
    last_slow = max(1.0, cfg["duration"] - cfg["slow_hold"])
    tasks = [slot(cfg["ramp"] * i / max(1, n)) for i in range(n)]
    tasks += [slow_consumer(1.0 + (last_slow - 1.0) * i / max(1, slow)) for i in range(slow)]
    tasks.append(sender(cfg["rate"], tuple(cfg["message_size"]), False))
    tasks.append(sender(cfg["big_rate"], (cfg["big_size"], cfg["big_size"]), True))
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.5)  # let the last transports close
    return dict(counters)


# -- the orchestrator ---------------------------------------------------------------------------


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        cmd = [sys.executable]
        if args.tracemalloc_frames:
            cmd += ["-X", f"tracemalloc={args.tracemalloc_frames}"]
        cmd += [__file__, "--serve", "--log-level", args.log_level]
        if args.keepalive:
            cmd += ["--keepalive", str(args.keepalive)]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        self.log = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the server did not start; see {log}")
        self.port = int(line)
        self.pid = self.proc.pid

    def get(self, action: str, timeout: float = 120) -> dict[str, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", f"/debug/{action}", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"/debug/{action}: {response.status} {body[:200]!r}")
            return json.loads(body)  # type: ignore[no-any-return]
        finally:
            conn.close()

    def peek(self, into: dict[str, Any]) -> None:
        into.update(self.get("top"))

    def wait_empty(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.get("state")
            if state["connections"] == 0 or time.monotonic() > deadline:
                return state
            time.sleep(0.5)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.get("quit", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_clients(args: argparse.Namespace, port: int, **override: Any) -> dict[str, int]:
    """Run the churn in ``--workers`` processes (the load split evenly); their counters."""
    keys = "duration concurrency lifetime abrupt deflate rate message_size big_rate big_size"
    cfg = {key: getattr(args, key) for key in (*keys.split(), "slow", "slow_hold", "ramp")}
    cfg["port"] = port
    cfg.update(override)
    workers = max(1, args.workers)
    procs = []
    for i in range(workers):
        part = dict(cfg, seed=args.seed * 1000 + i)
        for key in ("concurrency", "slow"):
            part[key] = cfg[key] // workers + (i < cfg[key] % workers)
        for key in ("rate", "big_rate"):
            part[key] = cfg[key] / workers
        cmd = [sys.executable, __file__, "--client-worker", json.dumps(part)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE))
    total: collections.Counter[str] = collections.Counter()
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a client worker failed (exit {proc.returncode})")
        total.update(json.loads(out))
    return dict(total)


class Sampler(threading.Thread):
    """Samples the server's RSS until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.halt.wait(0.25):
            rss = proc_status(self.pid)["VmRSS"]
            self.peak = max(self.peak, rss)
            self.samples.append((round(time.monotonic() - start, 2), rss))


def print_report(result: dict[str, Any]) -> None:
    def row(label: str, value: str) -> None:
        print(f"   {label:<44} {value}")

    def rss(status: dict[str, int]) -> str:
        return f"{mib(status['VmRSS'])}  (anon {mib(status['RssAnon'])})"

    base = result["baseline"]
    print("\n== server memory ==")
    row("RSS at start (listening, no client yet)", mib(result["rss_start"]))
    row("RSS at the baseline (after a warm-up, gc'd)", rss(base["status"]))
    for i, rnd in enumerate(result["rounds"], 1):
        rep = rnd["report"]
        print(f"-- round {i}\n   clients: {rnd['clients']}\n   server: {rnd['server_stats']}")
        row("RSS peak (sampled every 0.25 s / VmHWM)", f"{mib(rnd['peak'])} / "
            f"{mib(rep['before_gc']['VmHWM'])}")  # fmt: skip
        if rnd.get("during"):
            during = rnd["during"]
            print(f"   two thirds into the churn: RSS {mib(during['status']['VmRSS'])}, traced "
                  f"{mib(during['traced'])}; live by site (size, count):")  # fmt: skip
            for site in during["top"][:10]:
                print(f"     {site['site']:<58} {site['size']:>10} {site['count']:>7}")
        row("RSS after every client left", rss(rep["before_gc"]))
        row(f"RSS after gc.collect() ({rep['gc_collected']} collected)", rss(rep["after_gc"]))
        row(f"RSS after malloc_trim(0) (returned {rep['malloc_trim']})", rss(rep["after_trim"]))
        for when, info in (("before", rep["mallinfo"]), ("after", rep["mallinfo_after_trim"])):
            row(f"glibc heap {when} the trim (mallinfo2)", f"brk {mib(info['arena'])} + mmap "
                f"{mib(info['hblkhd'])}: in use {mib(info['uordblks'])}, free "
                f"{mib(info['fordblks'])}")  # fmt: skip
        pm, pb = rep["pymalloc"], base["pymalloc"]
        if pm:
            free = pm["bytes in available blocks"] + pm.get("bytes in unused pools", 0)
            row("pymalloc arenas (1 MiB) now / at baseline", f"{pm['arenas allocated current']}"
                f" / {pb.get('arenas allocated current', 'n/a')} (highwater "
                f"{pm['arenas highwater mark']}; {pm['arenas allocated total']} allocated, "
                f"{pm['arenas reclaimed']} freed in all)")  # fmt: skip
            was = f" (baseline {mib(pb['bytes in allocated blocks'])})" if pb else ""
            row("pymalloc blocks in use / free in the arenas",
                f"{mib(pm['bytes in allocated blocks'])}{was} / {mib(free)}")  # fmt: skip
        else:
            row("pymalloc arenas", "n/a: tracemalloc hooks the allocator (--tracemalloc-frames 0)")
        row("pymalloc blocks allocated (getallocatedblocks)", str(rep["allocated_blocks"]))
        if "traced" in rep:
            tr = rep["traced"]
            row("tracemalloc traced at baseline / now / peak",
                f"{mib(tr['start'])} / {mib(tr['now'])} / {mib(tr['peak'])} (its own tables: "
                f"{mib(rep['tracemalloc_own_memory'])})")  # fmt: skip
            print("   allocation sites grown since the baseline: size, count, +size, +count")
            for site in rep["tracemalloc"]["grown_by_line"][:10]:
                print(f"     {site['site']:<58} {site['size']:>10} {site['count']:>7} "
                      f"{site['size_diff']:>+10} {site['count_diff']:>+7}")  # fmt: skip
            print("   files grown most: " + ", ".join(
                f"{f['site'].rsplit(':', 1)[0]} {f['size_diff']:+}"
                for f in rep["tracemalloc"]["grown_by_file"][:5]
            ))  # fmt: skip
        total = rep["objects_total"]
        print(f"   live objects at baseline / now: {total['start']} / {total['now']}; grown most:")
        for name, was, now in rep["objects_grown"][:10]:
            print(f"     {name:<58} {was:>8} -> {now:>8}")
        print("   notable types (ratchetpy and chat always, the others when they changed):")
        for name, was, now in rep["objects_notable"]:
            if was != now or name.startswith(("ratchetpy.", "chat.")):
                print(f"     {name:<58} {was:>8} -> {now:>8}")
        print(f"   per-connection registries (all 0 when nothing is left): {rep['registries']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=float, default=90, help="seconds of churn per round")
    add("--concurrency", type=int, default=1000, help="normal clients at once")
    add(
        "--lifetime",
        type=float,
        nargs=2,
        default=[3.0, 20.0],
        metavar=("MIN", "MAX"),
        help="seconds a client stays (uniform)",
    )
    add("--abrupt", type=float, default=0.35, help="share that drop the TCP connection")
    add("--deflate", type=float, default=0.5, help="share offering permessage-deflate")
    add("--rate", type=float, default=10, help="chat messages per second, all clients")
    add("--message-size", type=int, nargs=2, default=[40, 800], metavar=("MIN", "MAX"),
        help="bytes per chat message (uniform)")  # fmt: skip
    add("--big-rate", type=float, default=3, help="pastes per second (fill slow consumers)")
    add("--big-size", type=int, default=65536, help="bytes per paste")
    add("--slow", type=int, default=30, help="slow consumers over the run")
    add("--slow-hold", type=float, default=45, help="seconds a slow consumer does not read")
    add("--ramp", type=float, default=5, help="seconds to open the first clients over")
    add("--workers", type=int, default=1, help="client processes")
    add("--rounds", type=int, default=1, help="churn rounds, each followed by a report")
    add("--settle", type=float, default=12, help="seconds to wait once every client left")
    add("--tracemalloc-frames", type=int, default=4, help="frames per trace; 0: no tracemalloc")
    add("--log-level", default="WARNING", help="the server's logging level")
    add("--keepalive", type=float, help="seconds: WsServer(keepalive=...) for the chat")
    add("--seed", type=int, default=1, help="of the clients' random choices")
    add("--json", type=Path, help="also write every figure to this file")
    add("--serve", action="store_true", help=argparse.SUPPRESS)
    add("--client-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_nofile()
    if args.serve:
        serve(args)
        return
    if args.client_worker:
        print(json.dumps(asyncio.run(churn(json.loads(args.client_worker)))))
        return

    log = Path(tempfile.gettempdir()) / f"memory_after_churn.{os.getpid()}.log"
    server = Server(args, log)
    print(f"server pid {server.pid} on port {server.port}; its log: {log}", file=sys.stderr)
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "rounds": []}
    try:
        time.sleep(0.5)
        result["rss_start"] = proc_status(server.pid)["VmRSS"]
        # A few clients first, so that one-time costs (lazy imports, caches) are in the baseline.
        run_clients(args, server.port, duration=3, concurrency=20, slow=0, ramp=0.5, big_rate=1)
        server.wait_empty()
        time.sleep(args.settle)
        result["baseline"] = server.get("baseline")
        for i in range(args.rounds):
            print(f"round {i + 1}: {args.duration:g} s of churn ...", file=sys.stderr)
            with contextlib.suppress(OSError):  # reset VmHWM, so it is this round's peak
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            sampler = Sampler(server.pid)
            sampler.start()
            during: dict[str, Any] = {}  # what is live two thirds into the churn
            peek = threading.Timer(args.duration * 2 / 3, server.peek, (during,))
            if args.tracemalloc_frames:
                peek.start()
            clients = run_clients(args, server.port)
            if peek.is_alive():
                peek.join()
            state = server.wait_empty()
            time.sleep(args.settle)
            sampler.halt.set()
            sampler.join()
            state = {k: v for k, v in state.items() if k != "status"}
            report = server.get("report")
            result["rounds"].append(
                {
                    "clients": clients,
                    "server_stats": state,
                    "peak": sampler.peak,
                    "rss_samples": sampler.samples[::4],
                    "during": during,
                    "report": report,
                }
            )
    finally:
        server.stop()
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nall figures: {args.json}")


if __name__ == "__main__":
    main()
