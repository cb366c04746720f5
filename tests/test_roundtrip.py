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
