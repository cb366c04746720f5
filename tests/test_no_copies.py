"""No helper is defined both in a chapter and in a test.

A test that re-defines a chapter's helper checks its copy, not the chapter:
shared quantities live in `explodebook.metrics`, and a test that needs a
chapter's own code runs it (`_chapter.run_cells`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def chapter_functions() -> dict[str, str]:
    found = {}
    for path in sorted((ROOT / "chapters").glob("*.md")):
        for cell in _CELL.findall(path.read_text()):
            for name in re.findall(r"^def (\w+)\(", cell, re.M):
                found[name] = path.name
    return found


def test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("test")
    }


test_functions.__test__ = False  # a helper, not a test


def test_no_function_is_defined_in_a_chapter_and_in_a_test() -> None:
    in_chapters = chapter_functions()
    assert in_chapters, "no chapter function found: the parser is broken"
    copies = {
        f"{name} ({in_chapters[name]} and tests/{path.name})"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for name in test_functions(path) & set(in_chapters)
    }
    assert not copies, "defined in a chapter and again in a test: " + ", ".join(sorted(copies))
