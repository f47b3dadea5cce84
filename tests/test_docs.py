"""The documentation names what exists: every import in its code blocks works, and every
``ratchetpy.…`` name it mentions resolves (modules, classes, functions, attributes); so does
every cross-reference in the source's docstrings."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from support.examples import DOCS, ROOT

PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
FENCE = re.compile(r"```python\n(.*?)```", re.S)
# Inline names such as `ratchetpy.protocol.WebSocketProtocol` or `ratchetpy.wamp.messages.parse()`
DOTTED = re.compile(r"`(ratchetpy(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")
# Logger names (documented on their own page) and ratchetpy's WAMP error URIs are not Python
# names.
LOGGERS = {
    "ratchetpy.http",
    "ratchetpy.ws",
    "ratchetpy.security",
    "ratchetpy.server",
    "ratchetpy.broker",
    "ratchetpy.workers",
}
# WAMP URIs of ratchetpy's own (error URIs, meta topics), not Python names.
URI_PREFIXES = ("ratchetpy.error.", "ratchetpy.session.")
SOURCES = sorted((ROOT / "src" / "ratchetpy").rglob("*.py"))
# Sphinx roles in docstrings: :class:`~ratchetpy.IoServer`, :meth:`ratchetpy.App.run`, ...
ROLE = re.compile(r":[a-z]+:`~?(ratchetpy(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")


def _is_ratchetpy_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("ratchetpy")
    if isinstance(node, ast.Import):
        return any(alias.name.startswith("ratchetpy") for alias in node.names)
    return False


def _imports(page: Path) -> list[tuple[str, str]]:
    """(location, import statement) for each ratchetpy import in the page's code blocks."""
    found = []
    for block in FENCE.findall(page.read_text(encoding="utf-8")):
        try:
            tree = ast.parse(block)
        except SyntaxError:
            continue  # a fragment (a signature, an excerpt): nothing to run
        for node in ast.walk(tree):
            if _is_ratchetpy_import(node):
                found.append((f"{page.relative_to(ROOT)}:{node.lineno}", ast.unparse(node)))
    return found


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_import_in_the_code_blocks_works(page: Path) -> None:
    failures = []
    for where, statement in _imports(page):
        try:
            exec(statement, {})
        except ImportError as exc:
            failures.append(f"{where}: {statement}: {exc}")
    assert failures == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_name_the_page_mentions_exists(page: Path) -> None:
    names = set(DOTTED.findall(page.read_text(encoding="utf-8"))) - LOGGERS
    missing = sorted(n for n in names if not n.startswith(URI_PREFIXES) and not _resolves(n))
    assert missing == []


def test_every_cross_reference_in_the_docstrings_exists() -> None:
    missing = sorted(
        f"{source.relative_to(ROOT)}: {name}"
        for source in SOURCES
        for name in set(ROLE.findall(source.read_text(encoding="utf-8")))
        if not _resolves(name)
    )
    assert missing == []


def test_the_check_would_catch_a_stale_name() -> None:
    assert not _resolves("ratchetpy.wsprotocol.WebSocketProtocol")  # moved to ratchetpy.protocol
    assert _resolves("ratchetpy.protocol.WebSocketProtocol")
    assert _resolves("ratchetpy.IoServer.add_timer")
