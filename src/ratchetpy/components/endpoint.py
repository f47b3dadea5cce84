"""Endpoint: a plain function ``request -> response`` served as an HTTP component.

``App.route("/health", app.health)`` wraps the function in one; so may you, to put it behind a
:class:`~ratchetpy.Router` or a decorator of your own.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from ..protocol.http import HttpRequest, HttpResponse
from .base import HttpComponent, HttpResult
from .connection import Connection

__all__ = ["Endpoint"]


def _to_response(value: Any) -> HttpResponse:
    if isinstance(value, HttpResponse):
        return value
    if value is None:
        return HttpResponse(204)
    if isinstance(value, str):
        return HttpResponse(200, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return HttpResponse(200, bytes(value), content_type="application/octet-stream")
    if isinstance(value, (dict, list)):
        return HttpResponse(200, json.dumps(value), content_type="application/json")
    raise TypeError(
        f"an endpoint returned {type(value).__name__}; return an HttpResponse, str, bytes, "
        "dict, list or None"
    )


class Endpoint(HttpComponent):
    """A function ``handler(request)`` (plain or ``async``) served as an HTTP component.

    It may return an :class:`~ratchetpy.HttpResponse`, a ``str`` (200, ``text/plain``),
    ``bytes`` (200, ``application/octet-stream``), a ``dict`` or ``list`` (200, JSON) or
    ``None`` (204). It serves ``GET`` and ``HEAD`` unless ``methods`` says otherwise.
    """

    def __init__(
        self,
        handler: Callable[[HttpRequest], Any],
        *,
        methods: Iterable[str] = ("GET", "HEAD"),
    ) -> None:
        self.handler = handler
        self.methods = tuple(method.upper() for method in methods)

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        result = self.handler(request)
        if inspect.isawaitable(result):
            return self._finish(result)
        return _to_response(result)

    async def _finish(self, result: Any) -> HttpResponse:
        return _to_response(await result)

    def __repr__(self) -> str:
        return f"Endpoint({self.handler!r})"
