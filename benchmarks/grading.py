"""How long each chapter's assignment takes: to work through, and to grade.

Run with ``.venv/bin/python benchmarks/grading.py`` (``make bench`` runs
it too); writes ``benchmarks/grading_results.md``, which the book's
instructor guide (``instructors.md``) includes. Not part of the tests.

For every chapter of the toc:

1. *run all*: seconds to execute the whole chapter, as a student running
   every cell does: the book build's own execution time, read from an
   execution cache (``--cache``; the latest record of each chapter; a cold
   ``make book`` on an idle machine gives the fairest figures);
2. *grade*: median wall seconds of grading its reference-solution notebook
   with ``otter run`` (what ``make grade`` does per submission): a fresh
   kernel, the chapter's first cell, the answer cells and every check.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from explodebook.book.sources import toc_pages  # noqa: E402
from explodebook.coursework.assignment import assign, load_questions  # noqa: E402
from explodebook.coursework.grading import grade_notebook  # noqa: E402


def execution_seconds(chapter: Path, cache: Path) -> float | None:
    """The latest recorded execution time of a chapter in an execution cache."""
    from jupyter_cache import get_cache

    if not cache.exists():
        return None
    records = [
        r for r in get_cache(str(cache)).list_cache_records() if Path(r.uri).name == chapter.name
    ]
    if not records:
        return None
    latest = max(records, key=lambda r: r.created)
    return float(latest.data.get("execution_seconds", "nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="gradings per chapter")
    parser.add_argument("--out", default=str(HERE / "grading_results.md"))
    parser.add_argument(
        "--cache",
        default=str(ROOT / "_build" / ".jupyter_cache"),
        help="the execution cache to read chapter times from (a cold build's is best)",
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for page in toc_pages(ROOT):
            if not page.startswith("chapters/"):
                continue
            chapter = ROOT / f"{page}.md"
            files = assign(chapter, Path(tmp) / chapter.stem, book=ROOT)
            questions = len(load_questions(chapter))
            run_all = execution_seconds(chapter, Path(args.cache))
            graded = "– | –"  # nothing to autograde: every exercise is graded by hand
            if questions:
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    result = grade_notebook(files.solution, files.autograder)
                    times.append(time.perf_counter() - start)
                graded = (
                    f"{statistics.median(times):.0f} | "
                    f"{result.total:g} / {result.total_possible:g}"
                )
            rows.append(
                f"| {chapter.stem} | {questions} | "
                f"{'–' if run_all is None else f'{run_all:.0f}'} | {graded} |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = "\n".join(
        [
            f"Measured on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, load average "
            f"{load:.1f} at the end; `python benchmarks/grading.py`.",
            "",
            "| chapter | autograded | run all (s) | grade (s) "
            "| reference |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
