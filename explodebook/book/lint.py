"""A fast lint of the chapters' sources (no build): length, visible code, figures, references.

``python -m explodebook.book.lint`` prints, per chapter, what a reader's
page is made of and what breaks the book's rules (issue 18's "keep it
checked"); ``tests/test_lint.py`` runs the same checks. The rules:

- ``length``: a chapter source over `MAX_LINES` lines (a page a reader
  finishes in 20-30 minutes);
- ``long-cell``: a visible code cell (not ``hide-input``, ``hide-cell``,
  ``remove-input`` or ``remove-cell``) over `MAX_VISIBLE_LINES` lines;
- ``uncaptioned-figure``: a visible output that draws a figure (the cell
  creates a matplotlib figure or calls a drawing helper of
  ``explodebook.plots``) without a caption and a name in its
  ``mystnb.figure`` metadata;
- ``numref``: a ``{numref}`` whose target is defined nowhere in the book
  (figure names, ``(label)=`` targets, ``:label:``/``:name:`` options);
- ``duplicate-name``: a figure name or label defined twice;
- ``tab-code``: a ``{code-cell}`` inside a ``tab-set`` (MyST-NB cannot
  execute it there);
- ``glue``: ``glue(...)`` or a ``{glue}`` role: numbers reach the prose
  through ``{eval}`` (`explodebook.book.expressions`);
- ``difficulty``: an ``{exercise}`` without a difficulty (★, ★★ or ★★★) at
  the start of its title;
- ``widgets``: more than one live ``explore`` widget, or more than one
  ``scrubber``, on one page (a section is a page);
- ``unreferenced-figure``: a figure whose name no ``{numref}`` of the book
  cites (the prose refers to a figure by number, never "the figure above").

`ENFORCED` lists the rules the test suite holds every page to: since the
chapters were split into sections (issue 18), all of them.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENFORCED", "MAX_LINES", "MAX_VISIBLE_LINES", "ChapterReport", "Problem", "book_pages", "lint", "main",
]

#: Longest chapter source, in lines.
MAX_LINES = 700
#: Longest visible code cell, in lines.
MAX_VISIBLE_LINES = 20
#: The rules the test suite enforces (all of them).
ENFORCED = (
    "length", "long-cell", "uncaptioned-figure", "numref", "duplicate-name", "tab-code", "glue",
    "difficulty", "widgets", "unreferenced-figure",
)

_HIDDEN = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
_NO_OUTPUT = {"remove-output", "remove-cell"}
# A cell that draws a new figure: pyplot's figure makers, or a drawing helper
# of the book's package (they create their figure when given no axes; the
# helpers are named *draw*).
_DRAWS = re.compile(
    r"\bplt\.(subplots|figure|subplot_mosaic)\(|"
    r"\bplots\.(loss_curve|grad_norm_curve|depth_profile|grad_heatmap|layer_norms|weight_norms|compare)\(|"
    # the package's helpers that draw (explodebook.remedies.draw_pair,
    # explodebook.widgets.default_draw, ...)
    r"(?<![\w.])\w*draw\w*\("
)
_NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`>]+)>?`")
_TARGET = re.compile(r"^\(([\w.-]+)\)=\s*$", re.M)
_OPTION_NAME = re.compile(r"^:(?:name|label):\s*(\S+)\s*$", re.M)
_TAB_SET = re.compile(r"^(?P<fence>:{3,}|`{3,})\{tab-set\}.*?^(?P=fence)\s*$", re.M | re.S)
_GLUE = re.compile(r"\{glue(?::\w+)?\}`|\bglue\(")
_EXERCISE = re.compile(r"^:{3,}\{exercise\}(?P<title>[^\n]*)$", re.M)
_DIFFICULTY = re.compile(r"^\s*(★{1,3})(?!★)")


@dataclass
class Problem:
    """One broken rule: where, which rule, what."""

    chapter: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.chapter}: [{self.rule}] {self.message}"


@dataclass
class ChapterReport:
    """What one chapter's page is made of."""

    chapter: str
    lines: int = 0
    code_cells: int = 0
    visible_cells: int = 0
    visible_over: int = 0
    visible_lengths: list[int] = field(default_factory=list)
    figures: int = 0
    captioned: int = 0
    exercises: int = 0
    rated: int = 0

    @property
    def median_visible(self) -> float:
        """Median length of the visible code cells, in lines."""
        values = sorted(self.visible_lengths)
        if not values:
            return 0.0
        mid = len(values) // 2
        return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _draws(source: str, drawing: set[str]) -> bool:
    """Whether a cell draws a figure when it runs; adds its drawing functions to ``drawing``.

    A function draws when its body matches `_DRAWS` or calls a drawing
    function; a cell draws when one of its top-level statements other than
    a definition or an import does.
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics): judge by the text
        return bool(_DRAWS.search(source))

    def calls_drawing(node: ast.AST) -> bool:
        if _DRAWS.search(ast.unparse(node)):
            return True
        return any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in drawing
            for n in ast.walk(node)
        )

    draws = False
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if calls_drawing(statement):
                drawing.add(statement.name)
        elif isinstance(statement, (ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        elif _is_widget(statement):  # explore/scrubber draw into a widget, not a page figure
            continue
        elif calls_drawing(statement):
            draws = True
    return draws


def _is_widget(statement: Any) -> bool:
    import ast

    value = getattr(statement, "value", None)
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("explore", "scrubber")
    )


def _cells(path: Path) -> list[Any]:
    import jupytext

    return jupytext.read(path, fmt="md:myst").cells


def _names(cell: Any) -> list[str]:
    figure = (cell.metadata.get("mystnb") or {}).get("figure") or {}
    return [figure["name"]] if figure.get("name") else []


def lint(chapters: Sequence[str | Path]) -> tuple[list[ChapterReport], list[Problem]]:
    """Check ``chapters`` (MyST Markdown sources) together: references may cross chapters.

    Returns:
        one `ChapterReport` per chapter, and every `Problem` found.
    """
    reports: list[ChapterReport] = []
    problems: list[Problem] = []
    defined: dict[str, str] = {}
    refs: list[tuple[str, str]] = []
    figures: list[str] = []
    for chapter in map(Path, chapters):
        text = chapter.read_text(encoding="utf-8")
        name = chapter.stem
        report = ChapterReport(name, lines=len(text.splitlines()))
        if report.lines > MAX_LINES:
            problems.append(Problem(name, "length", f"{report.lines} lines (at most {MAX_LINES})"))
        for block in _TAB_SET.finditer(text):
            if "{code-cell}" in block.group(0):
                problems.append(Problem(name, "tab-code", "a {code-cell} inside a tab-set"))
        for match in _GLUE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(Problem(name, "glue", f"line {line}: use an {{eval}} expression, not glue"))
        for match in _EXERCISE.finditer(text):
            report.exercises += 1
            if _DIFFICULTY.match(match.group("title")):
                report.rated += 1
            else:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(Problem(name, "difficulty", f"line {line}: an exercise without ★, ★★ or ★★★"))
        labels = _TARGET.findall(text) + _OPTION_NAME.findall(text)
        drawing: set[str] = set()
        widgets = {"explore": 0, "scrubber": 0}
        for cell in _cells(chapter):
            if cell.cell_type == "markdown":
                refs += [(name, target) for target in _NUMREF.findall(cell.source)]
                continue
            if cell.cell_type != "code":
                continue
            report.code_cells += 1
            tags = set(cell.metadata.get("tags") or [])
            labels += _names(cell)
            figures += _names(cell)
            for kind in widgets:
                widgets[kind] += len(re.findall(rf"^{kind}\(", cell.source, re.M))
            if not tags & _HIDDEN:
                length = len(cell.source.splitlines())
                report.visible_cells += 1
                report.visible_lengths.append(length)
                if length > MAX_VISIBLE_LINES:
                    report.visible_over += 1
                    first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
                    problems.append(Problem(name, "long-cell", f"{length} visible lines: {first!r}"))
            if _draws(cell.source, drawing) and not tags & _NO_OUTPUT:
                report.figures += 1
                figure = (cell.metadata.get("mystnb") or {}).get("figure") or {}
                if figure.get("caption") and figure.get("name"):
                    report.captioned += 1
                else:
                    first = cell.source.strip().splitlines()[0][:60]
                    problems.append(Problem(name, "uncaptioned-figure", f"a figure without caption and name: {first!r}"))
        for kind, count in widgets.items():
            if count > 1:
                problems.append(Problem(name, "widgets", f"{count} {kind} widgets on one page (at most 1)"))
        for label in labels:
            if label in defined:
                problems.append(Problem(name, "duplicate-name", f"{label!r} also defined in {defined[label]}"))
            defined[label] = name
        reports.append(report)
    for chapter, target in refs:
        if target not in defined:
            problems.append(Problem(chapter, "numref", f"{{numref}} target {target!r} is defined nowhere"))
    cited = {target for _, target in refs}
    for figure in figures:
        if figure not in cited:
            problems.append(Problem(defined.get(figure, "?"), "unreferenced-figure",
                                    f"no {{numref}} cites figure {figure!r}"))
    return reports, problems


def book_pages(book: str | Path = ".") -> list[Path]:
    """The toc's MyST Markdown pages (the ones with code or prose to lint), in toc order."""
    from explodebook.book.sources import toc_pages

    root = Path(book)
    return [root / f"{page}.md" for page in toc_pages(root) if (root / f"{page}.md").is_file()]


def table(reports: Sequence[ChapterReport]) -> str:
    """The reports as a Markdown table."""
    rows = [
        "| page | lines | code cells | visible | visible > 20 lines | median visible | figures | captioned"
        " | exercises | with ★ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        rows.append(
            f"| {r.chapter} | {r.lines} | {r.code_cells} | {r.visible_cells} | {r.visible_over} | "
            f"{r.median_visible:g} | {r.figures} | {r.captioned} | {r.exercises} | {r.rated} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m explodebook.book.lint [chapters...]``; exit 1 on an enforced rule."""
    parser = argparse.ArgumentParser(prog="python -m explodebook.book.lint", description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="page sources (default: the toc's Markdown pages)")
    args = parser.parse_args(argv)
    chapters = args.chapters or book_pages()
    reports, problems = lint(chapters)
    print(table(reports))
    print()
    for problem in problems:
        print(("ERROR " if problem.rule in ENFORCED else "note  ") + str(problem))
    return 1 if any(p.rule in ENFORCED for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
