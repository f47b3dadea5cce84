"""What the base classes do on the server's behalf, on a recording connection."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ratchetpy import Connection, MessageComponent
from ratchetpy.components.base import shut_down
from ratchetpy.testing import RecordingConnection


class Goodbye(MessageComponent):
    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        conn.send(f"bye ({code})")
        conn.close(4001, "see you")


class Failing(MessageComponent):
    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        raise RuntimeError("no goodbye today")


class Plain:
    """A component of the user's own that derives from no base class: no on_shutdown."""

    def on_message(self, conn: Connection, msg: Any) -> None:
        conn.send(msg)


def test_shut_down_calls_the_hook_which_says_goodbye_its_own_way() -> None:
    conn = RecordingConnection()
    shut_down(Goodbye(), conn)
    assert conn.sent == ["bye (1001)"] and conn.closes == [(4001, "see you")]


def test_the_default_hook_closes_with_1001() -> None:
    conn = RecordingConnection()
    shut_down(MessageComponent(), conn)
    assert conn.closes == [(1001, "server shutting down")]


def test_a_failing_hook_is_logged_and_the_connection_still_closes_with_1001(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = RecordingConnection()
    with caplog.at_level(logging.ERROR):
        shut_down(Failing(), conn)
    assert conn.closes == [(1001, "server shutting down")]
    assert f"on_shutdown raised for connection #{conn.resource_id}" in caplog.text
    assert "no goodbye today" in caplog.text


def test_a_component_without_the_hook_is_closed_with_1001() -> None:
    conn = RecordingConnection()
    shut_down(Plain(), conn)
    assert conn.closes == [(1001, "server shutting down")]
