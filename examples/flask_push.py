"""Multi-device updates: a Flask app saves a record and pushes it to every tab that shows it.

    python examples/flask_push.py --port 5000 --ws-port 8080 [--host 127.0.0.1]

Sign in at ``http://127.0.0.1:5000/`` with any name (a demo: there are no passwords), open a
record in two tabs, or two browsers, and edit it in one: the others show the change at once,
and the tabs of the user who saved it also get a notice that only that user sees.

Two servers share two secrets:

* the **Flask web app** (``--port``): the pages, the sign-in, and the AJAX handler
  ``POST /api/records/<id>`` that validates and saves the record, then pushes it with *one*
  call, ``ratchetpy.client.publish(PUBLISH_URL, f"com.example.record.{id}", record,
  secret=PUBLISH_SECRET)``, and tells the user's own tabs with a second one
  (``options={"eligible_authid": [user]}``: every connection of that user, none of others);
* the **ratchetpy server** (``--ws-port``): ``/ws``, a WAMP v2 router (realm ``realm1``) for
  signed-in users only: :class:`~ratchetpy.SessionProvider` reads Flask's session cookie
  (the browser sends it with the handshake, since cookies are per host, not per port),
  :class:`~ratchetpy.Authenticate` refuses a handshake without a user with 401, and
  ``Records`` lets pages subscribe to record channels and to their notices but publish
  nothing; ``POST /publish``, the endpoint the web app pushes through; ``/health``.

Here both run in one process for the demo: the ratchetpy server in the main thread (Ctrl-C
or SIGTERM shut it down gracefully) and werkzeug's threaded server in a daemon thread that
ends with the process. In production they are two processes (the web app under gunicorn or
uWSGI, the WebSocket server on its own, each behind the same reverse proxy) that share
``$RATCHETPY_FLASK_SECRET`` (Flask's ``SECRET_KEY``, which signs the session cookie) and
``$RATCHETPY_PUBLISH_SECRET`` (which signs each push); without them, random ones are made
for the run. Port 0 picks a free port; the log says which.

Records live in memory, behind a lock (werkzeug serves each request in its own thread).
Saves are "last write wins"; each carries a version, and pages ignore an update older than
the one they show, so pushes that overtake each other do no harm.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any, TypedDict

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from jinja2 import DictLoader
from werkzeug.serving import make_server

from ratchetpy import (
    App,
    Authenticate,
    FlaskSession,
    HttpRequest,
    SessionProvider,
    Topic,
    WampComponent,
    WampConnection,
    WampError,
    WampServer,
    WsServer,
)
from ratchetpy.client import PublishError, publish
from ratchetpy.wamp import NOT_AUTHORIZED, Payload, PublishEndpoint

HERE = Path(__file__).parent
REALM = "realm1"
RECORD_TOPIC = "com.example.record.{id}"
NOTICE_TOPIC = "com.example.notice"
MAX_TITLE = 120
MAX_BODY = 4000
USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")

logger = logging.getLogger("flask_push")


# -- the data ------------------------------------------------------------------------------


class Record(TypedDict):
    id: int
    title: str
    body: str
    updated_by: str
    version: int


class RecordStore:
    """Records in memory, safe to use from every request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[int, Record] = {
            1: Record(
                id=1, title="Quarterly report", body="Draft.", updated_by="nobody", version=1
            ),
            2: Record(id=2, title="Team offsite", body="Where?", updated_by="nobody", version=1),
            3: Record(id=3, title="Release notes", body="", updated_by="nobody", version=1),
        }

    def all(self) -> list[Record]:
        with self._lock:
            return [record.copy() for _, record in sorted(self._records.items())]

    def get(self, record_id: int) -> Record | None:
        with self._lock:
            record = self._records.get(record_id)
            return None if record is None else record.copy()

    def update(self, record_id: int, title: str, body: str, user: str) -> Record | None:
        """Save and return a copy of the new version, or ``None`` if there is no such record."""
        with self._lock:
            record = self._records.get(record_id)
            if record is None:
                return None
            record["title"], record["body"], record["updated_by"] = title, body, user
            record["version"] += 1
            return record.copy()


# -- the Flask web app -----------------------------------------------------------------------

TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en">
<head>
<link rel="icon" href="data:,">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · ratchetpy push</title>
<style>
  * { box-sizing: border-box; }
  body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  header { display: flex; gap: .5rem; align-items: center; justify-content: flex-end; }
  header form { margin: 0; }
  #status { font-size: .9rem; padding: .2rem .5rem; border-radius: .3rem; display: inline-block; }
  #status.online { background: #d4f7d4; } #status.offline { background: #f7d4d4; }
  #body { white-space: pre-wrap; border-left: 3px solid #ccc; padding: .2rem .8rem; }
  #meta { color: #666; font-size: .9rem; }
  label { display: block; margin: .5rem 0; }
  label input, label textarea { display: block; width: 100%; padding: .4rem; }
  #notices li { color: #264; }
  .error { color: #a00; }
</style>
</head>
<body>
<header>
{% if user %}
  <span>Signed in as <strong id="user">{{ user }}</strong></span>
  <form method="post" action="{{ url_for('sign_out') }}">
    <button id="sign-out">Sign out</button>
  </form>
{% endif %}
</header>
{% block content %}{% endblock %}
</body>
</html>
""",
    "sign_in.html": """{% extends "base.html" %}
{% block title %}Sign in{% endblock %}
{% block content %}
<h1>Sign in</h1>
<p>Any name will do: this demo has no passwords.</p>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<form method="post" action="{{ url_for('sign_in') }}">
  <label>Your name
    <input id="user-name" name="user" required maxlength="32" autocomplete="username" autofocus>
  </label>
  <button id="sign-in" type="submit">Sign in</button>
</form>
{% endblock %}
""",
    "records.html": """{% extends "base.html" %}
{% block title %}Records{% endblock %}
{% block content %}
<h1>Records</h1>
<ul id="records">
{% for record in records %}
  <li><a href="{{ url_for('record_page', record_id=record.id) }}">{{ record.title }}</a>
      (version {{ record.version }}, by {{ record.updated_by }})</li>
{% endfor %}
</ul>
<p>Open one in two tabs, or in two browsers, and edit it in one of them.</p>
{% endblock %}
""",
    "record.html": """{% extends "base.html" %}
{% block title %}{{ record.title }}{% endblock %}
{% block content %}
<p><a href="{{ url_for('records_page') }}">All records</a> ·
   Live updates: <span id="status" class="offline">connecting…</span></p>
<h1 id="title">{{ record.title }}</h1>
<div id="body">{{ record.body }}</div>
<p id="meta">Version <span id="version">{{ record.version }}</span>, last saved by
   <span id="updated-by">{{ record.updated_by }}</span>.</p>
<form id="edit-form">
  <label>Title <input id="edit-title" name="title" required maxlength="{{ max_title }}"
                      value="{{ record.title }}" autocomplete="off"></label>
  <label>Body <textarea id="edit-body" name="body" rows="5"
                        maxlength="{{ max_body }}">{{ record.body }}</textarea></label>
  <button id="save" type="submit">Save</button> <span id="save-status" role="status"></span>
</form>
<h2>Notices for you</h2>
<ul id="notices"></ul>
<script id="page-config" type="application/json">{{ page_config|tojson }}</script>
<script src="{{ url_for('static', filename='wamp-mini.js') }}"></script>
<script>
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const $ = function (id) { return document.getElementById(id); };
  const statusEl = $("status"), titleInput = $("edit-title"), bodyInput = $("edit-body");
  let shown = config.record;

  function setStatus(online, text) {
    statusEl.textContent = text;
    statusEl.className = online ? "online" : "offline";
    document.body.dataset.status = online ? "online" : "offline";
  }

  // Show a version of the record, unless this page already shows a newer one (a push and
  // the answer to our own save may arrive in either order). Form fields the user has not
  // touched follow along; edits in progress are kept.
  function show(record) {
    if (record.id !== shown.id || record.version < shown.version) return;
    if (titleInput.value === shown.title) titleInput.value = record.title;
    if (bodyInput.value === shown.body) bodyInput.value = record.body;
    shown = record;
    $("title").textContent = record.title;
    $("body").textContent = record.body;
    $("version").textContent = String(record.version);
    $("updated-by").textContent = record.updated_by;
    document.title = record.title + " · ratchetpy push";
  }

  // What changed while we were not subscribed (before the first join, or while offline).
  function resync() {
    return fetch(config.apiUrl, {headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) show(data.record); }, function () {});
  }

  function notice(args) {
    const item = document.createElement("li");
    item.textContent = String(args[0]);
    $("notices").appendChild(item);
  }

  const host = location.hostname.includes(":") ? "[" + location.hostname + "]" : location.hostname;
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + host + ":" +
    config.wsPort + "/ws";
  let subscribed = false;
  const wamp = new WampMini(url, config.realm, {
    onStatus: function (online, text) {
      // "online" once subscribed (onJoin below), so a page that says so gets every push.
      if (!online) setStatus(false, text);
      else statusEl.textContent = text;
    },
    onJoin: function () {
      if (subscribed) {  // a reconnection: WampMini subscribed again by itself
        resync().then(function () { setStatus(true, "live"); });
        return;
      }
      subscribed = true;
      Promise.all([
        wamp.subscribe(config.recordTopic, function (args) { show(args[0]); }),
        wamp.subscribe(config.noticeTopic, notice),
      ]).then(resync).then(function () { setStatus(true, "live"); },
                           function (error) { setStatus(false, error.message); });
    },
  });

  $("edit-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const saveStatus = $("save-status");
    $("save").disabled = true;
    saveStatus.textContent = "saving…";
    fetch(config.apiUrl, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Requested-With": "fetch"},
      body: JSON.stringify({title: titleInput.value, body: bodyInput.value}),
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    }).then(function (answer) {
      if (!answer.ok) {
        saveStatus.textContent = "not saved: " + answer.data.reason;
        return;
      }
      show(answer.data.record);
      saveStatus.textContent = answer.data.pushed ? "saved"
        : "saved, but other tabs were not told: " + answer.data.push_error;
    }, function (error) {
      saveStatus.textContent = "not saved: " + error.message;
    }).finally(function () { $("save").disabled = false; });
  });
})();
</script>
{% endblock %}
""",
}


def _error(status: int, error: str, reason: str) -> ResponseReturnValue:
    return jsonify(error=error, reason=reason), status


def _same_origin() -> bool:
    """No ``Origin`` header (not a browser, or a same-origin GET), or this site's own."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def make_web_app(
    *, secret_key: str, publish_secret: str, publish_url: str = "", ws_port: int = 8080
) -> Flask:
    """The Flask app. ``publish_url`` (the ratchetpy server's ``/publish``) and ``ws_port``
    (what pages connect to) may also be set later, as ``config["PUBLISH_URL"]`` and
    ``config["WS_PORT"]``, before the first request."""
    web = Flask(__name__, static_folder=HERE / "static", static_url_path="/static")
    web.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_SAMESITE="Lax",  # no cookie on cross-site POSTs (nor on their sockets)
        MAX_CONTENT_LENGTH=64 * 1024,
        PUBLISH_URL=publish_url,
        PUBLISH_SECRET=publish_secret,
        WS_PORT=ws_port,
    )
    web.jinja_env.loader = DictLoader(TEMPLATES)
    store = RecordStore()

    def push(record: Record, user: str) -> tuple[bool, str | None]:
        """Tell every subscribed tab about ``record``, and ``user``'s tabs that it was saved.
        The save stands either way: a failed push is logged and reported, not raised."""
        url, key = web.config["PUBLISH_URL"], web.config["PUBLISH_SECRET"]
        topic = RECORD_TOPIC.format(id=record["id"])
        try:
            publish(url, topic, record, secret=key, timeout=3)
            publish(
                url,
                NOTICE_TOPIC,
                f"saved: {record['title']}",
                secret=key,
                options={"eligible_authid": [user]},
                timeout=3,
            )
        except PublishError as exc:
            logger.warning("record %d saved, but the push to %s failed: %s", record["id"], url, exc)
            return False, exc.reason
        return True, None

    @web.get("/")
    def index() -> ResponseReturnValue:
        return render_template("sign_in.html", user=session.get("user"), error=None)

    @web.post("/signin")
    def sign_in() -> ResponseReturnValue:
        if not _same_origin():
            abort(403)
        name = request.form.get("user", "").strip()
        if not USER_NAME.fullmatch(name):
            error = "A name is 1 to 32 letters, digits, dots, dashes or underscores."
            return render_template("sign_in.html", user=None, error=error), 400
        session.clear()
        session["user"] = name
        logger.info("%s signed in", name)
        return redirect("/records", code=303)

    @web.post("/signout")
    def sign_out() -> ResponseReturnValue:
        if not _same_origin():
            abort(403)
        session.clear()
        return redirect("/", code=303)

    @web.get("/records")
    def records_page() -> ResponseReturnValue:
        user = session.get("user")
        if not user:
            return redirect("/")
        return render_template("records.html", user=user, records=store.all())

    @web.get("/records/<int:record_id>")
    def record_page(record_id: int) -> ResponseReturnValue:
        user = session.get("user")
        if not user:
            return redirect("/")
        record = store.get(record_id)
        if record is None:
            abort(404)
        page_config: dict[str, Any] = {
            "record": record,
            "apiUrl": f"/api/records/{record_id}",
            "wsPort": web.config["WS_PORT"],
            "realm": REALM,
            "recordTopic": RECORD_TOPIC.format(id=record_id),
            "noticeTopic": NOTICE_TOPIC,
        }
        return render_template(
            "record.html",
            user=user,
            record=record,
            page_config=page_config,
            max_title=MAX_TITLE,
            max_body=MAX_BODY,
        )

    @web.get("/api/records/<int:record_id>")
    def get_record(record_id: int) -> ResponseReturnValue:
        if not session.get("user"):
            return _error(401, "not_signed_in", "sign in first")
        record = store.get(record_id)
        if record is None:
            return _error(404, "not_found", f"there is no record {record_id}")
        return jsonify(record=record)

    @web.post("/api/records/<int:record_id>")
    def save_record(record_id: int) -> ResponseReturnValue:
        # Against cross-site requests: a page of another site can neither send this header
        # nor a JSON body without the browser asking us first (CORS preflight, which we never
        # allow); the Origin check and the SameSite cookie are the second and third lines.
        if request.headers.get("X-Requested-With") != "fetch" or not _same_origin():
            return _error(403, "cross_site", "send it from this site with X-Requested-With")
        user = session.get("user")
        if not isinstance(user, str) or not user:
            return _error(401, "not_signed_in", "sign in first")
        if store.get(record_id) is None:
            return _error(404, "not_found", f"there is no record {record_id}")
        if not request.is_json:
            return _error(415, "unsupported_media_type", "send JSON (application/json)")
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return _error(400, "invalid_json", "the body must be a JSON object")
        title, body = data.get("title"), data.get("body")
        if not isinstance(title, str) or not isinstance(body, str):
            return _error(400, "invalid_fields", "title and body must be strings")
        title = title.strip()
        if not title:
            return _error(400, "invalid_fields", "the title must not be empty")
        if len(title) > MAX_TITLE or len(body) > MAX_BODY:
            return _error(
                400, "too_long", f"at most {MAX_TITLE} characters of title, {MAX_BODY} of body"
            )
        record = store.update(record_id, title, body, user)
        if record is None:
            return _error(404, "not_found", f"there is no record {record_id}")
        logger.info("record %d version %d saved by %s", record_id, record["version"], user)
        pushed, push_error = push(record, user)
        return jsonify(record=record, pushed=pushed, push_error=push_error)

    @web.after_request
    def no_sniffing(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return web


# -- the ratchetpy server -------------------------------------------------------------------


class Records(WampComponent):
    """Pages may subscribe to record channels and their user's notices, and publish nothing:
    updates come from the web app, through the publish endpoint (which bypasses this)."""

    RECORD_CHANNEL = re.compile(r"com\.example\.record\.[0-9]{1,9}")

    def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
        # A real app would also check that conn.authid may read this record.
        if topic.id != NOTICE_TOPIC and not self.RECORD_CHANNEL.fullmatch(topic.id):
            raise WampError(NOT_AUTHORIZED, f"no channel {topic.id} here")

    def on_publish(
        self,
        conn: WampConnection,
        topic: Topic,
        event: Payload,
        exclude: list[int],
        eligible: list[int] | None,
    ) -> None:
        raise WampError(NOT_AUTHORIZED, "only the web application publishes here")


def signed_in_user(request: HttpRequest) -> str | None:
    """Who the Flask session cookie says signed in; ``None`` (401) for nobody."""
    user = request.session.get("user")
    return user if isinstance(user, str) and user else None


def make_ws_app(
    *, host: str, ws_port: int, web_port: int, secret_key: str, publish_secret: str
) -> App:
    """The ratchetpy server: the WAMP router for signed-in users and the publish endpoint."""
    # http_host=None: no origin is allowed by default, only the web app's pages below.
    app = App(None, ws_port, host)
    router = WampServer(Records(), realms=[REALM])
    socket = SessionProvider(
        Authenticate(WsServer(router), signed_in_user), FlaskSession(secret_key)
    )
    app.route("/ws", socket, allowed_origins=[f"{host}:{web_port}", f"localhost:{web_port}"])
    app.route(
        "/publish",
        PublishEndpoint(
            router, secret=publish_secret, allow_topics=["com.example.record", NOTICE_TOPIC]
        ),
        allowed_origins=["*"],  # no browser publishes: the signature is what counts
    )
    app.route("/health", app.health, allowed_origins=["*"])
    return app


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL to reach this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="the Flask web app's port")
    parser.add_argument("--ws-port", type=int, default=8080, help="the WebSocket server's port")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    secret_key = os.environ.get("RATCHETPY_FLASK_SECRET") or secrets.token_urlsafe(32)
    publish_secret = os.environ.get("RATCHETPY_PUBLISH_SECRET") or secrets.token_urlsafe(32)
    for name in ("RATCHETPY_FLASK_SECRET", "RATCHETPY_PUBLISH_SECRET"):
        if not os.environ.get(name):
            logger.info("$%s is not set: using a random secret for this run", name)

    web = make_web_app(secret_key=secret_key, publish_secret=publish_secret)
    web_server = make_server(args.host, args.port, web, threaded=True)  # bound: the port is known
    web_port = web_server.server_port
    app = make_ws_app(
        host=args.host,
        ws_port=args.ws_port,
        web_port=web_port,
        secret_key=secret_key,
        publish_secret=publish_secret,
    )

    def start_web() -> None:
        # Runs once the ratchetpy server listens, so its port is known (--ws-port 0).
        web.config["WS_PORT"] = app.port
        web.config["PUBLISH_URL"] = f"http://{_url_host(args.host)}:{app.port}/publish"
        threading.Thread(target=web_server.serve_forever, name="flask", daemon=True).start()
        logger.info(
            "web app at http://%s:%d/ ; WAMP at ws://%s:%d/ws (signed-in users only)",
            _url_host(args.host),
            web_port,
            _url_host(args.host),
            app.port,
        )

    app.add_timer(0, start_web)
    app.run()


if __name__ == "__main__":
    main()
