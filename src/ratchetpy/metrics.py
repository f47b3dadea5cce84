"""Prometheus metrics: every worker's :meth:`~ratchetpy.IoServer.metrics_snapshot`, rendered in
Prometheus' text format by ``prometheus-client`` (an optional extra:
``pip install 'ratchetpy[metrics]'``).

``app.route("/metrics", app.metrics)`` (or ``ratchetpy serve ... --metrics /metrics``) serves
it. With several workers one scrape must see them all, whichever worker the kernel hands the
scrape to: each worker puts its snapshot into the announcement it makes to the broker's
registry every second, and the worker that answers reads the registry and reports every
worker serving the same host and port (``worker`` label: its number, or its PID when it was
not started by a supervisor), its own snapshot taken at that moment. The others' are at most
a second old. A worker that died is gone from the scrape within three seconds; its counters
start again from 0 when it is restarted, which Prometheus' ``rate()`` handles as a reset.

No metric is counted on the hot path for this module: the layers keep plain integer totals
they keep anyway (:class:`~ratchetpy.components.connection.Counters`), read only when
scraped. Label values come from small fixed sets (kinds, statuses, close codes bucketed,
error codes): never a path, an address or a user.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import BrokerError
from .io.server import IoServer
from .io.telemetry import LAG_BUCKETS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["CONTENT_TYPE", "collect_snapshots", "render", "require_prometheus_client"]

logger = logging.getLogger("ratchetpy.metrics")

#: The media type of Prometheus' text format 0.0.4, which :func:`render` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def require_prometheus_client() -> None:
    """Raise ``ImportError`` saying how to install it when ``prometheus-client`` is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "ratchetpy's metrics need prometheus-client: pip install 'ratchetpy[metrics]'"
        ) from exc


async def collect_snapshots(server: IoServer) -> list[dict[str, Any]]:
    """The snapshots of every worker serving ``server``'s host and port, this one's fresh.

    A checkpoint with other workers (it reads the broker's registry). When the broker cannot
    tell, only this worker's is returned (and logged at DEBUG): a scrape during an outage still
    says that the link is down."""
    own = server.metrics_snapshot()
    broker = server.broker
    if not broker.distributed:
        return [own]
    try:
        announced = await broker.workers()
    except BrokerError as exc:
        logger.debug("metrics of this worker only: the registry is unreachable (%s)", exc)
        return [own]
    here = server.info()
    snapshots = [own]
    for worker_id, raw in announced.items():
        if worker_id == broker.worker_id:
            continue
        try:
            info = json.loads(raw)
        except ValueError:
            continue  # not ours to read
        snapshot = info.get("metrics") if isinstance(info, dict) else None
        same_place = info.get("host") == here["host"] and info.get("address") == here["address"]
        if same_place and isinstance(snapshot, dict):
            snapshots.append(snapshot)
    return snapshots


def render(snapshots: Iterable[Mapping[str, Any]]) -> bytes:
    """Prometheus' text format for ``snapshots`` (each a worker's)."""
    require_prometheus_client()
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshots(list(snapshots)))
    return generate_latest(registry)


class _Snapshots:
    """A collector of fixed snapshots (prometheus-client asks it once per render)."""

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snapshots = self.snapshots
        # The broker's metrics mean nothing for a single process (nothing to link to).
        linked = [snap for snap in snapshots if snap["broker"]["distributed"]]

        def per_worker(family: Any, value_of: _Value, among: list[Snapshot] = snapshots) -> Metric:
            for snap in among:
                value = value_of(snap)
                if value is not None:
                    family.add_metric([snap["worker"]], value)
            return family  # type: ignore[no-any-return]

        def gauge(
            name: str, doc: str, value_of: _Value, among: list[Snapshot] = snapshots
        ) -> Metric:
            return per_worker(GaugeMetricFamily(name, doc, labels=["worker"]), value_of, among)

        def counter(
            name: str, doc: str, value_of: _Value, among: list[Snapshot] = snapshots
        ) -> Metric:
            return per_worker(CounterMetricFamily(name, doc, labels=["worker"]), value_of, among)

        def by_label(
            family: Any, counts_of: Callable[[Snapshot], Mapping[Any, int] | None]
        ) -> Metric:
            for snap in snapshots:
                for label, count in sorted((counts_of(snap) or {}).items()):
                    family.add_metric([snap["worker"], *_labels(label)], count)
            return family  # type: ignore[no-any-return]

        yield GaugeMetricFamily(
            "ratchetpy_scrape_workers", "Workers whose metrics this scrape reports.", len(snapshots)
        )

        connections = GaugeMetricFamily(
            "ratchetpy_connections",
            "Open connections by kind: websocket, http (read as HTTP, not upgraded), raw "
            "(not read as HTTP: a raw TCP server's, or a TLS handshake under way).",
            labels=["worker", "kind"],
        )
        for snap in snapshots:
            for kind, count in snap["connections"].items():
                connections.add_metric([snap["worker"], kind], count)
        yield connections

        yield counter(
            "ratchetpy_connections_accepted_total",
            "Connections accepted.",
            lambda s: s["connections_total"],
        )
        yield counter(
            "ratchetpy_received_bytes_total", "Bytes read from clients.", _get("bytes_in")
        )
        yield counter("ratchetpy_sent_bytes_total", "Bytes written to clients.", _get("bytes_out"))
        yield counter(
            "ratchetpy_websocket_messages_received_total",
            "WebSocket messages received.",
            _get("messages_in"),
        )
        yield counter(
            "ratchetpy_websocket_messages_sent_total",
            "WebSocket messages sent (a broadcast counts one per client).",
            _get("messages_out"),
        )

        def handshake_labels(snap: Mapping[str, Any]) -> dict[tuple[str, str], int]:
            return {
                ("accepted" if status == "101" else "rejected", status): count
                for status, count in snap["handshakes"].items()
            }

        yield by_label(
            CounterMetricFamily(
                "ratchetpy_websocket_handshakes_total",
                "WebSocket upgrade requests by outcome and HTTP status (101 accepted; 400 "
                "malformed or no subprotocol, 401 unauthenticated, 403 origin or blocked "
                "address, 404 no route, 421 host, 426 version, 429 limits).",
                labels=["worker", "outcome", "status"],
            ),
            handshake_labels,
        )
        yield by_label(
            CounterMetricFamily(
                "ratchetpy_websocket_close_frames_sent_total",
                "Close frames sent, by code (1000-1015 as such, 3xxx and 4xxx by range).",
                labels=["worker", "code"],
            ),
            _get("close_sent"),
        )
        yield by_label(
            CounterMetricFamily(
                "ratchetpy_websocket_close_frames_received_total",
                "Close frames received, by code (1005: none given).",
                labels=["worker", "code"],
            ),
            _get("close_received"),
        )
        yield counter(
            "ratchetpy_slow_consumer_closes_total",
            "Connections closed (1008) or dropped for not reading what they were sent.",
            _get("slow_consumer_closes"),
        )
        yield counter(
            "ratchetpy_handler_errors_total",
            "Exceptions raised by handlers (each given to on_error).",
            _get("handler_errors"),
        )

        wamp_gauges = (
            ("wamp_sessions", "WAMP sessions joined."),
            ("wamp_topics", "WAMP topics with subscribers."),
            ("wamp_subscriptions", "WAMP subscriptions (a session's to a topic)."),
            ("wamp_registrations", "WAMP procedures registered."),
        )
        for key, doc in wamp_gauges:
            yield gauge(f"ratchetpy_{key}", doc, _source(key))
        yield counter(
            "ratchetpy_wamp_publications_total",
            "WAMP PUBLISH messages received.",
            _source("wamp_publications"),
        )
        yield counter(
            "ratchetpy_wamp_calls_total", "WAMP CALL messages received.", _source("wamp_calls")
        )
        yield by_label(
            CounterMetricFamily(
                "ratchetpy_publish_requests_total",
                "Requests to publish endpoints by outcome: published, or the refusal's error "
                "code (bad_signature, too_old, topic_not_allowed, too_large, ...).",
                labels=["worker", "outcome"],
            ),
            lambda s: s["sources"].get("publish_requests"),
        )

        if linked:
            yield gauge(
                "ratchetpy_broker_up",
                "1 while the link to the other workers passes messages on, else 0.",
                lambda s: int(s["broker"]["up"]),
                linked,
            )
            yield counter(
                "ratchetpy_broker_reconnects_total",
                "Connections to the broker lost (and reconnected).",
                lambda s: s["broker"]["reconnects"],
                linked,
            )
            yield counter(
                "ratchetpy_broker_unsent_publications_total",
                "Publications for other workers that could not be passed on.",
                lambda s: s["broker"]["unsent"],
                linked,
            )
            yield counter(
                "ratchetpy_broker_missed_total",
                "Times messages from other workers may have been missed (a gap, a resubscription).",
                lambda s: s["broker"]["missed"],
                linked,
            )

        lag = HistogramMetricFamily(
            "ratchetpy_scheduler_lag_seconds",
            "How late a 100 ms timer fires in the worker's trio loop: over a few ms, the worker "
            "is busy; over 100 ms, overloaded.",
            labels=["worker"],
        )
        bounds = [repr(bound) for bound in LAG_BUCKETS] + ["+Inf"]
        for snap in snapshots:
            measured = snap.get("scheduler_lag")
            if measured:
                lag.add_metric(
                    [snap["worker"]],
                    list(zip(bounds, measured["buckets"], strict=True)),
                    measured["sum"],
                )
        yield lag

        yield counter(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
            lambda s: s["process"]["cpu_seconds"],
        )
        yield gauge(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes.",
            lambda s: s["process"]["resident_memory_bytes"],
        )
        yield gauge(
            "process_open_fds",
            "Open file descriptors.",
            lambda s: s["process"].get("open_fds"),
        )
        yield gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            lambda s: s["process"]["start_time_seconds"],
        )
        yield gauge(
            "ratchetpy_timers",
            "Timers the server holds (connections' timeouts and keepalives; a cancelled one "
            "until its time comes).",
            _get("timers"),
        )
        yield gauge(
            "ratchetpy_tasks",
            "trio tasks alive (about one per connection, plus the server's own).",
            lambda s: s["process"].get("tasks"),
        )


Snapshot = Mapping[str, Any]
_Value = Callable[[Snapshot], Any]


def _get(key: str) -> _Value:
    return lambda snap: snap.get(key)


def _source(key: str) -> _Value:
    return lambda snap: snap["sources"].get(key)


def _labels(label: str | tuple[str, ...]) -> list[str]:
    return [label] if isinstance(label, str) else list(label)
