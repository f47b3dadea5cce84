"""The soak's settings: the client mix, how each kind must end, and :class:`Config`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
KiB, MiB = 1024, 1024 * 1024

#: Client kinds and their shares of the clients started.
MIX = (
    ("chat", 0.60),
    ("chat-tls", 0.15),
    ("wamp", 0.10),
    ("slow", 0.05),
    ("error", 0.05),
    ("malformed", 0.05),
)
#: How each kind must end (the close code it gets or gives).
EXPECTED = {
    "chat": "1000",
    "chat-tls": "1000",
    "wamp": "1000",
    "slow": "1008",
    "error": "1011",
    "malformed": "1002",
}
#: Endings that are neither right nor wrong: a slow consumer still waiting when the load
#: stops, or whose room was too quiet to fill its queue before its time was up.
NEUTRAL = {"slow": ("open at the end", "room too quiet")}


# -- configuration ---------------------------------------------------------------------------


@dataclass
class Config:
    minutes: float
    clients: int
    seed: int
    duration: float  # seconds of load
    warmup: float
    ramp: float
    sample_interval: float
    lifetime: tuple[float, float]
    rooms: int
    room_size: int
    max_rate: float
    tls_share: float
    write_limit: int
    close_timeout: float
    chat_interval: tuple[float, float] = (4.0, 12.0)
    busy_rooms: int = 1  # rooms 0 .. busy_rooms - 1: where the slow consumers go
    paste_share: float = 0.05  # of the messages in the other rooms
    paste_size: int = 4 * KiB
    busy_paste_share: float = 0.5  # of the messages in a busy room
    busy_paste_size: int = 64 * KiB
    compression_share: float = 0.25
    topics: int = 1
    publish_interval: tuple[float, float] = (5.0, 15.0)
    slow_rcvbuf: int = 4096
    slow_mss: int = 1448
    # A slow consumer reads nothing until the server says (/debug/rooms) that it queued more
    # than the write limit for it and its room was sent one more message (or that it is
    # closing it), then reads: the close frame (1008) must come. It gives up after slow_cap.
    slow_cap: float = 60.0
    # Seconds it reads for at most: with its small buffers, 8 KiB a round trip, and a load
    # generator that is busy (hundreds of ms late at times), 330 KiB over TLS can take 10 s;
    # below the server's close timeout (30 s), after which it would rightly hang up.
    slow_look: float = 25.0
    # and stops reading once nothing came for that long: well above the worst scheduling
    # delays of either process, which would otherwise end a look before the close frame came
    slow_idle: float = 4.0
    reply_timeout: float = 15.0  # own chat messages, echoes, acknowledgements
    leave_timeout: float = 45.0  # for every client to leave once the load stops
    settle_timeout: float = 45.0  # for the server to be idle again after that
    max_rss_per_connection: float = 128.0
    fd_tolerance: int = 2
    fd_drift_limit: int = 5
    task_tolerance: int = 2
    timer_tolerance: int = 4
    object_tolerance: int = 500
    mix: tuple[tuple[str, float], ...] = MIX
    max_load_lag: float = 1.0
    malloc: str = "fixed"
    # Processes the clients are spread over (soak_share.py): one Python process for all
    # 2,000 runs out of CPU at times, and its lateness then fails its own clients.
    load_processes: int = 1

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Config:
        """The inverse of ``dataclasses.asdict`` after a JSON round trip (lists to tuples)."""
        fields = dict(fields)
        for name in ("lifetime", "chat_interval", "publish_interval"):
            fields[name] = tuple(fields[name])
        fields["mix"] = tuple((kind, share) for kind, share in fields["mix"])
        return cls(**fields)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Config:
        duration = args.minutes * 60
        sample_interval = args.sample_interval or (2.0 if args.minutes < 10 else 5.0)
        # 10-60 s for runs of 10 minutes and more; shorter runs scale it down to 5-30 s so
        # that the connections opened after warm-up still come by thousands.
        scale = min(1.0, max(0.5, args.minutes / 10))
        lifetime = (10.0 * scale, 60.0 * scale)
        if args.lifetime:
            low, _, high = args.lifetime.partition(",")
            lifetime = (float(low), float(high))
        ramp = max(min(0.125 * duration, 120.0), args.clients / args.max_rate)
        # A quarter of the run, and at least until the population is the steady one: every
        # client of the ramp has lived its life and been replaced.
        warmup = max(0.25 * duration, 30.0, ramp + lifetime[1])
        if warmup > duration / 2:  # a debugging run: the fit is not meaningful
            warmup = duration / 2
        room_clients = args.clients * (0.60 + 0.15 + 0.05)
        rooms = max(1, round(room_clients / args.room_size))
        topics = max(1, round(args.clients * 0.10 / args.topic_size))
        config = cls(
            minutes=args.minutes,
            clients=args.clients,
            seed=args.seed,
            duration=duration,
            warmup=warmup,
            ramp=ramp,
            sample_interval=sample_interval,
            lifetime=lifetime,
            rooms=rooms,
            busy_rooms=max(1, round(rooms * 0.1)),
            room_size=args.room_size,
            topics=topics,
            max_rate=args.max_rate,
            tls_share=args.tls_share,
            write_limit=args.write_limit,
            close_timeout=30.0,
        )
        if args.mix:
            mix = []
            for part in args.mix.split(","):
                kind, _, share = part.partition("=")
                if kind not in EXPECTED:
                    raise SystemExit(f"--mix: unknown kind {kind!r} (known: {', '.join(EXPECTED)})")
                mix.append((kind, float(share)))
            config.mix = tuple(mix)
        config.slow_cap = lifetime[1]
        if args.max_rss_per_connection is None:
            # Short runs end before the allocators have settled (see bench/README.md).
            args.max_rss_per_connection = 128.0 if args.minutes >= 10 else 4096.0
        config.max_rss_per_connection = args.max_rss_per_connection
        config.malloc = args.malloc
        config.load_processes = args.load_processes
        return config
