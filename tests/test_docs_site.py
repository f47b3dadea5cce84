"""The documentation site's structure, as far as the Sphinx build cannot check it.

scripts/test.sh builds docs/ with warnings as errors (broken references and links fail it).
What the build accepts but must not happen: a public name exported without a reference entry,
one documented twice, and a page that no table of contents reaches. Read from the Markdown,
without Sphinx and without a network.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import ratchetpy

DOCS = Path(__file__).resolve().parent.parent / "docs"

# An autodoc directive inside an {eval-rst} block: ".. autoclass:: ratchetpy.IoServer", then
# its options, one per line, indented.
DIRECTIVE = re.compile(r"^\.\. auto(\w+):: (\S+)\n((?:   :[^\n]*\n)*)", re.MULTILINE)
EVAL_RST = re.compile(r"^```\{eval-rst\}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# The modules whose every public name (__all__) the reference documents, besides ratchetpy.
DOCUMENTED_MODULES = ["ratchetpy.client", "ratchetpy.testing", "ratchetpy.exceptions"]


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)


def directives() -> list[tuple[Path, str, str, bool]]:
    """(page, kind, target, indexed) for every autodoc directive of the site."""
    found = []
    for page in pages():
        for block in EVAL_RST.findall(page.read_text()):
            for kind, target, options in DIRECTIVE.findall(block + "\n"):
                found.append((page, kind, target, ":no-index:" not in options))
    return found


def resolve(path: str) -> object:
    """The object ``path`` names; for an attribute set in ``__init__``, the attribute's path."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for n, part in enumerate(parts[i:], start=i):
            if not hasattr(obj, part) and inspect.isclass(obj) and _sets(obj, part):
                assert n == len(parts) - 1, path
                return path
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def _sets(cls: type, name: str) -> bool:
    """Whether ``cls`` (or a class it derives from) declares ``name`` (``name: int``) or a
    method of it assigns ``self.name``: an attribute of the objects, not of the class."""
    assignment = re.compile(rf"\bself\.{name}\s*(:[^=\n]*)?=[^=]")
    return any(
        name in vars(klass).get("__annotations__", {})
        or assignment.search(inspect.getsource(klass))
        for klass in cls.__mro__
        if klass.__module__.startswith("ratchetpy")
    )


def test_the_reference_is_written_with_autodoc() -> None:
    assert len(directives()) > 100  # the regular expressions above still match the pages


def test_every_public_name_has_one_reference_entry() -> None:
    indexed: dict[str, list[str]] = {}
    for page, _kind, target, is_indexed in directives():
        if is_indexed:
            indexed.setdefault(target, []).append(str(page.relative_to(DOCS)))
    missing = [
        name
        for name in ratchetpy.__all__
        if name != "__version__" and f"ratchetpy.{name}" not in indexed
    ]
    assert not missing, f"exported by ratchetpy but without a reference entry: {missing}"
    twice = {target: where for target, where in indexed.items() if len(where) > 1}
    assert not twice, f"documented more than once (give the others :no-index:): {twice}"


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_every_name_of_a_documented_module_has_an_entry(module_name: str) -> None:
    documented = {id(resolve(target)) for _page, _kind, target, indexed in directives() if indexed}
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if id(getattr(module, name)) not in documented]
    assert not missing, f"{module_name} exports these without a reference entry: {missing}"


def test_every_directive_names_an_object_that_exists() -> None:
    for page, _kind, target, _indexed in directives():
        try:
            resolve(target)
        except (ImportError, AttributeError) as exc:
            raise AssertionError(f"{page.relative_to(DOCS)}: {target} does not exist") from exc


def test_every_page_is_in_the_navigation() -> None:
    reached = {"index"}
    todo = ["index"]
    while todo:
        name = todo.pop()
        page = DOCS / f"{name}.md"
        base = page.parent.relative_to(DOCS)
        for block in TOCTREE.findall(page.read_text()):
            for line in block.splitlines():
                entry = line.strip()
                if not entry or entry.startswith(":"):
                    continue
                child = (base / entry).as_posix().removeprefix("./")
                assert (DOCS / f"{child}.md").is_file(), f"{name}.md lists {entry}, not a page"
                if child not in reached:
                    reached.add(child)
                    todo.append(child)
    everything = {p.relative_to(DOCS).with_suffix("").as_posix() for p in pages()}
    assert everything - reached == set(), "pages that no toctree reaches"
