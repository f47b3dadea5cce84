"""The rules of the layout that import-linter cannot see (it checks imports; see pyproject.toml).

State has one owner: an object changes its own fields and others ask it, so no module reads or
writes another object's private attributes. A name starting with an underscore may be used on
something other than ``self`` only in the module whose classes define it (a codec and the
broadcast loop next to it, say), never from another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ratchetpy"

# Private names of the standard library that appear in annotations.
_FOREIGN_TYPES = {"zlib._Compress", "zlib._Decompress"}


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Private attributes and methods that the classes of a module define for themselves."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__slots__":
                    value = ast.literal_eval(node.value)
                    names.update(value if not isinstance(value, str) else [value])
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _foreign_private_uses(path: Path, root: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        target = node.value
        if isinstance(target, ast.Name) and target.id in ("self", "cls"):
            continue
        if isinstance(target, ast.Call) and getattr(target.func, "id", None) == "super":
            continue
        text = ast.unparse(node)
        if name in own or text in _FOREIGN_TYPES:
            continue
        found.append(f"{path.relative_to(root)}:{node.lineno}: {text}")
    return found


def test_no_module_reads_another_modules_private_state() -> None:
    offences = [use for path in sorted(SRC.rglob("*.py")) for use in _foreign_private_uses(path)]
    assert offences == []


def test_the_rule_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._count = 0\n"
        "def ok(mine):\n"
        "    return mine._count\n"
        "def bad(caller):\n"
        "    return caller._open_calls\n",
        encoding="utf-8",
    )
    assert _foreign_private_uses(sample, tmp_path) == ["sample.py:7: caller._open_calls"]
