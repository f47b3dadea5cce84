"""Sphinx configuration: docs/ as a site (Sphinx, the Furo theme, MyST-Parser for the Markdown).

Why Sphinx: the docstrings are reStructuredText with Sphinx roles already
(:class:`~ratchetpy.HttpServer`, :meth:`IoServer.stats`, ``code``), so autodoc reads them as
they are; the projects ratchetpy learns from (websockets, trio, h11, wsproto, hypercorn) build
their documentation with Sphinx too. MyST-Parser lets the pages stay Markdown, readable on a
code host as they are.

Build (scripts/test.sh does: -E rereads every page, so no warning hides in a cached one):

    .venv/bin/sphinx-build -E -W --keep-going -n -b html docs docs/_build/html

The reference pages keep their prose; the signatures and member lists in them come from the
code, through autodoc directives written in ``{eval-rst}`` blocks (autodoc generates
reStructuredText, which a Markdown page cannot parse itself). See ``_SignatureOnly`` below for
the one option added to them, ``:no-docstring:``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util.nodes import make_refnode

ROOT = Path(__file__).resolve().parent.parent
# Import the code being documented from this tree, installed or not.
sys.path.insert(0, str(ROOT / "src"))

from ratchetpy._version import __version__  # noqa: E402

project = "ratchetpy"
author = "the ratchetpy authors"
copyright = "the ratchetpy authors"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/_build", ".venv", "**/.*"]

html_theme = "furo"
html_title = f"ratchetpy {release}"
html_show_sourcelink = False
html_copy_source = False

# -- Markdown (MyST) -------------------------------------------------------------------------
# The pages use definition lists (``term`` then ``: what it is``) for options and members.
myst_enable_extensions = ["deflist"]
# ``[x](page.md#a-heading)`` resolves to the heading's GitHub-style slug, as on a code host;
# a link to a page or an anchor that does not exist is a warning (myst.xref_missing), so an
# error under -W.
myst_heading_anchors = 4

# -- API reference (autodoc) -----------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Defaults as written in the code (``4 * 2**20``, not 4194304).
autodoc_preserve_defaults = True
# The type aliases by name in signatures (``check: Check``), linked to their entries.
autodoc_type_aliases = {
    "Check": "ratchetpy.components.auth.Check",
    "TokenLookup": "ratchetpy.components.auth.TokenLookup",
    "SessionReader": "ratchetpy.components.session.SessionReader",
}
# ``IoServer(...)``, not ``ratchetpy.IoServer(...)``: every page says what to import.
add_module_names = False
python_use_unqualified_type_names = True
# A long signature gets a line per parameter, as the pages wrote them by hand.
python_maximum_signature_line_length = 130

# Every cross-reference must resolve (-n). intersphinx cannot be used: the build runs without a
# network (CI has none), so names from the standard library and from other projects have
# nothing to link to: the modules below are those the signatures name (the standard library
# and trio, wsproto). Only they are let through; a wrong reference to ratchetpy's own names is
# still an error.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(collections\.abc|datetime|os|ssl|trio|wsproto)\..+"),
    # Internal seams, not documented, that appear in the signatures of classes users get but
    # do not make (WsConnection, MemoryTransport): what a layer sees of the connection below
    # it, the server's counters, its timer queue.
    (
        r"py:class",
        r"ratchetpy\.(components\.connection\.(Transport|Counters)|io\.timers\.TimerQueue)",
    ),
    # Private names (a part starting with "_") are not documented, by definition; they appear
    # in the signatures of objects made for the user (Session, MemoryStream).
    (r"py:.*", r"ratchetpy(\.\w+)*\._\w+(\.\w+)*"),
]

# -- Link check --------------------------------------------------------------------------------
# ``sphinx-build -b linkcheck`` would try every external link, and the build machines (CI
# included) have no internet: external links are ignored. What can break inside the site, a
# link to a page or to a heading of one, is checked by the HTML build itself (-n, and
# myst.xref_missing under -W), which the test command runs.
linkcheck_ignore = [r"^https?://"]
linkcheck_anchors = False


# -- The reference pages: signature from the code, description from the page ----------------
#
# A reference page documents most objects in more detail than their docstring does (each option
# of a constructor, each error). There the page writes
#
#     ```{eval-rst}
#     .. autoclass:: ratchetpy.IoServer
#        :no-docstring:
#     ```
#
#     The bottom of every stack ...
#
# and gets the signature (and, with :members:, the member list) from the code, without the
# docstring, and the prose that follows it on the page as its description: the paragraphs up to
# the next object or heading are moved into the object's entry. Adjacent entries without prose
# of their own (``path``, ``query``) share the description that follows the last of them.
# Without :no-docstring: an autodoc directive shows the docstring, as usual.

_signature_only: list[bool] = []


class _SignatureOnly:
    """Mixed into every autodoc directive: accepts ``:no-docstring:``."""

    def run(self) -> list[nodes.Node]:
        options: dict[str, Any] = self.options  # type: ignore[attr-defined]
        drop = "no-docstring" in options
        options.pop("no-docstring", None)
        _signature_only.append(drop)
        try:
            result: list[nodes.Node] = super().run()  # type: ignore[misc]
        finally:
            _signature_only.pop()
        if drop:
            for node in result:
                if isinstance(node, addnodes.desc):
                    node["ratchetpy-prose"] = True
        return result


def _drop_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if _signature_only and _signature_only[-1]:
        lines.clear()


def _wrap_autodoc_directives(app: Any, config: Any) -> None:
    # autodoc registers its directives when the configuration is read; wrap them after it.
    for kind in ("class", "exception", "function", "method", "property", "attribute", "data"):
        name = f"auto{kind}"
        base = directives._directives[name]  # type: ignore[attr-defined]
        app.add_directive(name, type(f"Prose{base.__name__}", (_SignatureOnly, base), {}), True)


def _is_entry(node: nodes.Node) -> bool:
    return isinstance(node, addnodes.desc) and bool(node.get("ratchetpy-prose"))


def _next_entry(parent: nodes.Element, index: int) -> int | None:
    """The index of the entry right after ``parent[index]``, index nodes skipped, or None."""
    i = index + 1
    while i < len(parent) and isinstance(parent[i], addnodes.index):
        i += 1
    return i if i < len(parent) and _is_entry(parent[i]) else None


def _attach_prose(app: Any, doctree: nodes.document) -> None:
    for desc in list(doctree.findall(_is_entry)):
        parent = desc.parent
        if parent is None or not any(child is desc for child in parent.children):
            continue  # merged into the entry before it
        content = desc.children[-1]
        assert isinstance(content, addnodes.desc_content)
        index = parent.index(desc)
        # Entries without a description of their own, each followed by another: one entry
        # with several signatures (``path``, ``query``).
        while not content.children and (following := _next_entry(parent, index)) is not None:
            other = parent[following]
            for signature in list(other.children[:-1]):
                other.remove(signature)
                desc.insert(len(desc) - 1, signature)
            # Its index entries go before this entry's, the entry itself away.
            for between in list(parent[index + 1 : following]):
                parent.remove(between)
                parent.insert(parent.index(desc), between)
            parent.remove(other)
            index = parent.index(desc)
        while index + 1 < len(parent):
            sibling = parent[index + 1]
            if isinstance(
                sibling, (addnodes.desc, addnodes.index, nodes.section, nodes.transition)
            ):
                break
            parent.remove(sibling)
            content.append(sibling)


def _factory_defaults(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, annotation: Any
) -> tuple[str | None, Any]:
    # A dataclass field made by a factory shows ``<factory>`` as its default, which the
    # signature parser splits apart; ``...`` says the same (a new one for each object).
    if signature is not None:
        signature = signature.replace("<factory>", "...")
    return signature, annotation


def _defined_as(path: str) -> str:
    """``ratchetpy.protocol.TrustedProxies`` -> ``ratchetpy.protocol.forwarded.TrustedProxies``."""
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)
    obj = getattr(module, name, None)
    if obj is None or not hasattr(obj, "__qualname__"):
        return path
    return f"{obj.__module__}.{obj.__qualname__}"


def _through_canonical_names(
    app: Any, env: Any, node: nodes.Element, contnode: nodes.Node
) -> nodes.Node | None:
    """Resolve ``:meth:`Connection.call_later``` written in ratchetpy.components.connection.

    A class documented as ``ratchetpy.Connection`` is also found by its canonical name,
    ``ratchetpy.components.connection.Connection`` (autodoc notes it), but its members are not,
    nor is the class by the other names it is imported under (``ratchetpy.protocol.Headers``,
    ``EncodeError`` in a module that imports it). A reference through such a name, as the
    docstrings of the defining modules write them, is resolved here to the one entry of the
    same Python object; anything else stays unresolved (an error).
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"]
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates.insert(0, f"{module}.{target}")
        if cls:
            candidates.insert(0, f"{module}.{cls}.{target}")
    for candidate in candidates:
        parts = candidate.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            owner = domain.objects.get(prefix) or domain.objects.get(_defined_as(prefix))
            if owner is None or not owner.aliased:
                continue
            real = domain.objects.get(".".join([owner.node_id, *parts[i:]]))
            if real is not None:
                return make_refnode(
                    app.builder, node["refdoc"], real.docname, real.node_id, contnode, candidate
                )
    return None


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _wrap_autodoc_directives, priority=900)
    app.connect("autodoc-process-docstring", _drop_docstring)
    app.connect("doctree-read", _attach_prose)
    app.connect("missing-reference", _through_canonical_names)
    app.connect("autodoc-process-signature", _factory_defaults)
    return {"parallel_read_safe": True}
