"""app.metrics over real sockets: the `websockets` client and the standard library's
`http.client` make traffic of every kind, and prometheus-client's own parser reads the scrape
back; with two worker processes through a real Redis, too."""

from __future__ import annotations

import http.client
import json
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

from conftest import ServeApp, StartWorkers
from ratchetpy import App, Connection, MessageComponent
from ratchetpy.cli import _parser, build_app, main
from ratchetpy.io.telemetry import LAG_BUCKETS
from ratchetpy.wamp import PublishEndpoint, WampServer
from ratchetpy.wamp.messages import HELLO, PUBLISH, SUBSCRIBE

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Echo(MessageComponent):
    def on_message(self, conn: Connection, msg: Any) -> None:
        if msg == "boom":
            raise RuntimeError("a handler that fails")
        conn.send(msg)


def metrics_app() -> App:
    app = App("localhost", 0, "127.0.0.1")
    wamp = WampServer()
    app.route("/echo", Echo())
    app.route("/wamp", wamp)
    app.route("/publish", PublishEndpoint(wamp, secret=None, insecure_no_auth=True))
    app.route("/metrics", app.metrics)
    return app


def http_request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, str, bytes]:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        client.request(method, path, body=body, headers=headers)
        response = client.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        client.close()


async def scrape(port: int) -> Samples:
    status, content_type, body = await trio.to_thread.run_sync(
        http_request, port, "GET", "/metrics"
    )
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample ``name`` with these labels, whatever the worker's label."""
    found = [
        v
        for (n, ls), v in samples.items()
        if n == name and set(labels.items()) <= ls and ("le", "") not in ls
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def test_one_scrape_counts_websockets_wamp_publishes_and_refusals(
    serve_app: ServeApp,
) -> None:
    app = metrics_app()
    port = await serve_app(app)
    async with connect(f"ws://127.0.0.1:{port}/echo") as echo:
        for n in range(5):
            await echo.send(f"hello {n}")
            assert await echo.recv() == f"hello {n}"
        await echo.aclose(4001, "the app's own code")
    async with connect(f"ws://127.0.0.1:{port}/echo") as failing:
        await failing.send("boom")
        with pytest.raises(ConnectionClosed):
            await failing.recv()
    assert failing.close_code == 1011
    with pytest.raises(InvalidStatus):  # another site's page: 403
        async with connect(f"ws://127.0.0.1:{port}/echo", origin="https://evil.example"):
            pass  # pragma: no cover
    with pytest.raises(InvalidStatus):  # no such route: 404
        async with connect(f"ws://127.0.0.1:{port}/nowhere"):
            pass  # pragma: no cover

    async with (
        connect(f"ws://127.0.0.1:{port}/echo") as still_open,
        connect(f"ws://127.0.0.1:{port}/wamp", subprotocols=["wamp.2.json"]) as session,
    ):
        await still_open.send("x")
        await still_open.recv()
        await session.send(json.dumps([HELLO, "realm1", {"roles": {"subscriber": {}}}]))
        await session.recv()  # WELCOME
        await session.send(json.dumps([SUBSCRIBE, 1, {}, "com.example.news"]))
        await session.recv()  # SUBSCRIBED
        await session.send(json.dumps([PUBLISH, 2, {}, "com.example.other", ["x"]]))
        published = json.dumps({"topic": "com.example.news", "args": ["hi"]}).encode()
        answers = [
            await trio.to_thread.run_sync(http_request, port, "POST", "/publish", published)
            for _ in range(2)
        ]
        assert [status for status, _, _ in answers] == [200, 200]
        refused = await trio.to_thread.run_sync(http_request, port, "POST", "/publish", b"{nope")
        assert refused[0] == 400
        await session.recv()  # the first EVENT...
        await session.recv()  # ...and the second: both publications were delivered

        samples = await scrape(port)
        assert value(samples, "ratchetpy_connections", kind="websocket") == 2
        assert value(samples, "ratchetpy_connections", kind="http") == 1  # this scrape's
        assert value(samples, "ratchetpy_connections", kind="raw") == 0
        assert value(samples, "ratchetpy_websocket_messages_received_total") >= 5 + 1 + 1 + 3
        assert value(samples, "ratchetpy_websocket_messages_sent_total") >= 5 + 1 + 4
        assert value(samples, "ratchetpy_websocket_handshakes_total", status="101") == 4
        assert value(samples, "ratchetpy_websocket_handshakes_total", outcome="rejected",
                     status="403") == 1  # fmt: skip
        assert value(samples, "ratchetpy_websocket_handshakes_total", status="404") == 1
        assert value(samples, "ratchetpy_websocket_close_frames_received_total", code="4xxx") == 1
        assert value(samples, "ratchetpy_websocket_close_frames_sent_total", code="1011") == 1
        assert value(samples, "ratchetpy_handler_errors_total") == 1
        assert value(samples, "ratchetpy_wamp_sessions") == 1
        assert value(samples, "ratchetpy_wamp_subscriptions") == 1
        assert value(samples, "ratchetpy_wamp_topics") == 1
        assert value(samples, "ratchetpy_wamp_publications_total") == 1
        assert value(samples, "ratchetpy_publish_requests_total", outcome="published") == 2
        assert value(samples, "ratchetpy_publish_requests_total", outcome="invalid_json") == 1
        assert value(samples, "ratchetpy_received_bytes_total") > 0
        assert value(samples, "ratchetpy_sent_bytes_total") > 0
        assert value(samples, "process_resident_memory_bytes") > 2**20
        assert value(samples, "process_open_fds") >= 3
        assert value(samples, "ratchetpy_tasks") >= 3  # one per open connection at least
        assert value(samples, "ratchetpy_timers") >= 1  # the scrape's request timeout at least
        assert value(samples, "ratchetpy_scrape_workers") == 1
        assert not any(name.startswith("ratchetpy_broker_") for name, _ in samples)  # alone
        # Bounded labels: no path, no address, no user anywhere.
        label_values = {v for _, labels in samples for _, v in labels}
        assert not any("/" in v or "127.0.0.1" in v for v in label_values)


async def test_the_scheduler_lag_histogram_sees_a_blocked_loop(serve_app: ServeApp) -> None:
    app = metrics_app()
    port = await serve_app(app)
    lag = app.server.scheduler_lag
    with trio.fail_after(5):
        while lag.observed == 0:  # the probe's first wake-up, 100 ms after serving
            await trio.sleep(0.02)
    time.sleep(0.3)  # a handler that blocks the thread: the probe wakes up that much late
    with trio.fail_after(5):
        while sum(lag.counts[LAG_BUCKETS.index(0.1) + 1 :]) == 0:
            await trio.sleep(0.02)  # over 100 ms late: what only the block explains
    samples = await scrape(port)
    count = value(samples, "ratchetpy_scheduler_lag_seconds_count")
    assert count >= 2 and value(samples, "ratchetpy_scheduler_lag_seconds_sum") >= 0.2
    under_100ms = [v for (n, ls), v in samples.items() if ("le", "0.1") in ls]
    assert under_100ms and under_100ms[0] < count  # the late one is above that bound


def test_routing_metrics_without_prometheus_client_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    app = App("localhost", 0, "127.0.0.1")
    with pytest.raises(ImportError, match=r"pip install 'ratchetpy\[metrics\]'"):
        app.route("/metrics", app.metrics)
    assert not app.server.collect_metrics
    assert main(["serve", "support.cluster_app:Room", "--metrics", "/metrics"]) == 2
    assert "pip install 'ratchetpy[metrics]'" in capsys.readouterr().err


def test_the_cli_flag_routes_the_metrics_of_a_component_or_an_app() -> None:
    for target, paths in [
        ("support.cluster_app:Room", ["/{path:path}", "/metrics"]),
        ("support.cluster_app:make_app", ["/", "/stats", "/metrics"]),
    ]:
        app = build_app(_parser().parse_args(["serve", target, "--metrics", "/metrics"]))
        assert app.server.collect_metrics
        assert sorted(route.path for route in app.router.routes) == sorted(paths)
    assert main(["serve", "support.cluster_app:Room", "--metrics", "metrics"]) == 2


async def test_one_scrape_of_either_worker_reports_both(supervisor: StartWorkers) -> None:
    server = supervisor("cluster_app:make_app", "--metrics", "/metrics")
    pids = server.worker_pids()
    async with AsyncExitStack() as clients:
        for _ in range(10):
            ws = await clients.enter_async_context(connect(f"ws://127.0.0.1:{server.port}/"))
            await ws.recv()  # {"pid": ...}: a member of the room
        seen: set[frozenset[str]] = set()
        with trio.fail_after(15):
            while True:  # each worker announces its snapshot once a second
                samples = await scrape(server.port)
                workers = {
                    dict(labels)["worker"]: v
                    for (name, labels), v in samples.items()
                    if name == "ratchetpy_connections" and ("kind", "websocket") in labels
                }
                seen.add(frozenset(workers))
                if set(workers) == {"1", "2"} and sum(workers.values()) == 10:
                    break
                await trio.sleep(0.1)
        assert frozenset({"1", "2"}) in seen
        assert value(samples, "ratchetpy_scrape_workers") == 2
        for worker in ("1", "2"):
            assert value(samples, "ratchetpy_broker_up", worker=worker) == 1
            assert value(samples, "process_open_fds", worker=worker) > 0
            assert value(samples, "ratchetpy_broker_unsent_publications_total", worker=worker) == 0
        cpu = {dict(ls)["worker"] for (n, ls) in samples if n == "process_cpu_seconds_total"}
        assert cpu == {"1", "2"} and len(pids) == 2
    assert await trio.to_thread.run_sync(server.stop) == 0
    assert server.errors() == []
