"""HttpServer's request parsing against h11's, with h11 as the oracle.

HttpServer reads requests with h11 and adds limits of its own (header count, head size, body
size) plus the answers it sends itself. Whatever hypothesis builds, a request line, headers
and a body, valid or not, HttpServer must accept exactly what a bare h11 server accepts, with
the same method, target, version, headers and body, and refuse what h11 refuses with the
status h11 suggests. The only differences allowed are its limits and the rules h11 leaves to
its user (HTTP versions other than 1.0 and 1.1, a request framed by both Content-Length and
Transfer-Encoding), named in ``our_rules_explain`` below.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import h11
from hypothesis import given
from hypothesis import strategies as st

from ratchetpy import HttpResponse, HttpServer
from ratchetpy.testing import RecordingConnection
from support.components import RequestRecorder

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
MAX_HEADERS = 20  # small limits, so that hypothesis reaches them often
MAX_BODY = 64


@dataclass(frozen=True)
class Outcome:
    kind: str  # "accepted", "refused" or "incomplete"
    status: int = 0  # the refusal's status
    head: tuple[str, str, str, tuple[tuple[str, str], ...]] | None = None
    body: bytes = b""


def h11_outcome(data: bytes) -> Outcome:
    """What a bare h11 server makes of ``data``: the oracle."""
    conn = h11.Connection(h11.SERVER)
    head = None
    body: list[bytes] = []
    try:
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return Outcome("incomplete")
            if isinstance(event, h11.Request):
                head = (
                    event.method.decode("ascii"),
                    event.target.decode("latin-1"),
                    event.http_version.decode("ascii"),
                    tuple(
                        (name.decode("latin-1").lower(), value.decode("latin-1"))
                        for name, value in event.headers.raw_items()
                    ),
                )
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Outcome("accepted", head=head, body=b"".join(body))
    except h11.RemoteProtocolError as exc:
        return Outcome("refused", status=exc.error_status_hint)


def server_outcome(data: bytes) -> Outcome:
    """What HttpServer does with ``data``, seen from its component and the connection."""
    recorder = RequestRecorder(answer=HttpResponse(200, "ok"))
    http = HttpServer(recorder, max_headers=MAX_HEADERS, max_body_size=MAX_BODY)
    conn = RecordingConnection(websocket=False)
    assert http.on_open(conn) is None
    assert http.on_message(conn, data) is None
    if recorder.seen:
        request = recorder.seen[0]
        fields = (request.method, request.target, request.http_version)
        head = (*fields, tuple(request.headers.items()))
        return Outcome("accepted", head=head, body=request.body)
    finals = [bytes(s) for s in conn.sent if not bytes(s).startswith(b"HTTP/1.1 1")]
    if finals:
        status = int(finals[0].split(b" ", 2)[1])
        assert conn.closes, "a refused request must end the connection"
        return Outcome("refused", status=status)
    return Outcome("incomplete")


def our_rules_explain(data: bytes, oracle: Outcome, ours: Outcome) -> bool:
    """True when the difference is one of HttpServer's own limits or rules, which h11 lacks."""
    if ours.kind != "refused" or oracle.kind == "refused":
        return False
    head = data.split(b"\r\n\r\n", 1)[0]
    request_line, *lines = head.split(b"\r\n")
    if ours.status == 505:  # h11 reads any HTTP/d.d
        return not request_line.endswith((b" HTTP/1.1", b" HTTP/1.0"))
    if ours.status == 400:  # request smuggling's shape: framed twice
        names = {line.partition(b":")[0].strip().lower() for line in lines}
        return {b"content-length", b"transfer-encoding"} <= names
    if ours.status == 431:  # more header lines than max_headers
        return len(lines) > MAX_HEADERS
    if ours.status == 413:  # a body over max_body_size, refused as soon as it is announced
        return len(oracle.body) > MAX_BODY or _declared_length(lines) > MAX_BODY
    return False


def _declared_length(lines: list[bytes]) -> int:
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return -1


# -- what hypothesis builds: mostly valid requests, each with at most a few faults ----------

PATH = string.ascii_letters + string.digits + "/%?=&.-_~"
tokens = st.text(TOKEN, min_size=1, max_size=8)
good_methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
bad_methods = st.one_of(st.text(string.printable, max_size=6), st.sampled_from(["G T", "", "\x00"]))
good_targets = st.builds(lambda path: "/" + path, st.text(PATH, max_size=20))
bad_targets = st.sampled_from(["*", "http://example.com/x", "", "/a b", "/\x00", "/caf\u00e9"])
good_versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0"])
bad_versions = st.sampled_from(["HTTP/2.0", "HTTP/9.9", "http/1.1", "HTTP/1", "HTTP/1.1 x", ""])
good_values = st.text(string.ascii_letters + string.digits + " -_.,;=/\"'()", max_size=20)
bad_names = st.sampled_from(["Bad Name", "a:b", "", "x\x00", "caf\u00e9", " lead"])
bad_values = st.sampled_from(["a\x00b", "\x7f", "a\x01b", "x\r\n continued", "\u00e9", "a\rb"])


def faulty(
    draw: st.DrawFn, good: st.SearchStrategy[str], bad: st.SearchStrategy[str], odds: int = 10
) -> str:
    """Usually a good value, one time in ``odds`` a bad one."""
    return draw(bad) if draw(st.integers(1, odds)) == 1 else draw(good)


@st.composite
def header_lines(draw: st.DrawFn) -> list[tuple[str, str]]:
    count = draw(st.integers(0, 4) | st.integers(MAX_HEADERS - 2, MAX_HEADERS + 3))
    return [
        (faulty(draw, tokens, bad_names, 40), faulty(draw, good_values, bad_values, 40))
        for _ in range(count)
    ]


@st.composite
def framing(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    """How the body is delimited, honestly or not."""
    body = draw(st.binary(max_size=MAX_BODY + 8))
    kind = draw(st.sampled_from(["none", "length", "length", "chunked", "chunked", "wrong-length"]))
    if kind == "none":
        return [], b""
    if kind == "wrong-length":  # now and then a framing fault instead of the short body
        kind = draw(st.sampled_from(["wrong-length", "bad-length", "both", "two", "bad-chunk"]))
    if kind == "length":
        return [("Content-Length", str(len(body)))], body
    if kind == "wrong-length":
        return [("Content-Length", str(len(body) + draw(st.integers(1, 5))))], body
    if kind == "bad-length":
        return [("Content-Length", draw(st.sampled_from(["abc", "-1", "1,1", "", "0x10"])))], body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]) if part)
    chunked += b"0\r\n\r\n"
    if kind == "chunked":
        return [("Transfer-Encoding", "chunked")], chunked
    if kind == "bad-chunk":
        return [("Transfer-Encoding", "chunked")], b"zz\r\n" + chunked
    if kind == "both":
        return [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")], chunked
    return [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))], body


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = faulty(draw, good_methods, bad_methods)
    target = faulty(draw, good_targets, bad_targets)
    version = faulty(draw, good_versions, bad_versions)
    items = draw(header_lines())
    if draw(st.integers(0, 9)):
        items.insert(draw(st.integers(0, len(items))), ("Host", "example.com"))
    framed, body = draw(framing())
    lines = [f"{method} {target} {version}", *(f"{n}: {v}" for n, v in [*items, *framed])]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8") + body


@given(requests())
def test_httpserver_accepts_and_refuses_what_h11_does(data: bytes) -> None:
    oracle, ours = h11_outcome(data), server_outcome(data)
    if oracle == ours or our_rules_explain(data, oracle, ours):
        return
    raise AssertionError(f"h11: {oracle}\nHttpServer: {ours}\nrequest: {data!r}")


def test_the_limits_are_the_only_differences_and_they_do_happen() -> None:
    # The named differences are real: without them the property above would fail.
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * MAX_HEADERS + b"\r\n"
    assert h11_outcome(many).kind == "accepted"
    assert server_outcome(many) == Outcome("refused", status=431)
    big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    assert h11_outcome(big).kind == "incomplete"
    assert server_outcome(big) == Outcome("refused", status=413)
    announced = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfff\r\n"
    assert h11_outcome(announced).kind == "incomplete"
    assert server_outcome(announced) == Outcome("refused", status=413)
    future = b"GET / HTTP/2.0\r\n\r\n"
    assert h11_outcome(future).kind == "accepted"
    assert server_outcome(future) == Outcome("refused", status=505)
    both = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert h11_outcome(both).kind == "accepted"
    assert server_outcome(both) == Outcome("refused", status=400)
