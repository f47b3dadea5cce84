"""The public surface: what ``import ratchetpy`` offers is exactly what is documented."""

import re
from pathlib import Path
from types import ModuleType

import ratchetpy
import ratchetpy.exceptions

EXPECTED = {
    "App",
    "Authenticate",
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnavailable",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "EncodeError",
    "Endpoint",
    "HandshakeRefused",
    "FlaskSession",
    "Group",
    "Headers",
    "HttpComponent",
    "HttpDecorator",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "InvalidSession",
    "InvalidStateError",
    "InvalidUri",
    "IoServer",
    "HostCheck",
    "IpBlackList",
    "LocalProtocolError",
    "MessageComponent",
    "OriginCheck",
    "Page",
    "ProtocolError",
    "ProtocolViolation",
    "PublishEndpoint",
    "PublishError",
    "RatchetError",
    "RedisProtocolError",
    "RedisReplyError",
    "RemoteProtocolError",
    "Route",
    "Router",
    "SerializationError",
    "ServerError",
    "ServerStats",
    "SessionClosed",
    "SessionProvider",
    "StaticFiles",
    "Topic",
    "TrustedProxies",
    "WampCallError",
    "WampComponent",
    "WampConnection",
    "WampError",
    "WampRequestError",
    "WampServer",
    "WsConnection",
    "WsServer",
    "__version__",
    "bearer_token",
    "broadcast",
    "http_response",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(ratchetpy.__all__) == EXPECTED
    assert len(ratchetpy.__all__) == len(EXPECTED)


def test_every_export_exists() -> None:
    for name in ratchetpy.__all__:
        assert getattr(ratchetpy, name) is not None, name


def test_no_unlisted_public_names() -> None:
    # Submodules and subpackages (ratchetpy.protocol, ratchetpy.wamp, ...) become attributes of
    # the package once imported; they are reached by their own name, not exported.
    public = {
        name
        for name in dir(ratchetpy)
        if not name.startswith("_") and not isinstance(getattr(ratchetpy, name), ModuleType)
    }
    assert public <= EXPECTED


def test_every_public_exception_is_in_exceptions_and_at_the_top_level() -> None:
    for name in ratchetpy.exceptions.__all__:
        exc = getattr(ratchetpy.exceptions, name)
        assert issubclass(exc, ratchetpy.RatchetError), name
        assert getattr(ratchetpy, name) is exc, name
    # ... and no other module defines a public one (a parser's private early exit, such as
    # _Fail in the WebSocket codec, never leaves its module).
    for module in _ratchetpy_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("ratchetpy.")
                and not value.__name__.startswith("_")
            ):
                assert value.__module__ == "ratchetpy.exceptions", (
                    f"{value.__qualname__} is defined in {value.__module__}"
                )


def _ratchetpy_modules() -> list[ModuleType]:
    import importlib
    import pkgutil

    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(ratchetpy.__path__, "ratchetpy.")
        if info.name != "ratchetpy.__main__"
    ]


def _tree(text: str) -> list[tuple[int, str]]:
    """The ``(depth, name)`` rows of the exception tree drawn in ``text``."""
    lines = text[text.index("RatchetError") :].split("\n\n", 1)[0].split("```", 1)[0].splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip())  # the root's own line lost its indent
    rows = [(0, "RatchetError")]
    for line in lines[1:]:
        match = re.match(r"([│ ]*)[├└]── (\w+)", line[indent:])
        assert match, f"not a row of the tree: {line!r}"
        rows.append((len(match.group(1)) // 4 + 1, match.group(2)))
    return rows


def test_exception_tree_is_the_class_hierarchy_and_the_reference_page_draws_it() -> None:
    rows = _tree(ratchetpy.exceptions.__doc__ or "")
    documented = [name for _, name in rows]
    assert sorted(documented) == sorted(ratchetpy.exceptions.__all__)
    parents: list[str] = []
    for depth, name in rows:
        del parents[depth:]
        exc = getattr(ratchetpy.exceptions, name)
        if parents:
            assert exc.__bases__ == (getattr(ratchetpy.exceptions, parents[-1]),), name
        parents.append(name)
    page = (Path(__file__).resolve().parents[1] / "docs/reference/exceptions.md").read_text()
    assert _tree(page.split("```text", 1)[1]) == rows


def test_misuse_and_operating_system_failures_are_told_apart() -> None:
    assert not issubclass(ratchetpy.InvalidStateError, ratchetpy.ServerError)
    assert not issubclass(ratchetpy.ServerError, ratchetpy.InvalidStateError)
