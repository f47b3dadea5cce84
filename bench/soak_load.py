"""The soak's load: clients of every kind, each living a while and replaced, and the
sampler of the server's memory, descriptors, tasks and timers."""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import trio
from soak_config import EXPECTED, HOST, NEUTRAL, Config, KiB, MiB
from soak_wire import (
    MALFORMED,
    FrameReader,
    client_frame,
    close_code_of,
    describe,
    http_get,
    parse_metrics,
    raw_connect,
    read_frame,
    server_view,
    ws_handshake,
)
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import ClientConnection, connect

WORDS = (
    "hello", "chat", "room", "soak", "lorem", "ipsum", "dolor", "sit", "amet", "message",
    "python", "trio", "server", "again", "and", "then", "some", "more", "words", "here",
)  # fmt: skip
_filler_rng = random.Random(6455)
FILLER = " ".join(_filler_rng.choice(WORDS) for _ in range(40_000))


#: What the client running in this task is doing (for reports on clients that hang).
STAGE: ContextVar[list[str]] = ContextVar("stage")


def stage(name: str) -> None:
    STAGE.get()[0] = name


def proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KiB
    raise RuntimeError(f"no VmRSS for process {pid}")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def proc_cpu(pid: int | str) -> float:
    """utime + stime of a process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load --------------------------------------------------------------------------------


class RateLimiter:
    """At most ``rate`` new connections per second, in the order asked."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = 0.0

    async def wait(self, stop: trio.Event) -> None:
        at = max(trio.current_time(), self.next)
        self.next = at + self.interval
        with trio.move_on_at(at):
            await stop.wait()


def freeze_heap() -> None:
    """Called by each load process before its first client: what exists by then (modules,
    the filler text, the settings) lives as long as the process, and out of the collector's
    sight no full collection walks it again."""
    gc.collect()
    gc.freeze()


class GcPauses:
    """This process's garbage-collection pauses: how long the longest one since the last
    :meth:`take` stopped everything (a full collection over 2,000 clients' objects is what
    makes the load generator late, not its clients' work). Watches while entered."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._started)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst


class Load:
    """The clients of one load process, and (in the first, ``share=(0, n)``) the samples.

    With ``config.load_processes`` n > 1, process k of n runs the client slots k, k + n,
    k + 2n, ... at 1/n of the connection rate; the others are ``soak_share.py`` processes,
    whose statuses and results the first folds in (:meth:`note_remote`, :meth:`merge_remote`).
    """

    def __init__(
        self,
        config: Config,
        ports: dict[str, int],
        pid: int,
        context: ssl.SSLContext,
        *,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        self.config = config
        self.ports = ports
        self.pid = pid
        self.context = context
        self.share = share
        index, count = share
        self.rng = random.Random(config.seed if index == 0 else f"{config.seed}/{index}")
        self.stop = trio.Event()
        self.t0 = 0.0
        self.ids = itertools.count(1)
        self.limiter = RateLimiter(config.max_rate / count)
        self.opened: Counter[str] = Counter()
        self.opened_tls: Counter[str] = Counter()
        self.opened_after_warmup = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.unexpected: list[dict[str, Any]] = []
        self.unexpected_count = 0
        self.live: Counter[str] = Counter()
        self.running: dict[int, tuple[str, list[str]]] = {}
        self.counts: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        # From /debug/rooms: the messages sent to each room, and for each slow consumer the
        # bytes the server has queued for it and whether it is closing it.
        self.room_messages: dict[str, int] = {}
        self.slow_queued: dict[str, tuple[int, bool]] = {}
        self.samples: list[dict[str, Any]] = []
        self.scrape_errors: list[str] = []
        self.stragglers: dict[str, int] = {}
        self.lag_window = 0.0  # the load generator's worst scheduling delay since the last sample
        self.gc_pauses = GcPauses()
        self.gc_window = 0.0  # and its longest garbage-collection pause (both of any process)
        #: The other load processes' latest statuses, by index: live, opened, cpu.
        self.remote: dict[int, dict[str, Any]] = {}
        self._kinds = [kind for kind, _ in config.mix]
        self._weights = [share for _, share in config.mix]

    def now(self) -> float:
        return trio.current_time() - self.t0

    def new_id(self) -> str:
        """Unique across the load processes: the chat prefixes, slow consumers' IDs."""
        return f"{self.share[0]}.{next(self.ids)}"

    # -- bookkeeping ------------------------------------------------------------------------

    def finish(self, kind: str, tls: bool, outcome: str, detail: str) -> None:
        self.outcomes[(kind, outcome)] += 1
        if outcome == EXPECTED[kind] or outcome in NEUTRAL.get(kind, ()):
            return
        self.unexpected_count += 1
        if len(self.unexpected) < 500:
            self.unexpected.append(
                {
                    "t": round(self.now(), 1),
                    "kind": kind,
                    "tls": tls,
                    "outcome": outcome,
                    "detail": detail[:300],
                }
            )

    async def slot(self, index: int) -> None:
        config = self.config
        await trio.sleep_until(self.t0 + index * config.ramp / config.clients)
        while not self.stop.is_set():
            await self.limiter.wait(self.stop)
            if self.stop.is_set():
                return
            kind = self.rng.choices(self._kinds, self._weights)[0]
            tls = kind == "chat-tls" or (kind != "chat" and self.rng.random() < config.tls_share)
            await self.run_client(kind, tls, self.rng.uniform(*config.lifetime))

    async def run_client(self, kind: str, tls: bool, lifetime: float) -> None:
        self.opened[kind] += 1
        if tls:
            self.opened_tls[kind] += 1
        if self.now() >= self.config.warmup:
            self.opened_after_warmup += 1
        self.live[kind] += 1
        doing = ["connecting"]
        STAGE.set(doing)
        self.running[id(doing)] = (kind, doing)
        client = CLIENTS[kind]
        try:
            outcome, detail = await client(self, tls, lifetime)
        except Exception as exc:
            outcome, detail = "error", f"{describe(exc)} (while {doing[0]})"
        finally:
            self.live[kind] -= 1
            del self.running[id(doing)]
        self.finish(kind, tls, outcome, detail)

    def port(self, tls: bool) -> int:
        return self.ports["tls" if tls else "plain"]

    def uri(self, tls: bool, path: str) -> str:
        return f"{'wss' if tls else 'ws'}://{HOST}:{self.port(tls)}{path}"

    def ws_connect(self, tls: bool, path: str, **options: Any) -> connect:
        return connect(
            self.uri(tls, path),
            ssl=self.context if tls else None,
            proxy=None,
            open_timeout=30,
            max_size=2**20,
            **options,
        )

    async def pause(self, seconds: float) -> bool:
        """Sleep, or less once the load stops; True if it stopped."""
        with trio.move_on_after(max(0.0, seconds)):
            await self.stop.wait()
        return self.stop.is_set()

    async def wait_turn(self, deadline: float, interval: tuple[float, float]) -> bool:
        """Wait a random time in ``interval``: True when the client may go on; False, once it
        waited out the rest of its life (``deadline``) or the load stopped."""
        wait = self.rng.uniform(*interval)
        left = deadline - trio.current_time()
        if wait >= left:
            await self.pause(left)
            return False
        return not await self.pause(wait)

    def text(self, prefix: str, seq: int, room: int) -> str:
        rng = self.rng
        config = self.config
        if room < config.busy_rooms:
            share, paste = config.busy_paste_share, config.busy_paste_size
        else:
            share, paste = config.paste_share, config.paste_size
        size = paste if rng.random() < share else rng.randint(40, 200)
        start = rng.randrange(len(FILLER) - size)
        return f"{prefix}{seq} {FILLER[start : start + size]}"

    # -- clients: each returns (outcome, detail) -------------------------------------------

    async def chat(self, tls: bool, lifetime: float) -> tuple[str, str]:
        rng = self.rng
        room = rng.randrange(self.config.rooms)
        prefix = f"#{self.new_id()}:"
        pending: dict[int, float] = {}
        all_back = trio.Event()
        waiting = False
        compression = "deflate" if rng.random() < self.config.compression_share else None
        counts = self.counts

        where = f"room {room}{' (busy)' if room < self.config.busy_rooms else ''}"
        closing_at: float | None = None
        read_while_closing = 0

        async def receive(ws: ClientConnection) -> None:
            nonlocal read_while_closing
            async for msg in ws:
                counts["chat messages received"] += 1
                if closing_at is not None:
                    # Said if the close frame does not come: whether the client was still
                    # reading, and how late into the close.
                    read_while_closing += 1
                    late = trio.current_time() - closing_at
                    stage(
                        f"closing, {where}: {read_while_closing} messages read since, the "
                        f"last {late:.1f} s in"
                    )
                if isinstance(msg, str) and msg.startswith(prefix):
                    pending.pop(int(msg[len(prefix) : msg.index(" ")]), None)
                    if waiting and not pending:
                        all_back.set()

        async with self.ws_connect(tls, f"/chat/{room}", compression=compression) as ws:
            stage("chatting")
            deadline = trio.current_time() + lifetime
            seq = 0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive, ws)
                while await self.wait_turn(deadline, self.config.chat_interval):
                    seq += 1
                    text = self.text(prefix, seq, room)
                    pending[seq] = trio.current_time()
                    await ws.send(text)
                    counts["chat messages sent"] += 1
                waiting = True
                stage("waiting for its messages")
                if pending:
                    with trio.move_on_after(self.config.reply_timeout):
                        await all_back.wait()
                lost = len(pending)
                stage(f"closing, {where}: nothing read since")
                closing_at = trio.current_time()
                await ws.aclose()
        if lost:
            return "own messages not received", f"{lost} of {seq} in room {room}"
        return str(ws.close_code), ""

    async def wamp(self, tls: bool, lifetime: float) -> tuple[str, str]:
        rng = self.rng
        counts = self.counts
        compression = "deflate" if rng.random() < self.config.compression_share else None
        reply_timeout = self.config.reply_timeout
        async with self.ws_connect(
            tls, "/wamp", subprotocols=["wamp.2.json"], compression=compression
        ) as ws:
            if ws.subprotocol != "wamp.2.json":
                return "no subprotocol", str(ws.subprotocol)
            stage("joining")
            roles = {"roles": {"subscriber": {}, "publisher": {}}}
            await ws.send(json.dumps([1, "realm1", roles]))
            with trio.fail_after(reply_timeout):
                welcome = json.loads(await ws.recv())
            if welcome[0] != 2:
                return "not welcomed", str(welcome)[:200]
            topic = f"com.soak.{rng.randrange(self.config.topics)}"
            await ws.send(json.dumps([32, 1, {}, topic]))
            with trio.fail_after(reply_timeout):
                subscribed = json.loads(await ws.recv())
            if subscribed[:2] != [33, 1]:
                return "not subscribed", str(subscribed)[:200]
            subscription = subscribed[2]
            unacknowledged: set[int] = set()
            problems: list[str] = []
            goodbye = trio.Event()

            async def receive() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg[0] == 36 and msg[1] == subscription:
                        counts["WAMP events received"] += 1
                    elif msg[0] == 17:
                        unacknowledged.discard(msg[1])
                    elif msg[0] == 6:
                        goodbye.set()
                    else:
                        problems.append(str(msg)[:200])

            deadline = trio.current_time() + lifetime
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                stage("publishing")
                request = 1
                while await self.wait_turn(deadline, self.config.publish_interval):
                    request += 1
                    unacknowledged.add(request)
                    publish = [16, request, {"acknowledge": True}, topic, [f"soak {request}"]]
                    await ws.send(json.dumps(publish))
                    counts["WAMP publications"] += 1
                stage("waiting for acknowledgements")
                with trio.move_on_after(reply_timeout):
                    while unacknowledged:
                        await trio.sleep(0.1)
                stage("saying goodbye")
                await ws.send(json.dumps([6, {}, "wamp.close.normal"]))
                with trio.move_on_after(reply_timeout):
                    await goodbye.wait()
                stage("closing")
                await ws.aclose()
        if problems:
            return "unexpected WAMP message", problems[0]
        if unacknowledged:
            return "publications not acknowledged", f"{len(unacknowledged)}"
        if not goodbye.is_set():
            return "no GOODBYE", ""
        return str(ws.close_code), ""

    async def error(self, tls: bool, lifetime: float) -> tuple[str, str]:
        rng = self.rng
        compression = "deflate" if rng.random() < self.config.compression_share else None
        async with self.ws_connect(tls, "/echo", compression=compression) as ws:
            stage("echoing")
            echoes = rng.randint(1, 4)
            for index in range(echoes):
                if await self.pause(lifetime / (echoes + 1)):
                    break
                text = f"echo {index} {FILLER[: rng.randint(10, 500)]}"
                await ws.send(text)
                with trio.fail_after(self.config.reply_timeout):
                    reply = await ws.recv()
                if reply != text:
                    return "wrong echo", repr(reply)[:100]
                self.counts["echoes"] += 1
            stage("waiting for 1011")
            await ws.send("boom")
            try:
                with trio.fail_after(self.config.reply_timeout):
                    reply = await ws.recv()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                return str(code), exc.rcvd.reason if exc.rcvd is not None else "no close frame"
            return "answered boom", repr(reply)[:100]

    async def slow(self, tls: bool, lifetime: float) -> tuple[str, str]:
        config = self.config
        room = self.rng.randrange(config.busy_rooms)
        key, slow_id = str(room), self.new_id()
        port = self.port(tls)
        stream = await raw_connect(
            port,
            self.context if tls else None,
            rcvbuf=config.slow_rcvbuf,
            mss=config.slow_mss,
        )
        async with stream:
            stage("handshake")
            reader = await ws_handshake(stream, port, f"/chat/{room}?slow={slow_id}")
            give_up = trio.current_time() + config.slow_cap
            stage("not reading")
            most = 0  # the most the server had queued for it, in the polls it saw
            crossed_at: int | None = None  # the room's message count once over the limit
            while True:
                queued, closing = self.slow_queued.get(slow_id, (0, False))
                most = max(most, queued)
                if closing:
                    break  # the server started closing it: its close frame is on its way
                if crossed_at is None:
                    if queued > config.write_limit:
                        crossed_at = self.room_messages.get(key, 0)
                elif self.room_messages.get(key, 0) > crossed_at:
                    break  # the send at which the server finds it over the limit
                if self.stop.is_set():
                    return "open at the end", ""
                if trio.current_time() >= give_up:
                    return "room too quiet", f"room {room}: at most {most // KiB} KiB queued"
                await self.pause(0.25)
            stage("reading")
            # What the kernels buffered comes first (about 70 KiB; over TLS, up to 256 KiB more
            # that was encrypted already), then the close frame: the server dropped the rest.
            code, read, ended = await self.look(stream, reader)
            detail = f"room {room}: {most // KiB} KiB queued, then read {read // KiB} KiB ({ended})"
            if code == "EOF":
                return "EOF without a close frame", detail
            if code is None:
                return "not closed", detail
            return str(code), "" if code == 1008 else detail

    async def look(self, stream: trio.abc.Stream, reader: FrameReader) -> tuple[Any, int, str]:
        """Read until a close frame (its code), the end ("EOF"), ``slow_idle`` seconds without
        a byte or ``slow_look`` seconds in all (None); the bytes read, and how it ended."""
        read = 0
        with trio.move_on_after(self.config.slow_look):
            while True:
                while (frame := reader.next()) is not None:
                    opcode, payload = frame
                    if opcode == 0x8:
                        return close_code_of(payload), read, "close frame"
                with trio.move_on_after(self.config.slow_idle) as idle:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        return "EOF", read, "reset"
                if idle.cancelled_caught:
                    return None, read, f"nothing for {self.config.slow_idle:g} s"
                if not data:
                    return "EOF", read, "EOF"
                read += len(data)
                reader.feed(data)
        return None, read, f"still reading after {self.config.slow_look:g} s"

    async def malformed(self, tls: bool, lifetime: float) -> tuple[str, str]:
        port = self.port(tls)
        stream = await raw_connect(port, self.context if tls else None)
        timeout = self.config.reply_timeout
        async with stream:
            stage("handshake")
            reader = await ws_handshake(stream, port, "/echo")
            stage("echoing")
            text = f"hello {self.new_id()}".encode()
            await stream.send_all(client_frame(0x1, text))
            frame = await read_frame(stream, reader, timeout)
            if frame != (0x1, text):
                return "wrong echo", repr(frame)[:100]
            self.counts["echoes"] += 1
            await self.pause(self.rng.uniform(0, lifetime))
            variant = self.rng.choice(sorted(MALFORMED))
            self.malformed[variant] += 1
            stage(f"waiting for 1002 ({variant})")
            await stream.send_all(MALFORMED[variant]())
            frame = await read_frame(stream, reader, timeout)
            if frame is None:
                return "EOF without a close frame", variant
            opcode, payload = frame
            if opcode != 0x8:
                return "no close frame", f"{variant}: opcode {opcode}"
            code = close_code_of(payload)
            return str(code), "" if code == 1002 else variant

    # -- sampling ---------------------------------------------------------------------------

    async def sample(self, phase: str) -> dict[str, Any]:
        pid = self.pid
        sample: dict[str, Any] = {"t": round(self.now(), 2), "phase": phase}
        try:
            sample["rss"] = proc_rss(pid)
            sample["fds"] = proc_fds(pid)
            sample["server_cpu"] = proc_cpu(pid)
        except (OSError, RuntimeError) as exc:
            sample["error"] = f"/proc: {describe(exc)}"
            self.scrape_errors.append(sample["error"])
            return sample
        remote = list(self.remote.values())
        sample["load_cpu"] = own_cpu() + sum(status["cpu"] for status in remote)
        sample["load_lag"] = round(self.lag_window, 4)
        sample["load_gc"] = round(max(self.gc_window, self.gc_pauses.take()), 4)
        self.lag_window = self.gc_window = 0.0
        live = Counter(self.live)
        for status in remote:
            live.update(status["live"])
        sample["clients"] = sum(live.values())
        sample["opened"] = sum(self.opened.values()) + sum(status["opened"] for status in remote)
        sample["live"] = dict(live)
        try:
            plain = parse_metrics(await http_get(self.ports["plain"], "/metrics"))
            secure = parse_metrics(await http_get(self.ports["plain"], "/metrics/tls"))
        except (OSError, RuntimeError, ValueError, trio.TooSlowError) as exc:
            sample["error"] = f"scrape: {describe(exc)}"
            self.scrape_errors.append(sample["error"])
            return sample
        sample.update(server_view(plain, secure))
        try:
            state = json.loads(await http_get(self.ports["plain"], "/debug/state"))
        except (OSError, RuntimeError, ValueError, trio.TooSlowError) as exc:
            sample["error"] = f"/debug/state: {describe(exc)}"
            self.scrape_errors.append(sample["error"])
            return sample
        # Counted in the same instant by the server: the descriptors it holds beyond one per
        # connection (the listeners, epoll, ...), which no churn may change.
        sample["fds_beyond"] = state["fds"] - state["connections"]
        return sample

    async def room_poller(self) -> None:
        """Keep ``room_messages`` and ``slow_queued`` up to date (twice a second), for the slow
        consumers."""
        while True:
            try:
                answer = json.loads(await http_get(self.ports["plain"], "/debug/rooms"))
                self.room_messages = answer["messages"]
                self.slow_queued = {
                    slow_id: (queued, closing)
                    for slow_id, (queued, closing) in answer["queued"].items()
                }
            except (OSError, RuntimeError, ValueError, trio.TooSlowError) as exc:
                self.scrape_errors.append(f"/debug/rooms: {describe(exc)}")
            await trio.sleep(0.5)

    async def lag_probe(self) -> None:
        """How late this process wakes from a 100 ms sleep: over a second or so, the load
        generator cannot keep up (its clients' timeouts would fail for its own sake)."""
        while True:
            deadline = trio.current_time() + 0.1
            await trio.sleep_until(deadline)
            self.lag_window = max(self.lag_window, trio.current_time() - deadline)

    async def sampler(self, phase: str, until: trio.Event) -> None:
        interval = self.config.sample_interval
        next_at = trio.current_time()
        while not until.is_set():
            now_phase = "leaving" if phase == "load" and self.stop.is_set() else phase
            self.samples.append(await self.sample(now_phase))
            next_at += interval
            with trio.move_on_at(next_at):
                await until.wait()

    # -- the run ----------------------------------------------------------------------------

    async def run(self, others: Callable[[Load], Awaitable[None]] | None = None) -> dict[str, Any]:
        """The whole soak, from the first process: idle samples, the load (this process's
        clients, and ``others``, which runs the other load processes until they are done),
        then the samples until the server is idle again."""
        config = self.config
        self.t0 = trio.current_time()
        # Idle: long enough for the scrapes' own cancelled timers (HTTP request timeout,
        # 10 s) to reach the steady state the final samples will have.
        idle_done = trio.Event()
        idle_for = max(12.0, 3 * config.sample_interval)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sampler, "idle", idle_done)
            await trio.sleep(idle_for)
            idle_done.set()
        for sample in self.samples:
            sample["t"] = round(sample["t"] - idle_for, 2)
        idle = next((s for s in reversed(self.samples) if "error" not in s), None)
        if idle is None:
            raise RuntimeError(f"no idle sample: {self.scrape_errors[:3]}")
        objects_idle = json.loads(await http_get(self.ports["plain"], "/debug/objects", 60))

        self.t0 = trio.current_time()
        print(
            f"load: {config.clients} clients, {config.duration / 60:g} min "
            f"(warm-up {config.warmup:g} s, ramp {config.ramp:g} s), {config.rooms} rooms",
            file=sys.stderr,
            flush=True,
        )
        load_done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sampler, "load", load_done)
            nursery.start_soon(self.progress, load_done)
            async with trio.open_nursery() as drivers:
                drivers.start_soon(self.drive_clients)
                if others is not None:
                    drivers.start_soon(others, self)
            load_done.set()
        left_at = self.now()

        # Every client has left: wait for the server to be idle again.
        settled: dict[str, Any] | None = None
        deadline = trio.current_time() + config.settle_timeout
        while trio.current_time() < deadline:
            sample = await self.sample("after")
            self.samples.append(sample)
            if "error" not in sample and self.is_idle(sample, idle):
                settled = sample
                break
            await trio.sleep(config.sample_interval)
        final = settled or self.samples[-1]
        # What lingers until a deadline passes (trio keeps a cancel scope with a deadline in
        # its heap until then, however early the scope exited) is not a leak: ask again
        # while the count still comes down, for half a minute at most.
        objects_final = json.loads(await http_get(self.ports["plain"], "/debug/objects", 60))
        asked_until = trio.current_time() + 30
        while (
            objects_final["total"] - objects_idle["total"] > config.object_tolerance
            and trio.current_time() < asked_until
        ):
            await trio.sleep(5)
            objects_final = json.loads(await http_get(self.ports["plain"], "/debug/objects", 60))
        trimmed = json.loads(await http_get(self.ports["plain"], "/debug/trim", 60))
        return {
            "idle": idle,
            "final": final,
            "settled": settled is not None,
            "left_at": left_at,
            "objects": {"idle": objects_idle, "final": objects_final},
            "trim": trimmed,
        }

    async def drive_clients(self) -> None:
        """This process's client slots until the load stops, then until they have left (or
        ``leave_timeout`` passed: the rest are cancelled and listed as stragglers)."""
        config = self.config
        index, count = self.share
        with self.gc_pauses:
            async with trio.open_nursery() as helpers:
                helpers.start_soon(self.lag_probe)
                helpers.start_soon(self.room_poller)
                async with trio.open_nursery() as clients:
                    for slot in range(index, config.clients, count):
                        clients.start_soon(self.slot, slot)
                    await trio.sleep_until(self.t0 + config.duration)
                    self.stop.set()
                    clients.start_soon(self.watchdog, clients.cancel_scope)
                helpers.cancel_scope.cancel()

    # -- the other load processes -----------------------------------------------------------

    async def run_share(self, start: float, report: Callable[[dict[str, Any]], None]) -> None:
        """The load of one of the other processes: its clients, from ``start`` (the first
        process's ``time.monotonic()`` at the load's start, so that both count time alike),
        with a status for ``report`` every second and the result (:meth:`share_result`) last."""
        self.t0 = trio.current_time() + (start - time.monotonic())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.reporter, report)
            await self.drive_clients()
            nursery.cancel_scope.cancel()
        report({"result": self.share_result()})

    def status(self) -> dict[str, Any]:
        status = {
            "live": dict(self.live),
            "opened": sum(self.opened.values()),
            "cpu": own_cpu(),
            "lag": self.lag_window,
            "gc": self.gc_pauses.take(),
            "unexpected_count": self.unexpected_count,
        }
        self.lag_window = 0.0
        return status

    async def reporter(self, report: Callable[[dict[str, Any]], None]) -> None:
        while True:
            report({"status": self.status()})
            await trio.sleep(1.0)

    def share_result(self) -> dict[str, Any]:
        return {
            **self.status(),
            "opened_by_kind": dict(self.opened),
            "opened_tls": dict(self.opened_tls),
            "opened_after_warmup": self.opened_after_warmup,
            "outcomes": [[kind, outcome, n] for (kind, outcome), n in self.outcomes.items()],
            "unexpected": self.unexpected,
            "counts": dict(self.counts),
            "malformed": dict(self.malformed),
            "stragglers": self.stragglers,
            "scrape_errors": self.scrape_errors,
        }

    def note_remote(self, index: int, status: dict[str, Any]) -> None:
        """Process ``index``'s latest status; its lateness counts as this process's own."""
        self.remote[index] = status
        self.lag_window = max(self.lag_window, status["lag"])
        self.gc_window = max(self.gc_window, status["gc"])

    def merge_remote(self, index: int, result: dict[str, Any]) -> None:
        """Fold process ``index``'s result into this process's counts, as if its clients
        had run here."""
        self.note_remote(index, result)
        self.opened.update(result["opened_by_kind"])
        self.opened_tls.update(result["opened_tls"])
        self.opened_after_warmup += result["opened_after_warmup"]
        for kind, outcome, n in result["outcomes"]:
            self.outcomes[(kind, outcome)] += n
        room = max(0, 500 - len(self.unexpected))
        self.unexpected.extend(result["unexpected"][:room])
        self.unexpected_count += result["unexpected_count"]
        self.counts.update(result["counts"])
        self.malformed.update(result["malformed"])
        for where, n in result["stragglers"].items():
            self.stragglers[f"load process {index}: {where}"] = n
        self.scrape_errors.extend(result["scrape_errors"])
        # Its clients and their endings are counted here from now on, not in its status.
        self.remote[index] = {**result, "live": {}, "opened": 0, "unexpected_count": 0}

    def is_idle(self, sample: dict[str, Any], idle: dict[str, Any]) -> bool:
        config = self.config
        return (
            sample["ws_plain"] + sample["ws_tls"] == 0
            and sample["raw"] == 0
            and sample["http"] <= 1  # the scrape's own
            and sample["fds"] <= idle["fds"] + config.fd_tolerance
            and sample["tasks"] <= idle["tasks"] + config.task_tolerance
            and sample["timers"] <= idle["timers"] + config.timer_tolerance
        )

    async def watchdog(self, scope: trio.CancelScope) -> None:
        deadline = trio.current_time() + self.config.leave_timeout
        while sum(self.live.values()) and trio.current_time() < deadline:
            await trio.sleep(0.2)
        if sum(self.live.values()):
            where = Counter(f"{kind} {doing[0]}" for kind, doing in self.running.values())
            self.stragglers = dict(where)
            scope.cancel()

    def unexpected_so_far(self) -> int:
        """Unexpected endings in every load process (a finished one's are folded in)."""
        remote = sum(status.get("unexpected_count", 0) for status in self.remote.values())
        return self.unexpected_count + remote

    async def progress(self, done: trio.Event) -> None:
        every = 10.0 if self.config.minutes <= 5 else 60.0
        while not done.is_set():
            with trio.move_on_after(every):
                await done.wait()
            good = [s for s in self.samples if "error" not in s and s["phase"] == "load"]
            if not good:
                continue
            s = good[-1]
            print(
                f"  {s['t']:6.0f} s  clients {s['clients']:5d}  ws {s['ws_plain']}+"
                f"{s['ws_tls']}  RSS {s['rss'] / MiB:6.1f} MiB  fds {s['fds']:5d}  "
                f"tasks {s['tasks']:5d}  timers {s['timers']:5d}  opened {s['opened']:6d}  "
                f"unexpected {self.unexpected_so_far()}",
                file=sys.stderr,
                flush=True,
            )


ClientFunction = Callable[[Load, bool, float], Awaitable[tuple[str, str]]]
CLIENTS: dict[str, ClientFunction] = {
    "chat": Load.chat,
    "chat-tls": Load.chat,
    "wamp": Load.wamp,
    "slow": Load.slow,
    "error": Load.error,
    "malformed": Load.malformed,
}
