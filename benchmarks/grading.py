"""How long each chapter's assignment takes: to work through, and to grade.

Run with ``.venv/bin/python benchmarks/grading.py`` (``make bench`` runs
it too); writes ``benchmarks/grading_results.md``, which the book's
instructor guide (``instructors.md``) includes. Not part of the tests.

For every chapter of the toc:

1. *run all*: seconds to execute the whole chapter, as a student running
   every cell does: the book build's own execution time, read from an
   execution cache (``--cache``; the latest record of each chapter; a cold
   ``make book`` on an idle machine gives the fairest figures);
2. *one notebook*: wall seconds of ``grade_notebook`` on the chapter's
   reference solutions, alone: starting the sandbox (its imports of
   PyTorch and TensorFlow), running the first cell and the answer cells
   in it, and every check in the grader, cold;
3. *per notebook in a class*: wall seconds of grading a class of
   ``--class-size`` copies of the reference notebook with ``grade(...,
   jobs=--jobs)``, divided by the class size: what ``make grade`` costs
   per student (the sandbox starts once; the checks' reference runs are
   computed once);
4. with ``--old TREE`` (a checkout of the grader before the sandbox, e.g.
   ``git worktree add /tmp/old 2c89272^``): wall seconds of that grader's
   ``grade_notebook`` (``otter run``) on the same notebook, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "agg")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import toc_files  # noqa: E402

from explodebook.coursework.assignment import assign, load_questions  # noqa: E402
from explodebook.coursework.grading import default_jobs, grade, grade_notebook  # noqa: E402

_OLD = (
    "import sys, time; from explodebook.coursework.grading import grade_notebook; "
    "t = time.perf_counter(); r = grade_notebook(sys.argv[1], sys.argv[2]); "
    "print('OLD', time.perf_counter() - t, r.total, r.total_possible)"
)


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


def previous_run_all(path: Path) -> tuple[dict[str, str], str]:
    """Run-all seconds by chapter from an earlier results file, and its date."""
    import re

    if not path.exists():
        return {}, ""
    text = path.read_text()
    date = re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text)
    values = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 3 and re.match(r"\d\d_", cells[0]) and cells[2] not in ("", "–"):
            values[cells[0]] = cells[2].rstrip("*")
    return values, date[1] if date else ""


def old_seconds(tree: Path, notebook: Path, autograder: Path) -> float | None:
    """Seconds the grader of ``tree`` takes on one notebook (None if it failed)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", _OLD, str(notebook), str(autograder)],
                          env=env, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OLD ")]
    return float(lines[-1].split()[1]) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--class-size", type=int, default=8, help="notebooks in the class")
    parser.add_argument("--jobs", type=int, default=None, help="grade --jobs (default: cores)")
    parser.add_argument("--old", default=None, help="a checkout of the old grader, to compare")
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter stems (default all)")
    parser.add_argument("--out", default=str(HERE / "grading_results.md"))
    parser.add_argument(
        "--cache",
        default=str(ROOT / "_build" / ".jupyter_cache"),
        help="the execution cache to read chapter times from (a cold build's is best)",
    )
    args = parser.parse_args()
    jobs = args.jobs or default_jobs()
    earlier, earlier_date = previous_run_all(Path(args.out))
    reused = False

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for page in toc_files():
            if not page.startswith("chapters/"):
                continue
            chapter = ROOT / f"{page}.md"
            if args.chapters and chapter.stem not in args.chapters:
                continue
            files = assign(chapter, Path(tmp) / chapter.stem, book=ROOT)
            questions = len(load_questions(chapter))
            run_all = execution_seconds(chapter, Path(args.cache))
            run_all_text = "–" if run_all is None else f"{run_all:.0f}"
            if run_all is None and chapter.stem in earlier:  # no cache: the last measurement
                run_all_text, reused = earlier[chapter.stem] + "*", True
            cells = ["–"] * 4 + (["–", "–"] if args.old else [])
            if questions:
                start = time.perf_counter()
                single = grade_notebook(files.solution, files.autograder)
                one = time.perf_counter() - start
                folder = Path(tmp) / chapter.stem / "class"
                folder.mkdir()
                for i in range(args.class_size):
                    shutil.copy(files.solution, folder / f"student{i + 1:02d}.ipynb")
                if single.total < single.total_possible:  # say why, for the record
                    print(f"{chapter.stem}: the reference lost points ({single.status}; "
                          f"{single.notes}): {single.feedback}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                table = grade([folder], files.autograder, jobs=jobs)
                for path, row in table[table["total"] < table["possible"]].iterrows():
                    print(f"{chapter.stem}: {path} lost points ({row['status']}; {row['error']}; "
                          f"{row['notes']})", file=sys.stderr, flush=True)
                per = (time.perf_counter() - start) / args.class_size
                full = int((table["total"] == table["possible"]).sum())
                cells = [
                    f"{one:.0f}",
                    f"{per:.1f}",
                    f"{table['seconds'].median():.1f}",
                    f"{single.total:g} / {single.total_possible:g}; class {full}/{len(table)}",
                ]
                if args.old:
                    old = old_seconds(Path(args.old), files.solution, files.autograder)
                    cells += ["–", "–"] if old is None else [f"{old:.0f}", f"{old / per:.1f}×"]
            rows.append(
                f"| {chapter.stem} | {questions} | "
                f"{run_all_text} | " + " | ".join(cells) + " |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    old_head = " old grader, one notebook (s) | old ÷ class |" if args.old else ""
    old_rule = "---:|---:|" if args.old else ""
    table = "\n".join(
        [
            f"Measured on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
            f"cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, load "
            f"average {load:.1f} at the end; `python benchmarks/grading.py --class-size "
            f"{args.class_size} --jobs {jobs}"
            + (" --old ..." if args.old else "") + "`.",
            "",
            "| chapter | autograded | run all (s) | grade one notebook (s) "
            f"| per notebook, class of {args.class_size}, {jobs} jobs (s) "
            "| its cells in the sandbox (s) | reference |" + old_head,
            "|---|---:|---:|---:|---:|---:|---:|" + old_rule,
            *rows,
            "",
            *([f"\\* *run all* from the previous measurement ({earlier_date}): no execution "
               "cache to read this time.", ""] if reused else []),
        ]
    )
    Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
