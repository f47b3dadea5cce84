"""The ``ratchetpy`` command (also ``python -m ratchetpy``).

.. code-block:: text

    ratchetpy serve myapp:Chat --port 8080
    ratchetpy serve myapp:app --host 0.0.0.0 --certfile cert.pem --keyfile key.pem
    ratchetpy serve myapp:app --workers 4 --broker redis://127.0.0.1:6379/0
    ratchetpy serve myapp:app --workers 4 --broker redis://127.0.0.1:6379/0 --metrics /metrics

``serve MODULE:ATTR`` imports ``MODULE`` (from the current directory too) and serves ``ATTR``:

* an :class:`~ratchetpy.App`: served as it is, with ``--host`` / ``--port`` / TLS options
  replacing its own and ``--origin`` added to every route's allowed origins;
* a :class:`~ratchetpy.MessageComponent` (an instance, or a class taking no arguments): a
  WebSocket at ``--path`` (every path by default);
* an HTTP component (a ``WsServer``, a ``Router``, ``StaticFiles``): at ``--path``;
* a function taking no arguments that returns any of these (an app factory).

``--workers N`` serves with N processes on one port (see :mod:`ratchetpy.io.workers`); more
than one needs ``--broker``, and SIGHUP then restarts them one by one.

``--metrics PATH`` serves Prometheus metrics of every worker at ``PATH`` (see
:mod:`ratchetpy.metrics`; it needs ``pip install 'ratchetpy[metrics]'``).

It runs until SIGINT or SIGTERM, then shuts down gracefully (1001 to every WebSocket, queued
data flushed, at most ``--shutdown-timeout`` seconds) and exits with status 0. It exits with 1
if the server cannot start (port taken, bad certificate) and 2 for a bad command line or a
target it cannot import or serve.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .app import App
from .components.base import HttpComponent, MessageComponent
from .components.guards import LOOPBACK_HOSTS, OriginCheck
from .exceptions import BrokerError, ServerError
from .io.redis_broker import RedisBroker
from .io.tls import tls_context

__all__ = ["main", "main_exit"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _UsageError(Exception):
    """The command line names something that cannot be served."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratchetpy", description="Real-time WebSocket servers, Ratchet-style, on trio."
    )
    parser.add_argument("--version", action="version", version=f"ratchetpy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a component or an App",
        description="Serve MODULE:ATTR (an App, a MessageComponent, an HTTP component, or a "
        "function returning one) until SIGINT/SIGTERM.",
    )
    serve.add_argument("target", metavar="MODULE:ATTR", help="what to serve, e.g. chat:Chat")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080; 0: any)")
    serve.add_argument(
        "--path",
        default=None,
        help="path of a component that is not an App (default: every path)",
    )
    serve.add_argument("--certfile", help="PEM certificate (chain) for wss:// and https://")
    serve.add_argument("--keyfile", help="PEM private key, if not in --certfile")
    serve.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow pages from ORIGIN (repeatable; '*' allows any; default: same origin)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="serve requests for HOST too (repeatable; '*' for any): besides an App's own "
        "hosts, or this machine's loopback names (a component served beyond loopback without "
        "--allowed-host serves any host)",
    )
    serve.add_argument(
        "--broker",
        metavar="URL",
        help="connect this server to the others through Redis "
        "(redis://, rediss:// or unix:// URL; needs pip install 'ratchetpy[redis]')",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="serve with N worker processes on one port, restarted when they crash, "
        "restarted one by one on SIGHUP (more than one needs --broker)",
    )
    serve.add_argument(
        "--metrics",
        metavar="PATH",
        help="serve Prometheus metrics of every worker at PATH, e.g. /metrics "
        "(needs pip install 'ratchetpy[metrics]')",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, for copies a process manager starts itself",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a reverse proxy (address or network) whose X-Forwarded-For is believed",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        help="seconds a graceful shutdown may take (default: the App's, else 5)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level (default info)",
    )
    return parser


def load_target(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (``ATTR`` may be dotted) and return the attribute."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"expected MODULE:ATTR, such as chat:Chat, not {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    return target


def _instantiate(target: Any, spec: str) -> Any:
    """A component class is instantiated; a factory function is called."""
    if inspect.isclass(target):
        if issubclass(target, (MessageComponent, HttpComponent, App)):
            return target()
        raise _UsageError(f"{spec} is a class that is not a component or an App")
    if isinstance(target, (App, MessageComponent, HttpComponent)) or hasattr(target, "on_open"):
        return target
    if callable(target):
        return _instantiate(target(), spec)
    raise _UsageError(f"{spec} is a {type(target).__name__}, not something ratchetpy can serve")


def build_app(args: argparse.Namespace) -> App:
    """The App the ``serve`` command runs for these arguments."""
    target = _instantiate(load_target(args.target), args.target)
    if args.keyfile and not args.certfile:
        raise _UsageError("--keyfile needs --certfile")
    tls = tls_context(None, args.certfile, args.keyfile)
    if isinstance(target, App):
        app = target
        if args.path is not None:
            raise _UsageError("--path is for components; an App has its own routes")
        if args.host is not None:
            app.server.address = args.host
        if args.port is not None:
            app.server.port = args.port
        if tls is not None:
            app.server.ssl_context = tls
        if args.trusted_proxy:
            raise _UsageError("--trusted-proxy is for components; give the App trusted_proxies")
        for route in app.router.routes:
            if isinstance(route.component, OriginCheck):
                route.component.allowed_origins.extend(args.origin)
        app.hosts.allow(args.allowed_host)
        if args.broker:
            if app.broker.distributed:
                raise _UsageError("--broker: the App has a broker of its own")
            app.server.broker = _broker(args.broker)
        if args.shutdown_timeout is not None:
            app.server.shutdown_timeout = args.shutdown_timeout
        if args.reuse_port:
            app.server.reuse_port = True
        _route_metrics(app, args.metrics)
        return app
    app = App(
        None,
        args.port if args.port is not None else 8080,
        args.host if args.host is not None else "127.0.0.1",
        allowed_hosts=[*LOOPBACK_HOSTS, *args.allowed_host] if args.allowed_host else None,
        ssl_context=tls,
        broker=_broker(args.broker) if args.broker else None,
        trusted_proxies=args.trusted_proxy,
        shutdown_timeout=5.0 if args.shutdown_timeout is None else args.shutdown_timeout,
        reuse_port=args.reuse_port,
    )
    app.route(args.path or "/{path:path}", target, allowed_origins=list(args.origin) or None)
    _route_metrics(app, args.metrics)
    return app


def _route_metrics(app: App, path: str | None) -> None:
    if path is None:
        return
    if not path.startswith("/"):
        raise _UsageError(f"--metrics takes a path such as /metrics, not {path!r}")
    try:
        app.route(path, app.metrics)
    except ImportError as exc:
        raise _UsageError(str(exc)) from None


def _check_workers(args: argparse.Namespace, app: App) -> None:
    if args.workers is None:
        return
    if args.workers < 1:
        raise _UsageError("--workers must be at least 1")
    if args.workers > 1 and not app.broker.distributed:
        raise _UsageError(
            f"--workers {args.workers} needs --broker redis://...: without a broker each "
            "worker is a server of its own, and a message reaches only the clients of the "
            "worker it was sent on"
        )


def _broker(url: str) -> RedisBroker:
    try:
        return RedisBroker(url)
    except ValueError as exc:
        raise _UsageError(f"--broker: {exc}") from None
    except ImportError as exc:
        raise _UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    # With workers, each line says which process wrote it.
    log_format = _LOG_FORMAT.replace("%(name)s", "[%(process)d] %(name)s")
    logging.basicConfig(
        level=args.log_level.upper(), format=log_format if args.workers else _LOG_FORMAT
    )
    try:
        app = build_app(args)
        _check_workers(args, app)
    except _UsageError as exc:
        print(f"ratchetpy: error: {exc}", file=sys.stderr)
        return 2
    except (ServerError, ValueError) as exc:
        print(f"ratchetpy: error: {exc}", file=sys.stderr)
        return 1
    try:
        app.run(workers=args.workers)
    except (ServerError, BrokerError) as exc:
        print(f"ratchetpy: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main_exit() -> None:
    """The console script's entry point: :func:`main` with its status as the exit status."""
    sys.exit(main())
