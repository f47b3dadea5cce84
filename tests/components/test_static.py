"""StaticFiles without sockets: call on_open with a request and look at the HttpResponse."""

from __future__ import annotations

import email.utils
import errno
import os
from pathlib import Path

import pytest

from ratchetpy import HttpRequest
from ratchetpy.components.static import StaticFiles
from ratchetpy.protocol.http import HttpResponse
from ratchetpy.testing import RecordingConnection, http_request

SECRET = b"TOP SECRET"


def serve(app: StaticFiles, req: HttpRequest) -> HttpResponse:
    conn = RecordingConnection()
    response = app.on_open(conn, req)
    assert isinstance(response, HttpResponse)
    # The answer is returned: the component neither writes it nor closes the connection.
    assert conn.sent == [] and conn.closes == []
    return response


def body(response: HttpResponse) -> bytes:
    assert isinstance(response.body, bytes)  # HttpResponse encodes a str body
    return response.body


def header(response: HttpResponse, name: str) -> str | None:
    values = [value for key, value in response.headers if key.lower() == name.lower()]
    assert len(values) <= 1, values
    return values[0] if values else None


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """tmp_path/public is served; tmp_path/secret.txt lies next to it, outside."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    public = tmp_path / "public"
    public.mkdir()
    (public / "index.html").write_text("<h1>home</h1>")
    (public / "app.js").write_text("console.log(1)")
    (public / "mod.mjs").write_text("export {}")
    (public / "data.json").write_text("{}")
    (public / "logo.svg").write_text("<svg/>")
    (public / "site.css").write_text("body{}")
    (public / "notes.txt").write_text("hi")
    (public / "app.wasm").write_bytes(b"\0asm")
    (public / "blob.unknownext").write_bytes(b"\x01")
    (public / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (public / "space name.txt").write_text("spaced")
    (public / "%2e%2e").write_text("literal name")
    docs = public / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<h1>docs</h1>")
    (docs / "page.html").write_text("<h1>page</h1>")
    (public / "empty").mkdir()
    return public


# -- serving --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.svg", "image/svg+xml"),
        ("site.css", "text/css; charset=utf-8"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("app.wasm", "application/wasm"),
        ("blob.unknownext", "application/octet-stream"),
        ("archive.tar.gz", "application/octet-stream"),
    ],
)
def test_content_types(site: Path, name: str, content_type: str) -> None:
    response = serve(StaticFiles(site), http_request(f"/{name}"))
    assert response.status == 200
    assert response.content_type == content_type
    assert response.body == (site / name).read_bytes()
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert header(response, "Cache-Control") == "no-cache"
    assert header(response, "Accept-Ranges") == "none"


def test_path_param_is_used_instead_of_the_request_path(site: Path) -> None:
    req = http_request("/assets/docs/page.html", path_params={"path": "docs/page.html"})
    response = serve(StaticFiles(site), req)
    assert response.status == 200
    assert response.body == b"<h1>page</h1>"


def test_request_path_is_percent_decoded(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/space%20name.txt?x=1"))
    assert response.status == 200
    assert response.body == b"spaced"


def test_path_param_is_not_decoded_twice(site: Path) -> None:
    req = http_request("/assets/%252e%252e", path_params={"path": "%2e%2e"})
    response = serve(StaticFiles(site), req)
    assert response.status == 200
    assert response.body == b"literal name"


def test_max_age(site: Path) -> None:
    response = serve(StaticFiles(site, max_age=3600), http_request("/app.js"))
    assert header(response, "Cache-Control") == "public, max-age=3600"


def test_head_keeps_the_body_for_content_length(site: Path) -> None:
    # HttpServer leaves the body out on the wire but needs it to say Content-Length.
    response = serve(StaticFiles(site), http_request("/app.js", method="HEAD"))
    assert response.status == 200
    assert response.body == b"console.log(1)"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405(site: Path, method: str) -> None:
    response = serve(StaticFiles(site), http_request("/app.js", method=method))
    assert response.status == 405
    assert header(response, "Allow") == "GET, HEAD"
    assert method.encode() in body(response)


def test_methods_attribute_for_the_router(site: Path) -> None:
    assert StaticFiles(site).methods == ("GET", "HEAD")


def test_range_is_answered_with_the_whole_file(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/app.js", headers=[("Range", "bytes=0-3")]))
    assert response.status == 200
    assert response.body == b"console.log(1)"


# -- directories ----------------------------------------------------------------------------


def test_root_serves_index(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/"))
    assert response.status == 200
    assert response.body == b"<h1>home</h1>"
    assert response.content_type == "text/html; charset=utf-8"


def test_subdirectory_with_slash_serves_its_index(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/docs/"))
    assert response.status == 200
    assert response.body == b"<h1>docs</h1>"


def test_custom_index(site: Path) -> None:
    response = serve(StaticFiles(site, index="page.html"), http_request("/docs/"))
    assert response.body == b"<h1>page</h1>"


@pytest.mark.parametrize(
    ("target", "params", "location"),
    [
        ("/docs", None, "/docs/"),
        ("/docs?lang=en", None, "/docs/?lang=en"),
        ("/assets/docs", {"path": "docs"}, "/assets/docs/"),
        ("/assets", {"path": ""}, "/assets/"),
        ("/assets/d%20ocs", {"path": "docs"}, "/assets/d%20ocs/"),
    ],
)
def test_directory_without_slash_redirects(
    site: Path, target: str, params: dict[str, str] | None, location: str
) -> None:
    req = http_request(target, path_params=params, host="evil.example")
    response = serve(StaticFiles(site), req)
    assert response.status == 301
    assert header(response, "Location") == location
    assert b"evil" not in body(response)


def test_redirect_cannot_point_at_another_host(site: Path) -> None:
    # A router might hand over a path with several leading slashes; "//x/" would be a
    # protocol-relative URL to host x. Backslashes are read as slashes by browsers.
    req = http_request("//evil.example\\docs", path_params={"path": "docs"})
    response = serve(StaticFiles(site), req)
    location = header(response, "Location")
    assert location == "/evil.example%5Cdocs/"


def test_directory_without_index_is_404(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/empty/"))
    assert response.status == 404
    assert b"/empty/ has no index.html" in body(response)


def test_index_none_means_no_directories(site: Path) -> None:
    response = serve(StaticFiles(site, index=None), http_request("/docs/"))
    assert response.status == 404


def test_file_with_trailing_slash_is_404(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/app.js/"))
    assert response.status == 404


def test_missing_file_is_404_naming_the_path(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/nope/missing.css"))
    assert response.status == 404
    assert b"/nope/missing.css" in body(response)
    assert header(response, "X-Content-Type-Options") == "nosniff"


def test_missing_under_a_file_is_404(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/app.js/more"))
    assert response.status == 404


# -- conditional requests -------------------------------------------------------------------


def test_validators(site: Path) -> None:
    response = serve(StaticFiles(site), http_request("/app.js"))
    etag = header(response, "ETag")
    assert etag is not None and etag.startswith('W/"')
    modified = header(response, "Last-Modified")
    assert modified is not None
    mtime = (site / "app.js").stat().st_mtime
    assert email.utils.parsedate_to_datetime(modified).timestamp() == int(mtime)


def test_etag_changes_with_the_file(site: Path) -> None:
    app = StaticFiles(site)
    before = header(serve(app, http_request("/app.js")), "ETag")
    (site / "app.js").write_text("console.log(22)")
    os.utime(site / "app.js", ns=(1, 10**18))
    after = header(serve(app, http_request("/app.js")), "ETag")
    assert before != after


@pytest.mark.parametrize("form", ["{etag}", "{strong}", '"x", {etag}', "*", '"x",{etag}'])
def test_if_none_match_gives_304(site: Path, form: str) -> None:
    app = StaticFiles(site)
    etag = header(serve(app, http_request("/app.js")), "ETag")
    assert etag is not None
    value = form.format(etag=etag, strong=etag.removeprefix("W/"))
    response = serve(app, http_request("/app.js", headers=[("If-None-Match", value)]))
    assert response.status == 304
    assert response.body == b""
    assert header(response, "ETag") == etag
    assert header(response, "Cache-Control") == "no-cache"


def test_if_none_match_mismatch_gives_200_even_if_not_modified_since(site: Path) -> None:
    # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
    headers = [
        ("If-None-Match", 'W/"something-else"'),
        ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ]
    response = serve(StaticFiles(site), http_request("/app.js", headers=headers))
    assert response.status == 200


def test_if_modified_since(site: Path) -> None:
    app = StaticFiles(site)
    modified = header(serve(app, http_request("/app.js")), "Last-Modified")
    assert modified is not None
    same = serve(app, http_request("/app.js", headers=[("If-Modified-Since", modified)]))
    assert same.status == 304
    assert same.body == b""
    old = "Mon, 01 Jan 1990 00:00:00 GMT"
    assert serve(app, http_request("/app.js", headers=[("If-Modified-Since", old)])).status == 200


@pytest.mark.parametrize("garbage", ["yesterday", "", "Mon, 99 Foo 2020 99:99:99 GMT"])
def test_unreadable_if_modified_since_is_ignored(site: Path, garbage: str) -> None:
    response = serve(
        StaticFiles(site), http_request("/app.js", headers=[("If-Modified-Since", garbage)])
    )
    assert response.status == 200


def test_conditional_head(site: Path) -> None:
    app = StaticFiles(site)
    etag = header(serve(app, http_request("/app.js")), "ETag")
    assert etag is not None
    req = http_request("/app.js", method="HEAD", headers=[("If-None-Match", etag)])
    assert serve(app, req).status == 304


# -- escaping the root ----------------------------------------------------------------------

# (request target, path_params or None, expected status)
NASTY: list[tuple[str, dict[str, str] | None, int]] = [
    ("/../secret.txt", None, 400),
    ("/docs/../../secret.txt", None, 400),
    ("/%2e%2e/secret.txt", None, 400),
    ("/%2E%2E/secret.txt", None, 400),
    ("/.%2e/secret.txt", None, 400),
    ("/..%2fsecret.txt", None, 400),
    ("/%2e%2e%2fsecret.txt", None, 400),
    ("/docs/..%2F..%2Fsecret.txt", None, 400),
    ("/..%5csecret.txt", None, 400),
    ("/..\\secret.txt", None, 400),
    ("/%5c..%5csecret.txt", None, 400),
    ("/index.html%00.png", None, 400),
    ("/%00", None, 400),
    ("//etc/passwd", None, 400),
    ("/%2fetc%2fpasswd", None, 400),
    ("/C:/Windows/win.ini", None, 400),
    ("/c:%5cwindows%5cwin.ini", None, 400),
    ("/index.html::$DATA", None, 400),
    ("/./index.html", None, 400),
    ("/docs//index.html", None, 400),
    ("/%c0%ae%c0%ae/secret.txt", None, 400),  # overlong UTF-8 for ".."
    ("/%252e%252e/secret.txt", None, 404),  # decoded once: a literal "%2e%2e" directory
    ("/\u2025/secret.txt", None, 404),  # a "two dot leader" is just a character
    ("/evil", None, 403),  # symlink to the secret file
    ("/etc-link/passwd", None, 403),  # symlink to /etc
    ("/etc-link/", None, 403),
    ("/assets/x", {"path": "../secret.txt"}, 400),
    ("/assets/x", {"path": "/etc/passwd"}, 400),
    ("/assets/x", {"path": "docs/../../secret.txt"}, 400),
    ("/assets/x", {"path": "..\\secret.txt"}, 400),
    ("/assets/x", {"path": "ok\x00/../../secret.txt"}, 400),
    ("/assets/x", {"path": "evil"}, 403),
    ("relative/secret.txt", None, 400),
]


@pytest.fixture
def trap(site: Path) -> Path:
    (site / "evil").symlink_to(site.parent / "secret.txt")
    (site / "etc-link").symlink_to("/etc")
    return site


@pytest.mark.parametrize(("target", "params", "status"), NASTY)
def test_traversal_is_refused(
    trap: Path, target: str, params: dict[str, str] | None, status: int
) -> None:
    response = serve(StaticFiles(trap), http_request(target, path_params=params))
    assert response.status == status, response.body
    assert SECRET not in body(response)
    assert b"root:" not in body(response)


def test_symlink_inside_the_root_is_served(site: Path) -> None:
    (site / "alias.js").symlink_to("app.js")
    (site / "docs-alias").symlink_to(site / "docs")
    (site / "alias.txt").symlink_to("app.js")
    app = StaticFiles(site)
    assert serve(app, http_request("/alias.js")).body == b"console.log(1)"
    # The type follows the name in the URL, not the link's target.
    assert serve(app, http_request("/alias.txt")).content_type == "text/plain; charset=utf-8"
    assert serve(app, http_request("/docs-alias/page.html")).body == b"<h1>page</h1>"


def test_index_symlink_leaving_the_root_is_refused(site: Path) -> None:
    (site / "empty" / "index.html").symlink_to(site.parent / "secret.txt")
    response = serve(StaticFiles(site), http_request("/empty/"))
    assert response.status == 403
    assert SECRET not in body(response)


def test_follow_symlinks_serves_links_leaving_the_root(trap: Path) -> None:
    response = serve(StaticFiles(trap, follow_symlinks=True), http_request("/evil"))
    assert response.status == 200
    assert response.body == SECRET


def test_follow_symlinks_still_refuses_dot_dot(trap: Path) -> None:
    response = serve(StaticFiles(trap, follow_symlinks=True), http_request("/../secret.txt"))
    assert response.status == 400


def test_root_given_through_a_symlink(site: Path, tmp_path: Path) -> None:
    link = tmp_path / "public-link"
    link.symlink_to(site)
    assert serve(StaticFiles(link), http_request("/app.js")).status == 200


def test_sibling_directory_with_common_prefix_is_outside(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    private = tmp_path / "www-private"
    private.mkdir()
    (private / "key").write_bytes(SECRET)
    (root / "key").symlink_to(private / "key")
    response = serve(StaticFiles(root), http_request("/key"))
    assert response.status == 403


# -- files that may not be served -----------------------------------------------------------


def test_fifo_is_refused_without_blocking(site: Path) -> None:
    os.mkfifo(site / "pipe")
    response = serve(StaticFiles(site), http_request("/pipe"))
    assert response.status == 403


def test_unreadable_file_is_403(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, where chmod 000 does not stop reading: fake the refusal.
    real_open = os.open

    def refuse(path: str, flags: int, *args: int) -> int:
        if path.endswith("app.js"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    response = serve(StaticFiles(site), http_request("/app.js"))
    assert response.status == 403
    assert b"/app.js" in body(response)


def test_symlink_swapped_in_after_the_check_is_refused(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def looping(path: str, flags: int, *args: int) -> int:
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", path)

    monkeypatch.setattr(os, "open", looping)
    assert serve(StaticFiles(site), http_request("/app.js")).status == 403


def test_other_read_errors_are_500(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str, flags: int, *args: int) -> int:
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(os, "open", broken)
    response = serve(StaticFiles(site), http_request("/app.js"))
    assert response.status == 500
    assert b"/app.js" in body(response)


def test_big_file_is_refused(site: Path) -> None:
    (site / "big.bin").write_bytes(b"x" * 11)
    (site / "fits.bin").write_bytes(b"x" * 10)
    app = StaticFiles(site, max_file_size=10)
    refused = serve(app, http_request("/big.bin"))
    assert refused.status == 403
    assert b"11 bytes" in body(refused)
    assert b"limit of 10 bytes" in body(refused)
    assert serve(app, http_request("/fits.bin")).status == 200


# -- configuration --------------------------------------------------------------------------


def test_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing"):
        StaticFiles(tmp_path / "missing")


def test_directory_must_be_a_directory(site: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles(site / "app.js")


@pytest.mark.parametrize("index", ["", ".", "..", "a/index.html"])
def test_index_must_be_a_file_name(site: Path, index: str) -> None:
    with pytest.raises(ValueError, match="index"):
        StaticFiles(site, index=index)


def test_bad_limits(site: Path) -> None:
    with pytest.raises(ValueError, match="max_age"):
        StaticFiles(site, max_age=-1)
    with pytest.raises(ValueError, match="max_file_size"):
        StaticFiles(site, max_file_size=0)
