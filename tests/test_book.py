"""The book builds with warnings as errors, every chapter executed.

This is the slow test (minutes): ``make test-fast`` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, toc_files


@pytest.mark.book
def test_book_builds_without_warnings(build: subprocess.CompletedProcess[str]) -> None:
    log = build.stdout + build.stderr
    problems = [line for line in log.splitlines() if ": WARNING:" in line or ": ERROR:" in line]
    assert build.returncode == 0, "\n".join(problems) or log[-5000:]


@pytest.mark.book
def test_every_toc_page_is_rendered_and_executed(build: subprocess.CompletedProcess[str]) -> None:
    html = ROOT / "_build" / "html"
    reports = list((html / "reports").rglob("*.log")) if (html / "reports").exists() else []
    assert not reports, f"execution errors: {reports}"
    for name in toc_files():
        page = html / f"{name}.html"
        assert page.exists(), f"{page} was not built"
        if name.startswith("chapters/"):
            text = page.read_text()
            # executed: figures are embedded or linked from the page
            assert "<img" in text, f"{page} has no figure"
            assert "Traceback" not in text, f"{page} shows a traceback"


# -- the student edition --------------------------------------------------------

STUDENT_HTML = ROOT / "_build" / "student" / "_build" / "html"


def solution_sentences() -> dict[str, list[str]]:
    """A few words from the prose of every solution, per chapter.

    Taken from the chapter sources (the one source of truth), so a new
    solution is checked without new test code.
    """
    import re

    found: dict[str, list[str]] = {}
    pattern = re.compile(r"^:{3,}\{solution\}.*?\n(.*?)^:{3,}\s*$", re.S | re.M)
    for name in toc_files():
        if not name.startswith("chapters/"):
            continue
        text = (ROOT / f"{name}.md").read_text()
        # Words that also occur outside the solutions prove nothing.
        outside = " ".join(pattern.sub("", text).split())
        for block in pattern.findall(text):
            lines = [
                line.strip() for line in block.splitlines()
                if line.strip() and not line.startswith((":", "`", " ", "#", "$", "|", "-"))
                and re.fullmatch(r"[A-Za-z ,.()]+", line.strip()) and len(line.split()) >= 6
                and " ".join(line.split()[:6]) not in outside
            ]
            if lines:
                found.setdefault(name, []).append(max(lines, key=len))
    return found


@pytest.fixture(scope="module")
def student_build(build: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    # After the full edition: they share the execution cache, so this
    # build executes nothing and takes about a minute.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    shutil.rmtree(ROOT / "_build" / "student", ignore_errors=True)
    # -o: never (re)install the venv here, even when requirements.txt is
    # newer than its stamp: other xdist workers are running from it.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "book-student", f"PYTHON={sys.executable}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000,
    )


@pytest.mark.book
def test_student_edition_builds_without_warnings(student_build) -> None:
    log = student_build.stdout + student_build.stderr
    problems = [line for line in log.splitlines() if ": WARNING:" in line or ": ERROR:" in line]
    assert student_build.returncode == 0, "\n".join(problems) or log[-5000:]
    assert "Executing notebook" not in log, "the student edition re-executed chapters"


@pytest.mark.book
def test_student_edition_has_exercises_but_no_solution_text(student_build) -> None:
    sentences = solution_sentences()
    # Enough to mean something: every page with solutions, two sentences
    # or more each (a page's three exercises may have math or code only).
    with_solutions = [name for name in toc_files() if name.startswith("chapters/")
                      and "{solution}" in (ROOT / f"{name}.md").read_text()]
    assert sorted(sentences) == sorted(with_solutions) != []
    assert all(len(lines) >= 2 for lines in sentences.values()), {n: len(v) for n, v in sentences.items()}
    for name, lines in sentences.items():
        full = (ROOT / "_build" / "html" / f"{name}.html").read_text()
        student = (STUDENT_HTML / f"{name}.html").read_text()
        assert 'class="solution' not in student, f"{name}: a solution block is left"
        assert student.count('class="exercise') >= 3, f"{name}: exercises are missing"
        assert "(student edition)" in student
        for line in lines:
            # Rendered HTML may break a line differently: compare words.
            words = " ".join(line.split()[:6])
            assert words in " ".join(full.split()), f"{name}: {words!r} not in the full book"
            assert words not in " ".join(student.split()), f"{name}: solution text {words!r}"
    # Nothing anywhere in the published files: no copies of the sources,
    # no notebooks, no search index entry holds a solution.
    every = [words for lines in sentences.values() for words in
             (" ".join(line.split()[:6]) for line in lines)]
    for path in STUDENT_HTML.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".js", ".txt", ".md", ".ipynb", ".json"}:
            text = " ".join(path.read_text(errors="replace").split())
            leaked = [words for words in every if words in text]
            assert not leaked, f"{path.relative_to(STUDENT_HTML)} holds solution text {leaked[:2]}"
