"""The sans-IO WAMP v2 message layer: serializers, parse() and to_list(); no sockets."""

from __future__ import annotations

import json
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from ratchetpy.exceptions import (
    EncodeError,
    InvalidUri,
    LocalProtocolError,
    ProtocolViolation,
    RemoteProtocolError,
    SerializationError,
)
from ratchetpy.wamp.messages import (
    ABORT,
    CALL,
    ERROR,
    EVENT,
    GOODBYE,
    HELLO,
    INVALID_URI,
    INVOCATION,
    MAX_ID,
    PROTOCOL_VIOLATION,
    PUBLISH,
    PUBLISHED,
    REGISTER,
    REGISTERED,
    RESULT,
    SUBSCRIBE,
    SUBSCRIBED,
    UNREGISTERED,
    UNSUBSCRIBED,
    WELCOME,
    Abort,
    Call,
    Error,
    Event,
    Goodbye,
    Hello,
    IdGenerator,
    Invocation,
    Message,
    Publish,
    Published,
    Register,
    Registered,
    Result,
    Subscribe,
    Subscribed,
    Unregister,
    Unregistered,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    Yield,
    is_valid_uri,
    parse,
    parse_router_message,
    to_list,
)
from ratchetpy.wamp.serializers import SERIALIZERS, JsonSerializer, MsgpackSerializer, Serializer

JSON = JsonSerializer()
MSGPACK = MsgpackSerializer()
BOTH = pytest.mark.parametrize("ser", [JSON, MSGPACK], ids=["json", "msgpack"])

ROLES: dict[str, Any] = {"roles": {"caller": {}, "subscriber": {"features": {}}}}

# -- serializers ---------------------------------------------------------------------------------


def test_serializers_registry_prefers_json() -> None:
    assert list(SERIALIZERS) == ["wamp.2.json", "wamp.2.msgpack"]
    for name, ser in SERIALIZERS.items():
        assert ser.subprotocol == name
    assert SERIALIZERS["wamp.2.json"].binary is False
    assert SERIALIZERS["wamp.2.msgpack"].binary is True


@BOTH
@pytest.mark.parametrize(
    "message",
    [
        [1, "realm1", ROLES],
        [36, 1, MAX_ID, {}, [1, -1, 2**53, -(2**53), 0.5, True, False, None]],
        [48, 7, {}, "com.example.add", ["héllo", "日本語", "\U0001f600"], {"ключ": "значение"}],
        [36, 1, 2, {}, [b"", b"\x00\xff\x10", {"nested": [b"deep", {"deeper": b"\x01"}]}]],
        [8, 68, 3, {}, "wamp.error.runtime_error", [], {"empty": [], "map": {}}],
    ],
)
def test_round_trip(ser: Serializer, message: list[Any]) -> None:
    data = ser.encode(message)
    assert isinstance(data, bytes) is ser.binary
    assert ser.decode(data) == message


@BOTH
def test_wrong_frame_type_is_refused_with_1003(ser: Serializer) -> None:
    data = ser.encode([1, "realm1", ROLES])
    wrong: str | bytes = data.decode("latin-1") if isinstance(data, bytes) else data.encode()
    with pytest.raises(SerializationError, match="must be") as info:
        ser.decode(wrong)
    assert info.value.close_code == 1003
    assert isinstance(info.value, RemoteProtocolError)


def test_json_wire_format() -> None:
    text = JSON.encode([36, 1, 2, {"a": "é"}, [b"\x00\xff"]])
    assert text == '[36,1,2,{"a":"é"},["\\u0000AP8="]]'
    # Binary strings from a client decode to bytes at any depth, dict keys excepted.
    assert JSON.decode('[1,{"\\u0000k":["\\u0000AP8="]}]') == [1, {"\x00k": [b"\x00\xff"]}]
    # Escaped surrogate pairs (ensure_ascii encoders) are fine.
    assert JSON.decode('["\\ud83d\\ude00"]') == ["\U0001f600"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_json_refuses_to_encode_nan(value: float) -> None:
    with pytest.raises(EncodeError, match="JSON"):
        JSON.encode([36, 1, 2, {}, [{"x": value}]])
    assert MSGPACK.decode(MSGPACK.encode([value])) != []  # msgpack carries them natively


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("[NaN]", "NaN"),
        ("[1, Infinity]", "Infinity"),
        ("[-Infinity]", "Infinity"),
        ("[1e999]", "too large for a double"),  # was parsed as infinity, refused only on encoding
        ("[-1e999]", "too large for a double"),
        (
            '[16, 1, {"acknowledge": true, "acknowledge": false}, "t"]',
            "duplicate key 'acknowledge'",
        ),
        ('{"a": 1}', "array"),
        ('"x"', "array"),
        ("[1,", "invalid JSON"),
        ("", "invalid JSON"),
        ("[1] [2]", "invalid JSON"),
        ('["\\u0000!!!"]', "base64"),
        ('["\\ud800"]', "surrogate"),
        ('[{"\\udfff": 1}]', "surrogate"),
        ("[" * 100_000 + "]" * 100_000, "deeply"),
        ("[" + "9" * 5000 + "]", "invalid JSON"),
    ],
)
def test_json_decode_errors(data: str, match: str) -> None:
    with pytest.raises(SerializationError, match=match) as info:
        JSON.decode(data)
    assert info.value.close_code == 1007


@pytest.mark.parametrize("message", [[{1, 2}], [object()], [{b"key": 1}], ["\ud800"]], ids=repr)
def test_json_encode_errors_are_local(message: list[Any]) -> None:
    with pytest.raises(EncodeError) as info:
        JSON.encode(message)
    assert isinstance(info.value, LocalProtocolError)


def test_json_keeps_what_a_double_holds() -> None:
    assert JSON.decode("[1e308, -2.5e-300, 1E2]") == [1e308, -2.5e-300, 100.0]


def test_msgpack_refuses_a_key_twice_as_json_does() -> None:
    # msgpack.packb cannot build it from a dict; a map header of two pairs does.
    data = b"\x91\x82\xa1a\x01\xa1a\x02"  # [{"a": 1, "a": 2}]
    with pytest.raises(SerializationError, match="duplicate key 'a'") as info:
        MSGPACK.decode(data)
    assert info.value.close_code == 1007


def test_msgpack_keeps_str_and_bytes_apart() -> None:
    data = MSGPACK.encode(["text", b"bin"])
    assert msgpack.unpackb(data, raw=True) == [b"text", b"bin"]
    assert MSGPACK.decode(data) == ["text", b"bin"]


def test_msgpack_timestamp_becomes_int_nanoseconds() -> None:
    data = msgpack.packb([msgpack.Timestamp(1, 5)])
    assert MSGPACK.decode(data) == [1_000_000_005]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (msgpack.packb({"a": 1}), "array"),
        (msgpack.packb("x"), "array"),
        (msgpack.packb([{b"key": 1}]), "strings"),
        (msgpack.packb([{1: 1}]), "invalid msgpack"),
        (msgpack.packb([msgpack.ExtType(5, b"x")]), "extension"),
        (b"\xdd\xff\xff\xff\xff", "invalid msgpack"),  # array of 2**32-1 elements in 5 bytes
        (b"\xdb\xff\xff\xff\xff", "invalid msgpack"),  # str of 4 GiB
        (b"\x91" * 5000 + b"\x01", "deeply"),
        (b"\x92\x01", "invalid msgpack"),  # truncated
        (b"\xc1", "invalid msgpack"),  # reserved byte
        (msgpack.packb([1]) + b"\x01", "extra data"),
        (b"\x91\xa2\xff\xfe", "invalid msgpack"),  # invalid UTF-8 in a str
        (b"", "invalid msgpack"),
    ],
)
def test_msgpack_decode_errors(data: bytes, match: str) -> None:
    with pytest.raises(SerializationError, match=match) as info:
        MSGPACK.decode(data)
    assert info.value.close_code == 1007


@pytest.mark.parametrize("message", [[2**64], [{1, 2}], ["\ud800"]], ids=repr)
def test_msgpack_encode_errors(message: list[Any]) -> None:
    with pytest.raises(EncodeError, match="msgpack"):
        MSGPACK.encode(message)


def test_msgpack_payload_reencodes_as_json() -> None:
    """What a msgpack client publishes must be deliverable to JSON subscribers."""
    payload = [16, 1, {}, "com.t", [b"\x01", "ü", 2**53], {"k": [None, 1.5]}]
    decoded = MSGPACK.decode(MSGPACK.encode(payload))
    assert JSON.decode(JSON.encode(decoded)) == payload


# -- parse: what clients may send ---------------------------------------------------------------

ACCEPTED: list[tuple[list[Any], Message | None]] = [
    ([1, "realm1", ROLES], Hello("realm1", ROLES)),
    ([1, "com.example", {"roles": {"callee": {}, "future": {}}}], None),
    ([3, {"message": "bye"}, "wamp.close.normal"], Abort({"message": "bye"}, "wamp.close.normal")),
    ([6, {}, "wamp.close.close_realm"], Goodbye({}, "wamp.close.close_realm")),
    ([8, 68, 5, {}, "com.err"], Error(INVOCATION, 5, {}, "com.err")),
    ([8, 68, 5, {}, "com.err", [1]], Error(INVOCATION, 5, {}, "com.err", [1])),
    ([8, 68, 5, {}, "com.err", [], {"a": 1}], Error(INVOCATION, 5, {}, "com.err", [], {"a": 1})),
    ([16, 1, {}, "com.topic"], Publish(1, {}, "com.topic")),
    (
        [16, 2, {"acknowledge": True}, "com.topic", [1, 2]],
        Publish(2, {"acknowledge": True}, "com.topic", [1, 2]),
    ),
    ([16, MAX_ID, {}, "t", [], {"x": 1}], Publish(MAX_ID, {}, "t", [], {"x": 1})),
    ([32, 1, {}, "com.topic"], Subscribe(1, {}, "com.topic")),
    ([34, 2, 99], Unsubscribe(2, 99)),
    ([48, 3, {}, "com.proc"], Call(3, {}, "com.proc")),
    ([48, 3, {}, "com.proc", ["a"]], Call(3, {}, "com.proc", ["a"])),
    ([48, 3, {}, "com.proc", ["a"], {"b": 2}], Call(3, {}, "com.proc", ["a"], {"b": 2})),
    ([64, 4, {"invoke": "single"}, "com.proc"], Register(4, {"invoke": "single"}, "com.proc")),
    ([66, 5, 77], Unregister(5, 77)),
    ([70, 6, {}], Yield(6, {})),
    ([70, 6, {}, [True]], Yield(6, {}, [True])),
    ([70, 6, {}, [], {"r": None}], Yield(6, {}, [], {"r": None})),
    # Loose URI rule: anything but whitespace, '#' and '.' inside a component.
    ([32, 1, {}, "Com.Ex-ample:8080/x.ü"], Subscribe(1, {}, "Com.Ex-ample:8080/x.ü")),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED, ids=lambda v: repr(v)[:40])
def test_parse_accepts(raw: list[Any], expected: Message | None) -> None:
    message = parse(raw)
    if expected is not None:
        assert message == expected
    assert raw[0] == message.TYPE
    # Re-serializing gives back the same wire form (empty tails were absent or are dropped).
    wire = to_list(message)
    assert wire == raw[: len(wire)] and all(not x for x in raw[len(wire) :])


REJECTED: list[tuple[object, str]] = [
    # not a message
    ({}, "must be a list"),
    ("[1]", "must be a list"),
    ((1, "realm1", ROLES), "must be a list"),
    ([], "empty"),
    (["1", "realm1", ROLES], "type must be an int"),
    ([1.0, "realm1", ROLES], "type must be an int"),
    ([True, "realm1", ROLES], "type must be an int"),
    ([999, 1], "unknown message type"),
    ([0], "unknown message type"),
    ([-1], "unknown message type"),
    ([49, 1, {}], "Advanced Profile"),
    ([5, "sig", {}], "Advanced Profile"),
    # router-only messages
    ([2, 1, {}], "sent by routers"),
    ([17, 1, 2], "sent by routers"),
    ([33, 1, 2], "sent by routers"),
    ([35, 1], "sent by routers"),
    ([36, 1, 2, {}], "sent by routers"),
    ([50, 1, {}], "sent by routers"),
    ([65, 1, 2], "sent by routers"),
    ([67, 1], "sent by routers"),
    ([68, 1, 2, {}], "sent by routers"),
    # lengths
    ([1, "realm1"], "3 elements, got 2"),
    ([1, "realm1", ROLES, {}], "3 elements, got 4"),
    ([32, 1, {}, "t", []], "4 elements, got 5"),
    ([16, 1, {}, "t", [], {}, []], "4 to 6 elements, got 7"),
    ([16, 1, {}], "4 to 6 elements, got 3"),
    ([34, 1], "3 elements"),
    ([70, 1, {}, [], {}, 1], "3 to 5 elements"),
    ([8, 68, 1, {}], "5 to 7 elements"),
    # ids
    ([32, 0, {}, "t"], "Request must be an int"),
    ([32, -5, {}, "t"], "Request must be an int"),
    ([32, MAX_ID + 1, {}, "t"], "Request must be an int"),
    ([32, True, {}, "t"], r"True \(bool\)"),
    ([32, 1.0, {}, "t"], "Request must be an int"),
    ([32, "1", {}, "t"], "Request must be an int"),
    ([32, None, {}, "t"], "Request must be an int"),
    ([34, 1, False], "Subscription must be an int"),
    ([66, 1, 0], "Registration must be an int"),
    ([70, 2**64, {}], "INVOCATION.Request must be an int"),
    # dicts and lists
    ([32, 1, [], "t"], "Options must be a dict"),
    ([48, 1, None, "p"], "Options must be a dict"),
    ([48, 1, {1: 2}, "p"], "keys must be strings"),
    ([6, [], "wamp.close.normal"], "Details must be a dict"),
    ([48, 1, {}, "p", {"a": 1}], "Arguments must be a list"),
    ([48, 1, {}, "p", (1,)], "Arguments must be a list"),
    ([48, 1, {}, "p", [], []], "ArgumentsKw must be a dict"),
    ([16, 1, {}, "t", None, {}], "Arguments must be a list"),
    ([70, 1, {}, [], {b"k": 1}], "keys must be strings"),
    # HELLO roles
    ([1, "realm1", {}], "roles"),
    ([1, "realm1", {"roles": {}}], "roles"),
    ([1, "realm1", {"roles": {"broker": {}}}], "roles"),
    ([1, "realm1", {"roles": ["caller"]}], "roles"),
    ([1, "realm1", {"roles": {"caller": True}}], "features"),
    # ERROR only for INVOCATION
    ([8, CALL, 1, {}, "com.err"], "only in reply to an INVOCATION"),
    ([8, True, 1, {}, "com.err"], "only in reply to an INVOCATION"),
    ([8, "68", 1, {}, "com.err"], "only in reply to an INVOCATION"),
    # URI types and unanswerable URIs (plain violations)
    ([32, 1, {}, 5], "Topic must be a URI string"),
    ([48, 1, {}, None], "Procedure must be a URI string"),
    ([1, b"realm1", ROLES], "Realm must be a URI string"),
    ([3, {}, "bad reason"], "Reason is not a valid URI"),
    ([6, {}, ""], "Reason is not a valid URI"),
    ([8, 68, 1, {}, "com..err"], "Error is not a valid URI"),
    # a bad URI together with a bad field is a plain violation, not InvalidUri
    ([32, 0, {}, "bad uri"], "Request must be an int"),
    ([48, 1, {}, "bad uri", "args"], "Arguments must be a list"),
]


@pytest.mark.parametrize(("raw", "match"), REJECTED, ids=lambda v: repr(v)[:40])
def test_parse_rejects(raw: object, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match) as info:
        parse(raw)
    assert type(info.value) is ProtocolViolation
    assert info.value.error == PROTOCOL_VIOLATION
    assert info.value.reason == str(info.value)
    assert isinstance(info.value, RemoteProtocolError)


BAD_URIS = ["", ".", "a.", ".a", "a..b", "a b", "a\tb", "a#b", "a.#", " a", "a\n", "com.ü. x"]


@pytest.mark.parametrize("uri", BAD_URIS)
@pytest.mark.parametrize(
    ("build", "code", "request_id"),
    [
        (lambda uri: [HELLO, uri, ROLES], HELLO, None),
        (lambda uri: [PUBLISH, 11, {}, uri, [1], {"k": 2}], PUBLISH, 11),
        (lambda uri: [SUBSCRIBE, 12, {}, uri], SUBSCRIBE, 12),
        (lambda uri: [CALL, 13, {}, uri], CALL, 13),
        (lambda uri: [REGISTER, 14, {}, uri], REGISTER, 14),
    ],
    ids=["hello", "publish", "subscribe", "call", "register"],
)
def test_invalid_uri_is_answerable(build: Any, code: int, request_id: int | None, uri: str) -> None:
    with pytest.raises(InvalidUri, match="not a valid URI") as info:
        parse(build(uri))
    exc = info.value
    assert isinstance(exc, ProtocolViolation)
    assert (exc.error, exc.uri, exc.request_type, exc.request_id) == (
        INVALID_URI,
        uri,
        code,
        request_id,
    )


def test_is_valid_uri() -> None:
    assert is_valid_uri("com.myapp.topic1")
    assert is_valid_uri("Com.My-App.ü", strict=False)
    assert not is_valid_uri("Com.My-App", strict=True)
    assert is_valid_uri("com.my_app.v2", strict=True)
    assert not is_valid_uri(None)
    for uri in BAD_URIS:
        assert not is_valid_uri(uri)
        assert not is_valid_uri(uri, strict=True)


def test_parse_keeps_long_values_out_of_the_message() -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse([32, "x" * 100_000, {}, "t"])
    assert len(str(info.value)) < 200


# -- to_list ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (Welcome(7, {"roles": {"broker": {}}}), [2, 7, {"roles": {"broker": {}}}]),
        (Abort({}, "wamp.error.no_such_realm"), [3, {}, "wamp.error.no_such_realm"]),
        (Goodbye({}, "wamp.close.goodbye_and_out"), [6, {}, "wamp.close.goodbye_and_out"]),
        (Error(CALL, 1, {}, "e.x"), [8, 48, 1, {}, "e.x"]),
        (Error(CALL, 1, {}, "e.x", [1]), [8, 48, 1, {}, "e.x", [1]]),
        (Error(CALL, 1, {}, "e.x", [], {"a": 1}), [8, 48, 1, {}, "e.x", [], {"a": 1}]),
        (Error(CALL, 1, {}, "e.x", [1], {}), [8, 48, 1, {}, "e.x", [1]]),
        (Published(1, 2), [17, 1, 2]),
        (Subscribed(1, 2), [33, 1, 2]),
        (Unsubscribed(1), [35, 1]),
        (Event(1, 2, {}), [36, 1, 2, {}]),
        (Event(1, 2, {}, [0]), [36, 1, 2, {}, [0]]),
        (Event(1, 2, {}, [], {"k": 0}), [36, 1, 2, {}, [], {"k": 0}]),
        (Result(1, {}), [50, 1, {}]),
        (Result(1, {}, [None], {"k": 0}), [50, 1, {}, [None], {"k": 0}]),
        (Registered(1, 2), [65, 1, 2]),
        (Unregistered(1), [67, 1]),
        (Invocation(1, 2, {}), [68, 1, 2, {}]),
        (Invocation(1, 2, {}, [], {}), [68, 1, 2, {}]),
        (Invocation(1, 2, {}, ["a"], {"b": 1}), [68, 1, 2, {}, ["a"], {"b": 1}]),
        (Publish(1, {}, "t", [], {}), [16, 1, {}, "t"]),
        (Call(1, {}, "p", [1]), [48, 1, {}, "p", [1]]),
        (Yield(1, {}, [], {"x": 1}), [70, 1, {}, [], {"x": 1}]),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_to_list(message: Message, wire: list[Any]) -> None:
    assert to_list(message) == wire
    assert wire[0] == message.TYPE
    assert JSON.decode(JSON.encode(to_list(message))) == wire


def test_messages_are_frozen() -> None:
    message = Subscribe(1, {}, "t")
    with pytest.raises(AttributeError):
        message.topic = "u"  # type: ignore[misc]


def test_error_is_json_compatible_with_the_spec_example() -> None:
    """The spec's example ERROR from a callee, as a browser would send it."""
    raw = '[8, 68, 6131533, {}, "com.myapp.error.object_write_protected", ["Object is RO"]]'
    message = parse(JSON.decode(raw))
    assert message == Error(
        INVOCATION, 6131533, {}, "com.myapp.error.object_write_protected", ["Object is RO"]
    )
    assert json.loads(JSON.encode(to_list(message))) == json.loads(raw)
    assert message.TYPE == ERROR


# -- ids ------------------------------------------------------------------------------------------


def test_session_scope_ids_are_sequential_and_wrap() -> None:
    gen = IdGenerator()
    assert [gen.next() for _ in range(3)] == [1, 2, 3]
    other = IdGenerator()
    assert other.next() == 1  # one sequence per session
    gen._last = MAX_ID - 1
    assert [gen.next(), gen.next(), gen.next()] == [MAX_ID, 1, 2]


def test_global_scope_ids_are_random_in_range_and_avoid_live_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = [IdGenerator.random() for _ in range(20)]
    assert all(1 <= v <= MAX_ID for v in values)
    assert len(set(values)) == 20
    draws = iter([4, 0, 4, MAX_ID - 1, 9])  # randbelow gives [0, 2**53); ids are that + 1
    monkeypatch.setattr("secrets.randbelow", lambda n: next(draws))
    assert IdGenerator.random({5, 1}) == MAX_ID
    assert IdGenerator.random() == 10


# -- what a router sends (read by ratchetpy.client) ----------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([WELCOME, 5, {"roles": {}}], Welcome(5, {"roles": {}})),
        ([PUBLISHED, 1, 2], Published(1, 2)),
        ([SUBSCRIBED, 1, 2], Subscribed(1, 2)),
        ([UNSUBSCRIBED, 1], Unsubscribed(1)),
        ([EVENT, 1, 2, {}], Event(1, 2, {})),
        ([EVENT, 1, 2, {}, ["a"], {"k": 1}], Event(1, 2, {}, ["a"], {"k": 1})),
        ([RESULT, 1, {}, [3]], Result(1, {}, [3])),
        ([REGISTERED, 1, 9], Registered(1, 9)),
        ([UNREGISTERED, 1], Unregistered(1)),
        ([INVOCATION, 1, 9, {}, [1, 2]], Invocation(1, 9, {}, [1, 2])),
        (
            [ERROR, CALL, 1, {}, "wamp.error.no_such_procedure"],
            Error(CALL, 1, {}, "wamp.error.no_such_procedure"),
        ),
        ([ABORT, {}, "wamp.error.no_such_realm"], Abort({}, "wamp.error.no_such_realm")),
        ([GOODBYE, {}, "wamp.close.system_shutdown"], Goodbye({}, "wamp.close.system_shutdown")),
    ],
)
def test_parse_router_message_accepts(raw: list[Any], expected: Message) -> None:
    assert parse_router_message(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([SUBSCRIBED, 1, 0], r"Subscription must be an int in \[1, 2\*\*53\]"),
        ([EVENT, 1, MAX_ID + 1, {}], "Publication must be an int"),
        ([EVENT, "1", 2, {}], "Subscription must be an int"),
        ([RESULT, 1, {}, "not a list"], "Arguments must be a list"),
        ([ERROR, INVOCATION, 1, {}, "wamp.error.x"], "a router answers SUBSCRIBE"),
        ([ERROR, CALL, 1, {}, "not a uri "], "not a valid URI"),
        ([WELCOME, 1, {}, "extra"], "WELCOME must have 3 elements"),
        ([HELLO, "realm1", {}], "sent by clients, not routers"),
        ([99, 1], "unknown message type"),
        ([], "must not be empty"),
    ],
)
def test_parse_router_message_rejects(raw: object, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match):
        parse_router_message(raw)


@pytest.mark.parametrize("bad_id", [0, -1, MAX_ID + 1, True, 1.0, "1"])
def test_both_directions_apply_one_rule_for_ids(bad_id: object) -> None:
    # The router's parse() and the client's parse_router_message() share their validators,
    # so an id the router refuses from a client is one the client refuses from a router.
    with pytest.raises(ProtocolViolation, match=r"must be an int in \[1, 2\*\*53\]"):
        parse([SUBSCRIBE, bad_id, {}, "t"])
    with pytest.raises(ProtocolViolation, match=r"must be an int in \[1, 2\*\*53\]"):
        parse_router_message([SUBSCRIBED, bad_id, 1])
