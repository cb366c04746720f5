"""Saving a chapter from JupyterLab must not change it.

JupyterLab opens a chapter through jupytext (MyST Markdown -> notebook) and
saves it back (notebook -> MyST Markdown); a learner's or contributor's
save must produce no diff, so that round trip is the identity for every
chapter.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.md"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_jupytext_round_trip_is_the_identity(path: Path) -> None:
    text = path.read_text()
    saved = jupytext.writes(jupytext.reads(text, fmt="md:myst"), fmt="md:myst")
    assert saved == text, f"saving {path.name} from JupyterLab would rewrite it"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_saving_after_run_all_writes_no_expression_values(path: Path) -> None:
    # jupyterlab-myst stores each Markdown cell's {eval} results in its
    # metadata when the cell runs; the project's jupytext.toml (the config
    # JupyterLab's jupytext reads for chapters/) keeps them out of the source.
    from jupytext.config import load_jupytext_config

    from explodebook.book.expressions import expressions_in

    text = path.read_text()
    notebook = jupytext.reads(text, fmt="md:myst")
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = expressions_in(cell.source) or ["1 + 1"]
            cell.metadata["user_expressions"] = [
                {"expression": e, "result": {"status": "ok", "data": {"text/plain": "2"}, "metadata": {}}}
                for e in found
            ]
    config = load_jupytext_config(str(path.parent))
    assert config is not None, "no jupytext configuration for chapters/"
    assert jupytext.writes(notebook, fmt="md:myst", config=config) == text
