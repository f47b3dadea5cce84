"""A plain HTTP GET for tests, from a thread (``trio.to_thread.run_sync``) or sync code. (Not
named http.py: the workers' tests run servers in this directory, where it would hide the
standard library's.)"""

from __future__ import annotations

import http.client


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1:``port``; the status and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
