"""`explodebook.book.lint`: the chapters keep the book's rules; each rule catches what it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from explodebook.book.lint import ENFORCED, book_pages, lint

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = book_pages(ROOT)

HEADER = (
    "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
    "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# T\n\n"
)
FIGURE = (
    "```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: A caption.\n    name: fig-t-ok\n"
    "tags: [hide-input]\n---\nfig, ax = plt.subplots()\n```\n\n"
)


def test_every_chapter_keeps_the_enforced_rules() -> None:
    reports, problems = lint(CHAPTERS)
    broken = [str(p) for p in problems if p.rule in ENFORCED]
    assert broken == []
    assert len(reports) == len(CHAPTERS)
    assert all(r.figures == r.captioned for r in reports)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("```{code-cell} ipython3\nfig, ax = plt.subplots()\n```\n", "uncaptioned-figure"),
        # a drawing function defined in one cell, called in another
        ("```{code-cell} ipython3\ndef draw():\n    return plots.loss_curve(t)\n```\n\n"
         "```{code-cell} ipython3\ndraw()\n```\n", "uncaptioned-figure"),
        # a package helper that draws (explodebook.remedies.draw_pair)
        ("```{code-cell} ipython3\nfig = draw_pair(a, b)\n```\n", "uncaptioned-figure"),
        ("```{code-cell} ipython3\ndefault_draw([a, b]);\n```\n", "uncaptioned-figure"),
        ("See {numref}`fig-t-missing`.\n", "numref"),
        ("See {numref}`Figure %s <fig-t-missing>`.\n", "numref"),
        (FIGURE, "duplicate-name"),
        ("::::{tab-set}\n:::{tab-item} A\n```{code-cell} ipython3\n1\n```\n:::\n::::\n", "tab-code"),
        ("The loss is {glue:text}`loss:.2f`.\n", "glue"),
        ("```{code-cell} ipython3\n" + "x = 1\n" * 21 + "```\n", "long-cell"),
        ("text\n" * 701, "length"),
        (":::{exercise}\n:label: t-ex\nDo it.\n:::\n", "difficulty"),
        (":::{exercise} Hard\n:label: t-ex\nDo it.\n:::\n", "difficulty"),
        (":::{exercise} ★★★★\n:label: t-ex\nDo it.\n:::\n", "difficulty"),
        ("```{code-cell} ipython3\nexplore(a)\n```\n\n```{code-cell} ipython3\nexplore(b)\n```\n", "widgets"),
        ("```{code-cell} ipython3\nscrubber(a)\nscrubber(b)\n```\n", "widgets"),
        (FIGURE.replace("fig-t-ok", "fig-t-alone"), "unreferenced-figure"),
    ],
    ids=["figure", "figure-via-function", "figure-via-helper", "figure-via-default-draw", "numref", "numref-titled", "duplicate", "tab-code", "glue", "long-cell",
         "length", "no-difficulty", "words-not-stars", "four-stars", "two-explore", "two-scrubbers", "unreferenced"],
)
def test_each_rule_catches_what_it_names(tmp_path: Path, body: str, rule: str) -> None:
    chapter = tmp_path / "c.md"
    chapter.write_text(HEADER + FIGURE + "See {numref}`fig-t-ok`.\n\n" + body)
    _, problems = lint([chapter])
    assert [p.rule for p in problems] == [rule], [str(p) for p in problems]


def test_what_is_not_a_problem(tmp_path: Path) -> None:
    chapter = tmp_path / "c.md"
    chapter.write_text(
        HEADER + FIGURE + "See {numref}`fig-t-ok`.\n\n"
        # widgets draw into themselves; definitions draw nothing; hidden long cells are fine
        "```{code-cell} ipython3\nexplore(spec, draw=lambda t: plots.loss_curve(t))\n```\n\n"
        "```{code-cell} ipython3\ndef draw():\n    return plt.subplots()\n```\n\n"
        "```{code-cell} ipython3\n:tags: [hide-input]\n\n" + "x = 1\n" * 30 + "```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-output]\n\nplt.subplots()\n```\n"
        # one widget of each kind; exercises rated, with or without words after the stars
        "```{code-cell} ipython3\nscrubber(trace)\n```\n\n"
        ":::{exercise} ★\n:label: t-ex-1\nDo it.\n:::\n\n"
        ":::{exercise} ★★★ Predict, then run\n:label: t-ex-2\nDo it.\n:::\n"
    )
    reports, problems = lint([chapter])
    assert problems == []
    (report,) = reports
    assert (report.figures, report.captioned, report.visible_cells) == (1, 1, 4)
    assert (report.exercises, report.rated) == (2, 2)
