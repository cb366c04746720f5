"""Run a chapter's own code cells in a test, instead of copying its helpers.

A test that re-defines a chapter's helper tests the copy, not the chapter.
`run_cells` executes the chapter's code cells, in order, in a fresh
namespace, up to the cell that holds a given line, and returns the
namespace: the test then reads what the chapter itself defined and
computed. ``glue`` records into ``namespace["_glued"]`` instead of
displaying. The inline expressions of the Markdown cells on the way
(``{eval}`expr```) are evaluated where execution reaches them, as the book's
prebuild and JupyterLab do, into ``namespace["_shown"]`` (expression ->
value): a test reads the number the page shows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jupytext
import matplotlib as mpl
import matplotlib.pyplot as plt
import myst_nb
import torch

from explodebook.book.expressions import expressions_in

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def code_cells(chapter: str) -> list[str]:
    """The code cells of ``chapters/<chapter>_*.md``, without their option lines."""
    (path,) = CHAPTERS.glob(f"{chapter}_*.md")
    cells = []
    for match in _CELL.finditer(path.read_text()):
        lines = match.group(1).splitlines()
        while lines and lines[0].startswith(":"):  # :tags: and other options
            lines.pop(0)
        cells.append("\n".join(lines))
    return cells


def run_cells(chapter: str, through: str) -> dict[str, Any]:
    """Execute the chapter's cells up to the first one containing ``through``.

    Args:
        chapter: the file name's start, e.g. ``"07"``.
        through: a line (or any text) of the last cell to run.

    Returns:
        the namespace the cells ran in.
    """
    (path,) = CHAPTERS.glob(f"{chapter}_*.md")
    cells = jupytext.read(path, fmt="md:myst").cells
    last = next((i for i, c in enumerate(cells) if c.cell_type == "code" and through in c.source), None)
    if last is None:
        raise ValueError(f"no code cell of chapter {chapter} contains {through!r}")
    glued: dict[str, Any] = {}

    def glue(name: str, variable: Any, display: bool = True) -> None:
        glued[name] = variable

    shown: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__name__": f"chapter_{chapter}", "_glued": glued, "_shown": shown}
    original = myst_nb.glue
    threads = torch.get_num_threads()
    myst_nb.glue = glue
    # The chapter's set-up changes process-wide state (the plot style, PyTorch's
    # threads): give it back, so tests that run later see the defaults.
    try:
        with mpl.rc_context():
            for index, cell in enumerate(cells[: last + 1]):
                if cell.cell_type == "code":
                    exec(compile(cell.source, f"<chapter {chapter} cell {index}>", "exec"), namespace)
                elif cell.cell_type == "markdown":
                    for expr in expressions_in(cell.source):
                        try:
                            shown[expr] = eval(expr, namespace)
                        except Exception as error:
                            raise AssertionError(
                                f"chapter {chapter}, cell {index}: {{eval}}`{expr}` raised {error!r}"
                            ) from error
    finally:
        myst_nb.glue = original
        torch.set_num_threads(threads)
        plt.close("all")
    return namespace
