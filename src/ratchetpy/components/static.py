"""StaticFiles: serve the files of one directory (pages, scripts, styles, images).

.. code-block:: python

    app.route("/assets/{path:path}", StaticFiles("public"))

A request for ``/assets/css/site.css`` gets ``public/css/site.css``. The file to serve is what
the route captured as ``path`` (``request.path_params["path"]``) or, when mounted without a
``{path:path}`` capture, the request's whole path. Either way it is relative to the directory
and can never leave it:

- The path is percent-decoded exactly once (the router already did it for ``path_params``), then
  split on ``/``; every segment is checked. ``..`` and ``.`` segments, empty segments (``//``,
  a leading ``/``), NUL and other control characters, backslashes and colons are refused with
  400, so ``%2e%2e``, ``..%2f``, ``..%5c``, ``C:`` and NTFS stream names (``file::$DATA``) all
  fail the same way on every platform. ``%252e`` decodes to the literal name ``%2e``.
- The file is then located with :func:`os.path.realpath` and must lie inside the directory's
  own real path. With ``follow_symlinks=False`` (the default) a symbolic link that leads outside
  the directory gets 403; links that stay inside work. ``follow_symlinks=True`` serves what such
  links point to, for deployments that link shared assets in on purpose.
- The resolved path is opened without following a final symlink (``O_NOFOLLOW``) and without
  blocking (``O_NONBLOCK``, so a FIFO cannot stall the server), and only a regular file is
  served: a device, FIFO or socket gets 403.

Dot files are served like any other: keep the directory to what the world may read.

Answers: 200 with the file; 301 to the slash form for a directory requested without the
trailing slash (so relative links in its ``index.html`` resolve), built from the request path
alone, never from the ``Host`` header; 304 when the client's copy is current; 400 for a path
that tries to escape; 403 for a file that exists but may not be served; 404 (body naming the
path) for one that does not exist; 405 for methods other than GET and HEAD.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import mimetypes
import os
import re
import stat
from datetime import UTC
from urllib.parse import quote, unquote

from ..protocol.http import HttpRequest, HttpResponse
from .base import HttpComponent
from .connection import Connection

__all__ = ["StaticFiles"]

logger = logging.getLogger("ratchetpy.http")

#: Web types fixed here rather than left to :mod:`mimetypes`, whose answers come from the
#: platform (Windows' registry has served ``.js`` as ``text/plain``; some Linux
#: ``mime.types`` lack ``.wasm`` or ``.mjs``), and a browser refuses a module script or a
#: WebAssembly stream sent with the wrong type.
_WEB_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
_DEFAULT_TYPE = "application/octet-stream"

# Characters refused anywhere in a path segment: control characters (NUL included) cannot be
# file names we mean to serve, a backslash is a separator on Windows, and a colon names a
# drive or an NTFS data stream there. Refusing them everywhere keeps behaviour portable.
_BAD_SEGMENT_CHAR = re.compile(r"[\x00-\x1f\x7f\\:]")
# Entity tags in If-None-Match: the opaque part of W/"..." or "...".
_ENTITY_TAG = re.compile(r'(?:W/)?"([^"]*)"')
# What may stay as it is in a Location header; the rest (backslashes, spaces, controls,
# non-ASCII) is percent-encoded so the header cannot be split or read as another host.
_LOCATION_SAFE = "/%!$&'()*+,;=:@-._~"

_O_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)


class _Refused(Exception):
    """Internal: the request is answered with ``response`` (never leaves this module)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class StaticFiles(HttpComponent):
    """Serve the files under ``directory`` to GET and HEAD requests.

    ``index``
        The file served for a directory (default ``index.html``); ``None`` means directories
        get 404. There are no directory listings.
    ``max_age``
        ``None`` (the default) sends ``Cache-Control: no-cache``: browsers keep the file but
        ask every time, and the ``ETag``/``Last-Modified`` check makes that a cheap 304.
        An ``int`` sends ``public, max-age=N`` for fingerprinted assets that never change.
    ``follow_symlinks``
        Whether symbolic links may lead outside ``directory`` (default ``False``: 403).
    ``max_file_size``
        Files are read whole into memory, synchronously, on the connection's task (they are
        meant to be pages and assets, and a cached read takes microseconds). A file larger
        than this (default 32 MiB) is refused with 403 and a body saying why, and a warning is
        logged. 403 because it is a deliberate, lasting policy about that resource: a 5xx
        would read as an outage and invite retries, and 413 is about request bodies.
        Serve big downloads from the reverse proxy or a CDN.

    Every answer carries ``X-Content-Type-Options: nosniff``. A file's answer carries a weak
    ``ETag`` (from its modification time and size), ``Last-Modified`` and ``Cache-Control``;
    ``If-None-Match`` (which takes precedence, RFC 9110 section 13.2.2) or
    ``If-Modified-Since`` turn it into a 304 without a body.

    Text types are labelled ``; charset=utf-8``: keep text files in UTF-8. Types come from a
    fixed table for the usual web formats, then :mod:`mimetypes`; a compressed file
    (``.gz``, ``.bz2``, ``.xz``) is sent as ``application/octet-stream`` since there is no
    ``Content-Encoding`` to go with it. Unknown types are ``application/octet-stream``.

    Range requests are not supported: ``Accept-Ranges: none`` is sent and a ``Range`` header
    is answered with the whole file (200), which HTTP allows.

    ``on_open`` returns an :class:`~ratchetpy.HttpResponse` for the server to write. For
    HEAD it holds the body too, so that ``Content-Length`` is right; ``HttpServer`` leaves the
    body out on the wire. :meth:`respond` does the same without a connection.
    """

    #: What a :class:`~ratchetpy.Router` lets through; it answers 405 to the rest itself.
    methods = ("GET", "HEAD")

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        max_age: int | None = None,
        follow_symlinks: bool = False,
        max_file_size: int = 32 * 2**20,
    ) -> None:
        self.directory = os.fspath(directory)
        self.root = os.path.realpath(self.directory)
        if not os.path.isdir(self.root):
            raise ValueError(f"StaticFiles directory {self.directory!r} is not a directory")
        if index is not None and (not index or index in (".", "..") or "/" in index):
            raise ValueError(f"index must be a file name, not {index!r}")
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0, not {max_age}")
        if max_file_size <= 0:
            raise ValueError(f"max_file_size must be > 0, not {max_file_size}")
        self.index = index
        self.max_age = max_age
        self.follow_symlinks = follow_symlinks
        self.max_file_size = max_file_size
        self.cache_control = "no-cache" if max_age is None else f"public, max-age={max_age}"
        # "/" is its own prefix; any other root needs a separator so "/srv/www" does not
        # contain "/srv/www-private".
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep

    def __repr__(self) -> str:
        return f"StaticFiles({self.directory!r})"

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        """Answer ``request`` with a file (or why not); see :meth:`respond`."""
        return self.respond(request)

    def respond(self, request: HttpRequest) -> HttpResponse:
        """The answer to ``request``. Reads the file synchronously; never raises for bad
        client input."""
        if request.method not in self.methods:
            return _error(
                405,
                f"{request.method} is not allowed here; use GET or HEAD",
                [("Allow", "GET, HEAD")],
            )
        try:
            segments = _segments(request)
            path = self._locate(os.path.join(self.root, *segments), request.path)
            # The type follows the name in the URL (as web servers do), not a link's target.
            name = segments[-1] if segments else ""
            if os.path.isdir(path):
                path = self._directory_index(path, request)
                name = self.index or name
            elif request.path.endswith("/"):
                raise _Refused(_error(404, f"{request.path} is a file, not a directory"))
            return self._serve(path, name, request)
        except _Refused as refused:
            return refused.response

    # -- internals -------------------------------------------------------------------------

    def _locate(self, candidate: str, shown: str) -> str:
        """The real path of ``candidate`` if it may be served; ``shown`` names it to the client."""
        real = os.path.realpath(candidate)
        if not self.follow_symlinks and real != self.root and not real.startswith(self._prefix):
            logger.info("HTTP 403: %s leads outside %s", shown, self.root)
            raise _Refused(_error(403, f"{shown} is a link that leads outside the directory"))
        return real

    def _directory_index(self, path: str, request: HttpRequest) -> str:
        if not request.path.endswith("/"):
            raise _Refused(_redirect(request))
        if self.index is None:
            raise _Refused(_error(404, f"{request.path} is a directory (no listings)"))
        shown = request.path + self.index
        index = self._locate(os.path.join(path, self.index), shown)
        if not os.path.isfile(index):
            raise _Refused(_error(404, f"{request.path} has no {self.index}"))
        return index

    def _serve(self, path: str, name: str, request: HttpRequest) -> HttpResponse:
        try:
            fd = os.open(path, _O_FLAGS)
        except OSError as exc:
            raise _Refused(_open_error(exc, request.path)) from None
        with open(fd, "rb", closefd=True) as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _Refused(_error(403, f"{request.path} is not a regular file"))
            if info.st_size > self.max_file_size:
                raise _Refused(self._too_big(request.path, info.st_size))
            etag = f'W/"{info.st_mtime_ns:x}-{info.st_size:x}"'
            headers = self._headers(etag, info.st_mtime)
            if _not_modified(request, etag, info.st_mtime):
                return HttpResponse(304, b"", headers=tuple(headers))
            body = file.read(self.max_file_size + 1)
        if len(body) > self.max_file_size:  # it grew while we looked
            raise _Refused(self._too_big(request.path, len(body)))
        return HttpResponse(200, body, content_type=_content_type(name), headers=tuple(headers))

    def _headers(self, etag: str, mtime: float) -> list[tuple[str, str]]:
        return [
            ("ETag", etag),
            ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
            ("Cache-Control", self.cache_control),
            ("Accept-Ranges", "none"),
            ("X-Content-Type-Options", "nosniff"),
        ]

    def _too_big(self, shown: str, size: int) -> HttpResponse:
        logger.warning(
            "HTTP 403: %s is %d bytes, over StaticFiles max_file_size=%d",
            shown,
            size,
            self.max_file_size,
        )
        return _error(
            403,
            f"{shown} is {size} bytes, over this server's limit of {self.max_file_size} "
            f"bytes for static files",
        )


def _content_type(name: str) -> str:
    """The ``Content-Type`` StaticFiles sends for a file called ``name``."""
    ext = os.path.splitext(name)[1].lower()
    kind = _WEB_TYPES.get(ext)
    if kind is None:
        guessed, encoding = mimetypes.guess_type(name, strict=False)
        kind = _DEFAULT_TYPE if guessed is None or encoding is not None else guessed
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def _segments(request: HttpRequest) -> list[str]:
    """The requested path's segments, relative to the root, each one checked."""
    if "path" in request.path_params:
        relative = request.path_params["path"]  # decoded by the router already
    else:
        if not request.path.startswith("/"):
            raise _Refused(_error(400, f"{request.path!r} is not an absolute path"))
        try:
            relative = unquote(request.path[1:], errors="strict")
        except UnicodeDecodeError:
            raise _Refused(_error(400, f"{request.path} is not UTF-8 once decoded")) from None
    segments = relative.split("/") if relative else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash: the directory itself
    for segment in segments:
        if segment in ("", ".", "..") or _BAD_SEGMENT_CHAR.search(segment):
            logger.info("HTTP 400: refused path %r", request.path)
            raise _Refused(_error(400, f"{request.path!r} is not a valid path here"))
    return segments


def _redirect(request: HttpRequest) -> HttpResponse:
    """301 to the directory's slash form, built from the request path only.

    Leading slashes are collapsed so the Location cannot become ``//other.host/``.
    """
    location = quote("/" + request.path.lstrip("/") + "/", safe=_LOCATION_SAFE)
    if request.query:
        location += "?" + quote(request.query, safe=_LOCATION_SAFE + "?")
    return HttpResponse(
        301,
        f"301 Moved Permanently: {location}\n",
        headers=(("Location", location), ("X-Content-Type-Options", "nosniff")),
    )


def _not_modified(request: HttpRequest, etag: str, mtime: float) -> bool:
    """Whether the client's copy is current (RFC 9110 section 13.1: If-None-Match first)."""
    if_none_match = request.headers.get_all("if-none-match")
    if if_none_match:
        value = ",".join(if_none_match)
        if value.strip() == "*":
            return True
        # Weak comparison, as RFC 9110 prescribes for If-None-Match: W/ is ignored.
        return etag.removeprefix("W/").strip('"') in _ENTITY_TAG.findall(value)
    if_modified_since = request.header("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False  # an unreadable date is ignored, as RFC 9110 says
    if since.tzinfo is None:  # "-0000": UTC with no claim about the sender's zone
        since = since.replace(tzinfo=UTC)
    # Last-Modified went out in whole seconds, so that is what the client can send back.
    return int(mtime) <= since.timestamp()


def _open_error(exc: OSError, shown: str) -> HttpResponse:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return _error(404, f"{shown} does not exist")
    # ELOOP: O_NOFOLLOW met a symlink, so the path changed since realpath() looked.
    if isinstance(exc, PermissionError) or exc.errno == getattr(errno, "ELOOP", None):
        logger.info("HTTP 403: cannot open %s: %s", shown, exc.strerror)
        return _error(403, f"{shown} may not be read")
    logger.error("HTTP 500: cannot open %s: %s", shown, exc)
    return _error(500, f"{shown} could not be read")


def _error(status: int, why: str, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse.error(status, why, headers=headers or ())  # it adds nosniff
