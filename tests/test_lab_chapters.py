"""Whole chapters in JupyterLab, as a learner runs them: as good as the page.

For each chapter, the test starts the project's ``jupyter lab`` (as
``make lab`` configures it: chapters open through jupytext, MyST rendered
by jupyterlab-myst, the book's contents manager), opens a copy of the
chapter's ``.md`` in headless Chromium (other hosts blocked), and checks:

- the notebook is not marked modified before anything is touched;
- *Run > Run All Cells* runs every cell without an error;
- the MyST renders: no raw role or directive syntax left in a Markdown cell
  (``{eval}``, ``{cite}``, ``:::``, fences), math typeset, every inline
  expression (``{eval}``) shown with a value (none empty, none an error),
  no empty dropdown, and the citations, exercises and dropdowns the
  chapter has are rendered as such;
- the chapter's `explore` widget (if any) answers a key press with a new
  figure.

It measures, per chapter: Run All time, time until the first output
appears (the set-up cell's status line), the widget's response and the
kernel's peak memory (``VmHWM`` of the kernel process), and writes them to
``_build/lab-chapters.md`` (``make bench-lab`` copies the table of a run
over every chapter into ``benchmarks/lab_results.md``).

Which chapters: ``EXPLODEBOOK_LAB_CHAPTERS`` (comma-separated numbers, or
``all``); by default chapters 1, 3 and 7, which is what CI affords.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _lab import LabServer, is_explore_cell, remove
from conftest import ROOT
from test_lab import LATENCY_BUDGET, LabPage, Widget

pytestmark = pytest.mark.book

ALL = sorted(p.name for p in (ROOT / "chapters").glob("*.md"))
_WANTED = os.environ.get("EXPLODEBOOK_LAB_CHAPTERS", "01,03,07")
CHAPTERS = ALL if _WANTED == "all" else [c for c in ALL if c.split("_")[0] in _WANTED.split(",")]
#: Seconds for Run All of one chapter (kernel start included), on a loaded machine.
RUN_BUDGET = float(os.environ.get("EXPLODEBOOK_LAB_RUN_BUDGET", "900"))
#: The most memory a chapter's kernel may use (instructors size JupyterHub/Binder by it).
MEMORY_LIMIT_MIB = 1536
REPORT = ROOT / "_build" / "lab-chapters.md"
FAILURES = ROOT / "_build" / "browser-failures"

#: MyST syntax that must not survive rendering: roles and directive fences.
RAW_MYST = re.compile(r"\{(eval|glue(:\w+)?|cite(:\w+)?|numref|ref|doc|math|dropdown|exercise|solution|admonition|note|figure)\}|^:::|^```", re.M)

_STATE = """() => {
    const md = [...document.querySelectorAll('.jp-MarkdownCell')];
    return {
        text: md.map(c => c.innerText).join('\\n'),
        // jupyterlab-myst shows an expression it has no value for as <code>expr</code>,
        // a text value as a plain <span>, an error as a stderr span
        code: [...document.querySelectorAll('.jp-MarkdownCell code')].map(e => e.textContent),
        expressionErrors: document.querySelectorAll(
            '.jp-MarkdownCell [data-mime-type="application/vnd.jupyter.stderr"]').length,
        dropdowns: [...document.querySelectorAll('.jp-MarkdownCell .myst-dropdown')]
            .map(d => (d.querySelector('.myst-dropdown-body') || {textContent: ''}).textContent.trim()),
        exercises: document.querySelectorAll('.jp-MarkdownCell .myst-exercise').length,
        math: document.querySelectorAll('.jp-MarkdownCell .katex').length,
        dirty: document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty').length,
    };
}"""


# Opening a <details> fires its toggle event, as a click on its summary does.
_OPEN_DROPDOWNS = """() => document.querySelectorAll('.jp-MarkdownCell details.myst-dropdown:not([open])')
    .forEach(d => { d.open = true; })"""


def _source_counts(path: Path) -> dict[str, int]:
    """What the chapter's Markdown holds, to compare with what Lab rendered."""
    import jupytext

    from explodebook.book.expressions import EVAL_ROLE

    markdown = "\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "markdown")
    return {
        "expressions": len(EVAL_ROLE.findall(markdown)),
        "dropdowns": len(re.findall(r"^:{3,}\{dropdown\}", markdown, re.M)),
        "exercises": len(re.findall(r"^:{3,}\{exercise\}", markdown, re.M)),
        "math": len(re.findall(r"\$[^$\n]+\$", markdown)),
    }


def _expressions(path: Path) -> set[str]:
    import jupytext

    from explodebook.book.expressions import all_expressions

    return set(all_expressions(jupytext.read(path).cells))


def _kernel_peak_mib(server: LabServer) -> float | None:
    """Peak resident memory of the server's (only) kernel, from /proc (Linux)."""
    ids = [k["id"] for k in server.api("kernels")]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if not any(f"kernel-{i}" in cmdline for i in ids):
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if match:
            return int(match.group(1)) / 1024
    return None


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[LabServer, Path, list[str]]]:
    if not Path(sys.executable).with_name("jupyter").exists():
        pytest.skip(f"no jupyter next to {sys.executable} (install requirements.txt)")
    home = Path(tempfile.mkdtemp(prefix="explodebook-lab-"))
    (ROOT / "_build").mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="lab-chapters-", dir=ROOT / "_build"))
    server = LabServer(ROOT, home)
    rows: list[str] = []
    try:
        server.wait_until_up()
        yield server, scratch, rows
    finally:
        server.stop()
        remove(scratch)
        remove(home)
        table = [
            f"JupyterLab, whole chapters ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.1f}); contents manager "
            + ("from `make venv`" if server.contents_manager_from_makefile else "given by the test"),
            "",
            "| chapter | Run All (s) | first output (s) | widget: new figure (s) | kernel peak memory (MiB) |",
            "|---|---|---|---|---|",
            *rows,
        ]
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text("\n".join(table) + "\n")
        print("\n" + "\n".join(table))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.split("_")[0])
def test_chapter_in_jupyterlab(chapter: str, lab, browser) -> None:
    import jupytext

    server, scratch, rows = lab
    source = ROOT / "chapters" / chapter
    copy = scratch / chapter
    shutil.copy(source, copy)
    expected = _source_counts(source)
    expected_expressions = _expressions(source)
    cells = jupytext.read(source).cells
    explore_cell = next(
        (i for i, c in enumerate(cells) if c.cell_type == "code" and is_explore_cell(c.source)), None
    )
    page = LabPage(browser, server, copy, workspace=f"chapter-{chapter.split('_')[0]}")
    try:
        page.wait_for_kernel()
        state = page.page.evaluate(_STATE)
        assert state["dirty"] == 0, "the chapter shows as modified before anything was touched"

        # Run All; the first output is the set-up cell's status line.
        page.page.evaluate(
            """() => { window.__ebFirst = null; const t0 = performance.now();
                new MutationObserver((_, obs) => {
                    if (document.querySelector('.jp-CodeCell .jp-OutputArea-output')) {
                        window.__ebFirst = (performance.now() - t0) / 1000; obs.disconnect(); }
                }).observe(document.body, {childList: true, subtree: true}); }"""
        )
        ran = page.run_all(RUN_BUDGET)
        first = page.page.evaluate("() => window.__ebFirst")
        peak = _kernel_peak_mib(server)
        # jupyterlab-myst evaluates a Markdown cell's expressions when Run All
        # reaches it: wait until every expression shows a value. Open every
        # dropdown (answers, solutions; their content is rendered only when
        # open) on each pass: a cell that receives its values is rendered
        # again, which replaces its dropdowns with closed ones (clicking a
        # header found before that failed with "not attached to the DOM").
        deadline = time.perf_counter() + 60
        while True:
            page.page.evaluate(_OPEN_DROPDOWNS)
            state = page.page.evaluate(_STATE)
            unevaluated = sorted(set(state["code"]) & expected_expressions)
            done = not unevaluated and all(state["dropdowns"])
            if done or time.perf_counter() > deadline:
                break
            time.sleep(1)

        raw = sorted({m.group(0) for m in RAW_MYST.finditer(state["text"])})
        assert raw == [], f"raw MyST in the rendered Markdown: {raw}"
        assert state["expressionErrors"] == 0, "an inline expression shows an error"
        assert unevaluated == [], f"inline expressions shown without a value: {unevaluated[:5]}"
        # solutions render as dropdowns too
        assert len(state["dropdowns"]) >= expected["dropdowns"] and all(state["dropdowns"]), state["dropdowns"]
        assert state["exercises"] >= expected["exercises"]
        if expected["math"]:
            assert state["math"] > 0, "no math typeset"
        assert page.errors == [], f"page errors: {page.errors[:3]}"
        assert page.blocked == [], f"requests to other hosts: {page.blocked[:3]}"

        response = "no widget"
        if explore_cell is not None:
            widget = Widget(page, explore_cell)
            assert "Cannot run" not in widget.wait_idle(LATENCY_BUDGET)
            slider = widget.box.locator(".widget-slider").first
            label = slider.locator(".widget-label").inner_text().strip()
            src, _ = widget.image_state()
            before = widget.value(label)
            t0 = time.perf_counter()
            widget.press(label, "ArrowRight")
            time.sleep(0.2)
            if widget.value(label) == before:  # the slider was at its last value
                t0 = time.perf_counter()
                widget.press(label, "ArrowLeft")
            widget.wait_new_image(src, LATENCY_BUDGET)
            response = f"{time.perf_counter() - t0:.2f}"
        rows.append(
            f"| {chapter[:-3]} | {ran:.0f} | {first if first is None else f'{first:.1f}'} | {response} | "
            f"{'?' if peak is None else f'{peak:.0f}'} |"
        )
        if peak is not None:
            assert peak < MEMORY_LIMIT_MIB, f"the kernel peaked at {peak:.0f} MiB"
        assert source.read_text() == copy.read_text()  # nothing saved
    except BaseException:
        FAILURES.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(FAILURES / f"lab-chapter-{chapter.split('_')[0]}.png"), full_page=True)
        raise
    finally:
        page.page.close()
        server.shutdown_kernels()
