"""The opening handshake, sans-IO: no sockets."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection

from ratchetpy import Headers, HttpRequest, RemoteProtocolError
from ratchetpy.protocol.handshake import accept_response, parse_upgrade

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

GOOD = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "keep-alive, Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request(
    headers: list[tuple[str, str]], *, method: str = "GET", version: str = "1.1"
) -> HttpRequest:
    return HttpRequest(
        method=method, target="/chat", headers=Headers(headers), http_version=version
    )


def replace(name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(n, v) for n, v in GOOD if n.lower() != name.lower()]
    return kept if value is None else [*kept, (name, value)]


def test_valid_request() -> None:
    extra = [
        ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ]
    upgrade = parse_upgrade(request(GOOD + extra))
    assert upgrade.key == RFC_KEY
    assert upgrade.subprotocols == ("chat.v2", "chat.v1")
    assert upgrade.extensions == ("permessage-deflate",)


def test_header_names_and_tokens_are_case_insensitive() -> None:
    headers = [
        ("host", "x"),
        ("UPGRADE", "WebSocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", RFC_KEY),
        ("SEC-WEBSOCKET-VERSION", "13"),
    ]
    assert parse_upgrade(request(headers)).key == RFC_KEY


@pytest.mark.parametrize(
    ("headers", "method", "status", "words"),
    [
        (GOOD, "POST", 405, "GET"),
        (replace("Upgrade", None), "GET", 426, "Upgrade: websocket"),
        (replace("Upgrade", "h2c"), "GET", 426, "Upgrade: websocket"),
        (replace("Connection", "keep-alive"), "GET", 400, "Connection: Upgrade"),
        (replace("Host", None), "GET", 400, "Host"),
        (replace("Sec-WebSocket-Version", None), "GET", 400, "Sec-WebSocket-Version"),
        (replace("Sec-WebSocket-Version", "8"), "GET", 426, "speaks 13"),
        (replace("Sec-WebSocket-Key", None), "GET", 400, "Sec-WebSocket-Key"),
        (replace("Sec-WebSocket-Key", "c2hvcnQ="), "GET", 400, "16 bytes"),
        (replace("Sec-WebSocket-Key", "not base64!!"), "GET", 400, "16 bytes"),
        ([*GOOD, ("Sec-WebSocket-Key", RFC_KEY)], "GET", 400, "repeated"),
    ],
)
def test_invalid_requests_say_what_is_wrong(
    headers: list[tuple[str, str]], method: str, status: int, words: str
) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_upgrade(request(headers, method=method))
    assert info.value.http_status == status
    assert words in str(info.value)


def test_http_1_0_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_upgrade(request(GOOD, version="1.0"))
    assert info.value.http_status == 400


def test_accept_response_matches_the_rfc_example() -> None:
    response = accept_response(RFC_KEY, subprotocol="chat", extensions="permessage-deflate")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n".encode() in response
    assert b"Sec-WebSocket-Protocol: chat\r\n" in response
    assert b"Sec-WebSocket-Extensions: permessage-deflate\r\n" in response
    assert response.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Protocol" not in accept_response(RFC_KEY)


def test_accept_token_agrees_with_wsproto() -> None:
    # wsproto as an independent oracle: its server handshake answers the same key the same way.
    server = WSConnection(ConnectionType.SERVER)
    server.initiate_upgrade_connection([(n.encode(), v.encode()) for n, v in GOOD], b"/chat")
    next(server.events())
    theirs = server.send(AcceptConnection())
    ours = accept_response(RFC_KEY)
    accept_line = [
        line for line in theirs.split(b"\r\n") if line.lower().startswith(b"sec-websocket-accept")
    ]
    assert accept_line[0].split(b": ")[1] in ours
