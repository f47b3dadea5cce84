"""The public surface: what ``import ratchetpy`` offers is exactly what is documented."""

from types import ModuleType

import ratchetpy

EXPECTED = {
    "App",
    "Authenticate",
    "AuthenticationFailed",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "Endpoint",
    "FlaskSession",
    "Headers",
    "HttpComponent",
    "HttpDecorator",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "InvalidSession",
    "IoServer",
    "IpBlackList",
    "LocalProtocolError",
    "MessageComponent",
    "OriginCheck",
    "Page",
    "PublishEndpoint",
    "ProtocolError",
    "RatchetError",
    "RemoteProtocolError",
    "Route",
    "Router",
    "ServerError",
    "ServerStats",
    "SessionProvider",
    "StaticFiles",
    "Topic",
    "TrustedProxies",
    "WampComponent",
    "WampConnection",
    "WampError",
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


def test_exception_tree() -> None:
    assert issubclass(ratchetpy.ProtocolError, ratchetpy.RatchetError)
    assert issubclass(ratchetpy.RemoteProtocolError, ratchetpy.ProtocolError)
    assert issubclass(ratchetpy.LocalProtocolError, ratchetpy.ProtocolError)
    assert issubclass(ratchetpy.ConnectionClosed, ratchetpy.RatchetError)
    assert issubclass(ratchetpy.ServerError, ratchetpy.RatchetError)
    assert issubclass(ratchetpy.AuthenticationFailed, ratchetpy.RatchetError)
    assert issubclass(ratchetpy.InvalidSession, ratchetpy.RatchetError)
    assert issubclass(ratchetpy.WampError, ratchetpy.RatchetError)
