"""A chapter's cells as an assignment sees them: which code runs when grading, which belongs to a solution."""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

__all__ = ["join_solutions", "imports_only"]


def imports_only(code: str) -> bool:
    """Whether a code cell only imports (grading runs it: answers use its names)."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


_EXERCISE_LABEL = re.compile(r"^:{3,}\{exercise\}[^\n]*\n(?::[\w-]+:[^\n]*\n)*?:label:[ \t]*(\S+)", re.M)
_SOLUTION_OF = re.compile(r"^:{3,}\{solution\}[ \t]*(\S+)", re.M)


def join_solutions(cells: list[Any]) -> list[Any]:
    """The chapter's cells with each solution in the Markdown cell of its exercise.

    A chapter may compute what a solution quotes in a code cell between the
    exercise and its solution (the book hides it: the page shows the
    numbers in the solution). That code is part of the solution: it is
    dropped from the assignment (students would see the answer computed),
    and the solution joins its exercise's cell. Other cells are unchanged.
    """
    out: list[Any] = []
    waiting: set[str] = set()  # exercises of the last Markdown cell without a solution yet
    at = -1  # that cell's index in ``out``
    held: list[Any] = []  # code cells since then
    for cell in cells:
        if cell.cell_type != "markdown":
            (held if waiting else out).append(cell)
            continue
        solved = set(_SOLUTION_OF.findall(cell.source))
        if waiting and solved & waiting:
            joined = copy.deepcopy(out[at])
            joined.source = out[at].source.rstrip("\n") + "\n\n" + cell.source
            out[at] = joined
            held = []
            waiting = (waiting - solved) | (set(_EXERCISE_LABEL.findall(cell.source)) - solved)
            continue
        out += held
        held = []
        out.append(cell)
        at = len(out) - 1
        waiting = set(_EXERCISE_LABEL.findall(cell.source)) - solved
    return out + held
