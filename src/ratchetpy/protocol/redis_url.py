"""Where a Redis server is and how to log in: ``redis://``, ``rediss://`` and ``unix://`` URLs.

The forms redis-py and the Redis documentation use, so a team's existing URL works:

.. code-block:: text

    redis://[[user]:password@]host[:port][/db]         TCP (port 6379, db 0 by default)
    rediss://[[user]:password@]host[:port][/db]        TCP with TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]

User and password are percent-decoded (``%40`` for ``@``). Sans-IO: parsing only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["RedisAddress"]

_DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisAddress:
    """A parsed Redis URL: :meth:`parse` builds one, :meth:`describe` shows it safely."""

    host: str = "127.0.0.1"
    port: int = _DEFAULT_PORT
    #: The unix socket's path; when set, ``host`` and ``port`` are not used.
    path: str | None = None
    db: int = 0
    username: str | None = None
    # Not in repr: an address may be logged or shown in a traceback.
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """Parse ``url``; ValueError says what is wrong with it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"a Redis URL starts with redis://, rediss:// or unix://, not {_safe(url)!r}"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"db"})
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} in the Redis URL {_safe(url)!r}")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        db_text = query["db"][-1] if "db" in query else ""
        if scheme == "unix":
            if not parts.path:
                raise ValueError(f"a unix:// Redis URL needs a socket path: {_safe(url)!r}")
            return cls(
                path=unquote(parts.path),
                db=_db(db_text, url),
                username=username,
                password=password,
            )
        path_db = parts.path.strip("/")
        if path_db and db_text:
            raise ValueError(f"the Redis URL {_safe(url)!r} names its db twice")
        try:
            port = parts.port or _DEFAULT_PORT
        except ValueError:
            raise ValueError(f"the Redis URL {_safe(url)!r} has an invalid port") from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=_db(path_db or db_text, url),
            username=username,
            password=password,
            tls=scheme == "rediss",
        )

    def describe(self) -> str:
        """The address as a URL, with the password left out: for log lines and errors."""
        user = f"{self.username}@" if self.username else ""
        if self.path is not None:
            suffix = f"?db={self.db}" if self.db else ""
            return f"unix://{user}{self.path}{suffix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def _db(text: str, url: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"the db of the Redis URL {_safe(url)!r} must be a number, not {text!r}")
    return int(text)


def _safe(url: str) -> str:
    """``url`` without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{user}:***@{host}{parts.path}{query}"
