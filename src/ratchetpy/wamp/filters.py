"""Who a publication is for: PUBLISH options read into Ratchet's ``exclude`` / ``eligible``
lists, and the filters applied to a topic's subscribers. Sans-IO."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .messages import MAX_ID
from .realm import WampConnection

__all__ = ["filtered", "publish_filters", "session_ids"]


def session_ids(peers: Iterable[Any]) -> set[int]:
    """Session ids from a mix of ints and connections (anything with ``session_id``)."""
    ids: set[int] = set()
    for peer in peers:
        if type(peer) is int:
            ids.add(peer)
        else:
            session_id = getattr(peer, "session_id", None)
            if session_id is None:
                raise TypeError(f"expected a session id or a WAMP connection, got {peer!r}")
            ids.add(session_id)
    return ids


def publish_filters(
    session: WampConnection, options: dict[str, Any], sessions: Mapping[int, WampConnection]
) -> tuple[list[int], list[int] | None]:
    """Turn PUBLISH options into Ratchet's ``exclude`` / ``eligible`` session id lists, the
    user-id filters narrowed to ``sessions`` (this worker's); ValueError for options of the
    wrong type."""
    assert session.session_id is not None
    exclude_me = options.get("exclude_me", True)
    if type(exclude_me) is not bool:
        raise ValueError("option exclude_me must be a bool")
    exclude = set(_ids(options, "exclude"))
    if exclude_me:
        exclude.add(session.session_id)
    eligible_option = options.get("eligible")
    eligible = None if eligible_option is None else set(_ids(options, "eligible"))
    excluded_users = set(_authids(options, "exclude_authid"))
    if excluded_users:
        exclude.update(i for i, s in sessions.items() if s.authid in excluded_users)
    if options.get("eligible_authid") is not None:
        users = set(_authids(options, "eligible_authid"))
        of_users = {i for i, s in sessions.items() if s.authid in users}
        eligible = of_users if eligible is None else eligible & of_users
    return sorted(exclude), None if eligible is None else sorted(eligible)


def filtered(
    sessions: Iterable[WampConnection],
    exclude: Iterable[Any],
    eligible: Iterable[Any] | None,
    exclude_authid: Iterable[str],
    eligible_authid: Iterable[str] | None,
) -> list[WampConnection]:
    """The ``sessions`` a broadcast with these filters is for (ids or connections in
    ``exclude`` / ``eligible``; ``None``: everyone)."""
    excluded = session_ids(exclude)
    allowed = None if eligible is None else session_ids(eligible)
    excluded_users = set(exclude_authid)
    allowed_users = None if eligible_authid is None else set(eligible_authid)
    return [
        conn
        for conn in sessions
        if conn.session_id not in excluded
        and (allowed is None or conn.session_id in allowed)
        and (not excluded_users or conn.authid not in excluded_users)
        and (allowed_users is None or conn.authid in allowed_users)
    ]


def _ids(options: dict[str, Any], name: str) -> list[int]:
    value = options.get(name, [])
    if type(value) is not list or not all(
        type(item) is int and 1 <= item <= MAX_ID for item in value
    ):
        raise ValueError(f"option {name} must be a list of session ids (integers in [1, 2^53])")
    return value


def _authids(options: dict[str, Any], name: str) -> list[str]:
    value = options.get(name, [])
    if type(value) is not list or any(type(item) is not str for item in value):
        raise ValueError(f"option {name} must be a list of strings")
    return value
