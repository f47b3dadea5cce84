"""App: the one-object way to serve WebSockets, pages and HTTP endpoints on one port
(Ratchet's ``App``).

.. code-block:: python

    app = App("example.com", 8080, "0.0.0.0")
    app.route("/chat", Chat())                               # a MessageComponent: a WebSocket
    app.route("/rooms/{room}", Rooms())                      # request.path_params["room"]
    app.route("/assets/{path:path}", StaticFiles("public"))  # pages, scripts, images
    app.route("/health", app.health)                         # a function: request -> response
    app.route("/metrics", app.metrics)                       # Prometheus, every worker
    app.run()

Under it is the same stack you could build by hand, so nothing is hidden:
``IoServer(HttpServer(IpBlackList(HostCheck(ConnectionLimits(Router(...))))))`` with each route's
component behind an :class:`~ratchetpy.OriginCheck` (unless its origins are ``["*"]``) and a
:class:`~ratchetpy.MessageComponent` behind a :class:`~ratchetpy.WsServer`.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import trio

from .broker import MessageBroker
from .components.base import HttpComponent, HttpDecorator, MessageComponent
from .components.connection import Timer
from .components.endpoint import Endpoint
from .components.guards import (
    LOOPBACK_HOSTS,
    ConnectionLimits,
    HostCheck,
    IpBlackList,
    OriginCheck,
)
from .components.http_server import HttpServer
from .components.router import Route, Router
from .components.ws_server import WsServer
from .exceptions import BrokerError
from .io.redis_broker import RedisBroker
from .io.server import IoServer, ServerStats
from .io.workers import WorkerLink
from .metrics import CONTENT_TYPE, collect_snapshots, render, require_prometheus_client
from .protocol.http import HttpRequest, HttpResponse
from .wamp import WampComponent, WampServer

__all__ = ["App"]

logger = logging.getLogger("ratchetpy.server")


class App:
    """Routes on one server: ``App(http_host, port, address).route(...)`` then ``run()``.

    ``http_host``
        The host name browsers use to reach the server. Requests for it are served (with
        ``allowed_hosts``), and pages from it (any scheme or port) may open this app's
        WebSockets, as may pages the app serves itself (same origin); see
        ``allowed_origins`` in :meth:`route`. ``None``: no name is known (see
        ``allowed_hosts``) and only the same-origin rule admits pages.
    ``port``, ``address``
        Where to listen (``port=0`` picks a free port: :meth:`serve` reports it).

    Options (keyword-only):

    ``allowed_hosts``
        The ``Host`` names requests may be for (forms in :class:`~ratchetpy.HostCheck`;
        ``["*"]``: any); others get 421, which is what defeats DNS rebinding. By default
        ``http_host`` and this machine's loopback names (``localhost``, ``127.0.0.1``,
        ``[::1]``, ``*.localhost``); with ``http_host=None``, the loopback names when
        ``address`` is a loopback address, else any host.

    ``ssl_context`` or ``certfile`` / ``keyfile``
        Serve ``wss://`` and ``https://`` directly (see the TLS how-to).
    ``trusted_proxies``
        Addresses or networks of reverse proxies (nginx) whose ``Forwarded`` /
        ``X-Forwarded-For`` headers name the real client (``conn.remote_address``).
    ``broker``
        What connects this worker to the other workers and hosts: a Redis URL
        (``"redis://127.0.0.1:6379/0"``, a :class:`~ratchetpy.io.redis_broker.RedisBroker`),
        a :class:`~ratchetpy.broker.MessageBroker`, or ``None`` (default: one process, in
        memory). ``app.broker`` is it; the server checks it before listening, runs it while
        serving, and :meth:`health` reports it.
    ``reuse_port``
        Bind with ``SO_REUSEPORT`` (see :class:`~ratchetpy.IoServer`): for copies of the
        program a process manager starts itself.
    ``max_connections``
        Connections the server holds at once; past it, new ones wait in the listen queue.
    ``max_connections_per_ip``, ``handshake_rate``
        Per client address: open WebSockets, and ``(count, seconds)`` handshakes (429 past
        either); see :class:`~ratchetpy.ConnectionLimits`.
    ``blocked``
        Addresses or networks refused from the start; ``app.blacklist`` changes it later.
    ``write_limit``, ``shutdown_timeout``, ``close_timeout``, ``tls_handshake_timeout``
        As for :class:`~ratchetpy.IoServer`.
    ``request_timeout``, ``keep_alive_timeout``, ``max_body_size``
        As for :class:`~ratchetpy.HttpServer`.

    The parts are attributes, for what the options do not cover: ``router``, ``blacklist``,
    ``hosts`` (the :class:`~ratchetpy.HostCheck`), ``limits``, ``http`` (the
    :class:`HttpServer`) and ``server`` (the :class:`IoServer`).
    """

    def __init__(
        self,
        http_host: str | None = "localhost",
        port: int = 8080,
        address: str = "127.0.0.1",
        *,
        allowed_hosts: Iterable[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        trusted_proxies: Iterable[str] = (),
        broker: MessageBroker | str | None = None,
        reuse_port: bool = False,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        handshake_rate: tuple[int, float] | None = None,
        blocked: Iterable[str] = (),
        write_limit: int = 4 * 2**20,
        shutdown_timeout: float = 5.0,
        close_timeout: float = 10.0,
        tls_handshake_timeout: float = 10.0,
        request_timeout: float = 10.0,
        keep_alive_timeout: float = 5.0,
        max_body_size: int = 2**20,
    ) -> None:
        self.http_host = http_host
        self.router = Router()
        self.limits = ConnectionLimits(
            self.router, max_per_ip=max_connections_per_ip, handshake_rate=handshake_rate
        )
        if allowed_hosts is None:
            allowed_hosts = _default_hosts(http_host, address)
        self.hosts = HostCheck(self.limits, allowed_hosts)
        self.blacklist = IpBlackList(self.hosts, blocked)
        self.http = HttpServer(
            self.blacklist,
            trusted_proxies=trusted_proxies,
            request_timeout=request_timeout,
            keep_alive_timeout=keep_alive_timeout,
            max_body_size=max_body_size,
        )
        self.server = IoServer(
            self.http,
            port=port,
            address=address,
            ssl_context=ssl_context,
            certfile=certfile,
            keyfile=keyfile,
            max_connections=max_connections,
            write_limit=write_limit,
            shutdown_timeout=shutdown_timeout,
            close_timeout=close_timeout,
            tls_handshake_timeout=tls_handshake_timeout,
            broker=RedisBroker(broker) if isinstance(broker, str) else broker,
            reuse_port=reuse_port,
        )

    def route(
        self,
        path: str,
        component: Any,
        *,
        allowed_origins: Iterable[str] | None = None,
        http_host: str | None = None,
        methods: Iterable[str] | None = None,
    ) -> Route:
        """Serve ``component`` at ``path`` (Ratchet's ``$app->route()``).

        ``component`` may be a :class:`~ratchetpy.MessageComponent` (served as a WebSocket
        through a :class:`~ratchetpy.WsServer` built for it; pass your own ``WsServer(...)``
        for its options), a :class:`~ratchetpy.WampComponent` (served as a WAMP router,
        ``WsServer(WampServer(component))``; a ``WampServer`` is a MessageComponent), any
        HTTP component (:class:`~ratchetpy.StaticFiles`, :class:`~ratchetpy.Page`, a
        ``WsServer``), or a function ``request -> response`` (see :class:`Endpoint`).

        ``path`` may hold ``{name}`` and a final ``{name:path}``; the values arrive in
        ``request.path_params`` (``conn.http_request.path_params`` in a WebSocket component).

        ``allowed_origins``: by default the same origin and ``http_host`` of the app;
        ``["*"]`` allows any page to connect; a list allows those origins too (forms in
        :class:`~ratchetpy.OriginCheck`). Refused requests get 403 saying which origin was
        refused and what is allowed.

        ``http_host`` restricts the route to requests for that host (``Host`` header);
        ``methods`` to those methods (others get 405 with ``Allow``).

        Routing :meth:`metrics` raises ``ImportError`` when ``prometheus-client`` is missing,
        and turns on the measurements it reports (``collect_metrics``).
        """
        if component == self.metrics:
            require_prometheus_client()
            self.server.collect_metrics = True
        served = self._as_http_component(component)
        if methods is None:
            # Read before the origin check wraps it (a component of your own may not derive
            # from HttpComponent, which declares the attribute).
            methods = getattr(served, "methods", None)
        origins = list(allowed_origins) if allowed_origins is not None else []
        if allowed_origins is None and self.http_host:
            origins.append(self.http_host)
        if "*" not in origins:
            served = OriginCheck(served, origins)
        return self.router.add(path, served, methods=methods, http_host=http_host)

    @staticmethod
    def _as_http_component(component: Any) -> HttpComponent:
        if inspect.isclass(component):
            raise TypeError(
                f"route() takes a component instance: {component.__name__}(), not the class"
            )
        if isinstance(component, MessageComponent):
            return WsServer(component)
        if isinstance(component, WampComponent):
            return WsServer(WampServer(component))
        if isinstance(component, (HttpComponent, WsServer)) or hasattr(component, "on_open"):
            return component  # type: ignore[no-any-return]
        if callable(component):
            return Endpoint(component)
        raise TypeError(
            f"cannot route to {component!r}: give a MessageComponent, an HTTP component or "
            "a function taking a request"
        )

    @property
    def broker(self) -> MessageBroker:
        """The broker to the other workers (a :class:`~ratchetpy.broker.MemoryBroker` when
        there are none)."""
        return self.server.broker

    def health(self, request: HttpRequest) -> HttpResponse:
        """A health endpoint: ``app.route("/health", app.health)`` answers 200 with JSON
        ``{"status": "ok", "connections": N, "uptime": seconds}`` while serving. With a
        broker to other workers, ``"broker": "ok"``; while it cannot pass messages on,
        ``"broker": "unavailable"`` and 503, so that a load balancer sends clients to a
        worker that is not cut off from the others."""
        stats = self.server.stats()
        body: dict[str, object] = {
            "status": "ok",
            "connections": stats.connections,
            "uptime": round(stats.uptime, 3),
        }
        status = 200
        broker = self.server.broker
        if broker.distributed:
            healthy = broker.healthy
            body["broker"] = "ok" if healthy else "unavailable"
            if not healthy:
                body["status"], status = "degraded", 503
        return HttpResponse(
            status,
            json.dumps(body),
            content_type="application/json",
            headers=(("Cache-Control", "no-store"),),
        )

    async def metrics(self, request: HttpRequest) -> HttpResponse:
        """A Prometheus endpoint: ``app.route("/metrics", app.metrics)`` answers 200 with
        every worker's metrics in Prometheus' text format (see :mod:`ratchetpy.metrics` and
        the metrics how-to). Routing it turns the server's ``collect_metrics`` on, and needs
        ``prometheus-client`` (``pip install 'ratchetpy[metrics]'``): without it,
        :meth:`route` raises ``ImportError`` saying so. A checkpoint with other workers."""
        body = render(await collect_snapshots(self.server))
        return HttpResponse(
            200, body, content_type=CONTENT_TYPE, headers=(("Cache-Control", "no-store"),)
        )

    async def cluster_stats(self, request: HttpRequest) -> HttpResponse:
        """Every worker's statistics and their sums: ``app.route("/stats", app.cluster_stats)``
        answers 200 with JSON ``{"workers": [{"id", "host", "pid", "address", "broker"
        ("ok" or "unavailable"), "connections", "messages_in", ...}, ...], "total":
        {"workers": N, "connections":
        ..., ...}}``. One process: itself. A worker that died is gone within three seconds;
        one that stopped gracefully, at once. 503 while the broker cannot tell."""
        headers = (("Cache-Control", "no-store"),)
        broker = self.server.broker
        try:
            announced = await broker.workers() if broker.distributed else {}
        except BrokerError as exc:
            body = {"error": "broker_unavailable", "reason": str(exc)}
            return HttpResponse(503, json.dumps(body), "application/json", headers=headers)
        workers = [{"id": worker, **json.loads(info)} for worker, info in announced.items()]
        for worker in workers:
            worker.pop("metrics", None)  # the metrics endpoint's, not part of this answer
        if not broker.distributed:
            workers = [{"id": broker.worker_id, **self.server.info()}]
        total: dict[str, float] = {"workers": len(workers)}
        for worker in workers:
            for name, value in worker.items():
                if isinstance(value, (int, float)) and name not in ("pid", "uptime"):
                    total[name] = total.get(name, 0) + value
        answer = {"workers": workers, "total": total}
        return HttpResponse(200, json.dumps(answer), "application/json", headers=headers)

    # -- running (the IoServer's) --------------------------------------------------------

    @property
    def port(self) -> int:
        """The port served (the real one once :meth:`serve` started with ``port=0``)."""
        return self.server.port

    def run(self, *, workers: int | None = None) -> None:
        """Serve until SIGINT or SIGTERM, then shut down gracefully. Blocks (Ratchet's
        ``$app->run()``). Outside the main thread it serves without signal handlers until
        :meth:`shutdown`. ``workers=N`` serves with N processes on one port (they need a
        ``broker``); see :meth:`IoServer.run`."""
        if workers is None or WorkerLink.in_worker():
            self._log_setup()  # once per worker, not again by the supervisor
        self.server.run(workers=workers)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve in the caller's nursery: ``port = await nursery.start(app.serve)``; see
        :meth:`IoServer.serve`."""
        self._log_setup()
        await self.server.serve(task_status=task_status)

    def shutdown(self) -> None:
        """Start a graceful shutdown (1001 to every WebSocket). Not a checkpoint."""
        self.server.shutdown()

    async def aclose(self) -> None:
        """Shut down gracefully and wait until it is done. A checkpoint."""
        await self.server.aclose()

    def stats(self) -> ServerStats:
        """Counters of the server: connections, messages and bytes in and out, ..."""
        return self.server.stats()

    def add_timer(self, delay: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback`` once after ``delay`` seconds; see :meth:`IoServer.add_timer`."""
        return self.server.add_timer(delay, callback)

    def add_periodic_timer(self, interval: float, callback: Callable[[], Any]) -> Timer:
        """Run ``callback`` every ``interval`` seconds while serving (Ratchet's
        ``addPeriodicTimer``); see :meth:`IoServer.add_periodic_timer`."""
        return self.server.add_periodic_timer(interval, callback)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """From any thread: run ``callback(*args)`` in the server (``app.call_soon_threadsafe(
        conn.send, text)``); see :meth:`IoServer.call_soon_threadsafe`."""
        self.server.call_soon_threadsafe(callback, *args)

    def _log_setup(self) -> None:
        hosts = self.hosts.allowed_hosts
        if "*" in hosts:
            logger.info("serving any Host (allowed_hosts=['*']): no DNS rebinding defence")
        else:
            logger.info("serving hosts %s (others get 421)", ", ".join(hosts))
        for route in self.router.routes:
            logger.info("route %s -> %s", route.path, _describe(route.component))


def _default_hosts(http_host: str | None, address: str) -> list[str]:
    """The hosts served when ``allowed_hosts`` is not given."""
    if http_host:
        return [http_host, *LOOPBACK_HOSTS]
    # No name known: this machine's own names, unless it listens beyond loopback, where the
    # names it is reached by are unknown and any host is served (as Jupyter does).
    if address == "localhost":
        return list(LOOPBACK_HOSTS)
    try:
        loopback = ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # "" and "0.0.0.0" mean every interface; a name may be anything
    return list(LOOPBACK_HOSTS) if loopback else ["*"]


def _describe(component: Any) -> str:
    # Look through decorators (origin check, authentication, session provider, yours) to what
    # serves the route, naming the ones other than the origin check App adds everywhere.
    wrappers = []
    while isinstance(component, HttpDecorator):
        if not isinstance(component, OriginCheck):
            wrappers.append(type(component).__name__)
        component = component.component
    behind = f" behind {', '.join(wrappers)}" if wrappers else ""
    if isinstance(component, WsServer):
        inner = component.component
        if isinstance(inner, WampServer):
            return f"WAMP router {type(inner.component).__name__}{behind}"
        return f"WebSocket {type(inner).__name__}{behind}"
    if isinstance(component, Endpoint):
        handler = component.handler
        return f"function {getattr(handler, '__qualname__', repr(handler))}{behind}"
    return f"{type(component).__name__}{behind}"
