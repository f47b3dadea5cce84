"""Router: path patterns, methods and hosts, resolved without sockets."""

from __future__ import annotations

import pytest

from ratchetpy import HttpComponent, HttpRequest, HttpResponse, Page, Route, Router
from ratchetpy.testing import http_request


class Named(HttpComponent):
    def __init__(self, name: str) -> None:
        self.name = name


def resolved(router: Router, req: HttpRequest) -> tuple[str, dict[str, str]]:
    found = router.resolve(req)
    assert not isinstance(found, HttpResponse), found
    route, params = found
    assert isinstance(route.component, Named)
    return route.component.name, params


def refused(router: Router, req: HttpRequest) -> HttpResponse:
    found = router.resolve(req)
    assert isinstance(found, HttpResponse), found
    return found


@pytest.fixture
def router() -> Router:
    router = Router({"/": Named("home"), "/chat": Named("chat")})
    router.add("/rooms/{room}", Named("room"))
    router.add("/rooms/{room}/users/{user}", Named("user"))
    router.add("/assets/{path:path}", Named("assets"))
    router.add("/api", Named("api-get"), methods=["GET"])
    router.add("/api", Named("api-post"), methods=["POST"])
    router.add("/admin", Named("admin"), http_host="admin.example.com")
    router.add("/wild", Named("wild"), http_host="*.example.com")
    return router


@pytest.mark.parametrize(
    ("path", "name", "params"),
    [
        ("/", "home", {}),
        ("/chat", "chat", {}),
        ("/chat?x=1", "chat", {}),
        ("/ch%61t", "chat", {}),
        ("/rooms/lobby", "room", {"room": "lobby"}),
        ("/rooms/caf%C3%A9", "room", {"room": "café"}),
        ("/rooms/a%2Fb", "room", {"room": "a/b"}),
        ("/rooms/lobby/users/ann", "user", {"room": "lobby", "user": "ann"}),
        ("/assets/css/site.css", "assets", {"path": "css/site.css"}),
        ("/assets/", "assets", {"path": ""}),
    ],
)
def test_paths_and_parameters(router: Router, path: str, name: str, params: dict[str, str]) -> None:
    assert resolved(router, http_request(path)) == (name, params)


@pytest.mark.parametrize(
    "path", ["/nope", "/rooms", "/rooms/", "/rooms/a/b", "/chat/", "/rooms//users/x"]
)
def test_unknown_paths_get_404_naming_the_path(router: Router, path: str) -> None:
    response = refused(router, http_request(path))
    assert response.status == 404
    assert f"no route for {path.partition('?')[0]}".encode() in bytes(response.body)


def test_wrong_method_gets_405_with_allow(router: Router) -> None:
    assert resolved(router, http_request("/api", method="POST"))[0] == "api-post"
    assert resolved(router, http_request("/api", method="HEAD"))[0] == "api-get"
    response = refused(router, http_request("/api", method="DELETE"))
    assert response.status == 405
    assert dict(response.headers)["Allow"] == "GET, HEAD, POST"
    assert b"DELETE is not allowed for /api" in bytes(response.body)


def test_hosts(router: Router) -> None:
    assert resolved(router, http_request("/admin", host="admin.example.com:8080"))[0] == "admin"
    response = refused(router, http_request("/admin", host="example.com"))
    assert response.status == 404
    assert b"served for host admin.example.com" in bytes(response.body)
    assert resolved(router, http_request("/wild", host="a.example.com"))[0] == "wild"
    assert refused(router, http_request("/wild", host="example.com")).status == 404
    assert refused(router, http_request("/wild", host="evilexample.com")).status == 404


def test_exact_routes_win_over_patterns() -> None:
    router = Router()
    router.add("/{anything:path}", Named("catch-all"))
    router.add("/chat", Named("chat"))
    assert resolved(router, http_request("/chat"))[0] == "chat"
    assert resolved(router, http_request("/other/x"))[0] == "catch-all"


def test_adding_the_same_route_replaces_it() -> None:
    router = Router()
    router.add("/x", Named("first"))
    router.add("/x", Named("second"))
    assert resolved(router, http_request("/x"))[0] == "second"
    assert len(router.routes) == 1


@pytest.mark.parametrize("path", ["chat", "/a/{b", "/a/{1x}", "/{rest:path}/more", "/{x:int}"])
def test_bad_route_patterns_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        Router().add(path, Named("x"))


def test_component_methods_are_used_by_default() -> None:
    router = Router({"/": Page("x")})
    assert router.routes[0] == Route("/", router.routes[0].component, frozenset({"GET", "HEAD"}))
    assert refused(router, http_request("/", method="POST")).status == 405


def test_a_path_that_is_not_utf8_is_a_400(router: Router) -> None:
    response = refused(router, http_request("/rooms/%FF"))
    assert response.status == 400 and b"not valid UTF-8" in bytes(response.body)


def test_an_encoded_slash_does_not_reach_an_exact_route() -> None:
    router = Router({"/a/b": Named("exact")})
    router.add("/a/{name}", Named("param"))
    assert resolved(router, http_request("/a/b"))[0] == "exact"
    assert refused(router, http_request("/a%2Fb")).status == 404
    assert resolved(router, http_request("/a/b%2Fc")) == ("param", {"name": "b/c"})
