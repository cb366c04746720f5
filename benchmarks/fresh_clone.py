"""A new reader's and a new contributor's wait: a fresh clone's `make book` and `make test`, and each page alone.

Run from the repository root with ``.venv/bin/python benchmarks/fresh_clone.py``
(``--steps book alone``, ``--steps test``: a subset); writes
``benchmarks/fresh_clone_results.md`` and prints it. Not part of the tests.

Steps, each timed as wall time and CPU time (user + sys of every process it
starts) with the load average before and after, because the machine may be
shared:

- ``book``: ``git clone`` of the commit into a new folder, then ``make book``
  there: the virtualenv made and installed from the requirements (pip's
  cache of downloads is the user's, as on any second install; nothing
  else is reused), the vendored JavaScript, the chapters executed two at a
  time and the HTML built. Issue 19's target: at most 8 minutes on 2 cores.
- ``alone``: every page executed alone, one at a time, each in a new
  kernel (``prebuild --jobs 1 --fresh-kernels``, in the same clone after
  ``book``, into a separate cache), which is what a reader's *Run All*
  costs: the frameworks' import included. Target: no page over 30 s. Its
  kernel CPU time is given beside the wall time: an idle core turns one
  into the other, a shared one does not.
- ``test``: ``make test`` in a second fresh clone whose virtualenv is made
  first, untimed (a contributor runs the suite again and again in one):
  the suite as CI runs it, the book built from nothing inside it. Target:
  at most 12 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from book_build import PAGE_LINE, timed  # noqa: E402  (benchmarks/ is not a package)

TARGETS = {"book": 8 * 60, "test": 12 * 60, "page": 30}
PYTEST_LINE = re.compile(r"=+ (\d+) passed.* in ([0-9.]+)s")


def clone(ref: str, dest: Path) -> str:
    """A fresh clone of this repository at ``ref`` in ``dest``; its short hash."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "checkout", "-q", "--detach", ref], cwd=dest, check=True)
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=dest, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def make(target: str, clone_dir: Path, log: Path) -> dict[str, Any]:
    """``make TARGET`` in the clone, timed, as in a reader's shell (no environment of this checkout)."""
    return timed(["make", target], clone_dir, log, pythonpath=False)


def alone(clone_dir: Path, log: Path) -> dict[str, Any]:
    """Every page in a new kernel, one at a time, into a cache of its own."""
    python = clone_dir / ".venv" / "bin" / "python"
    out = clone_dir / "_build" / "alone"
    result = timed([str(python), "-m", "explodebook.book.prebuild", ".", "--jobs", "1",
                    "--fresh-kernels", "--path-output", str(out)], clone_dir, log, pythonpath=False)  # fmt: skip
    result["pages"] = {m[1]: (float(m[2]), float(m[3])) for m in PAGE_LINE.finditer(log.read_text())}
    return result


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def report(commit: str, results: dict[str, dict[str, Any]], command: str) -> str:
    load = os.getloadavg()[0]
    lines = [
        "# A fresh clone: `make book`, each page alone, `make test`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"commit {commit}; load average {load:.2f} at the end.",
        "",
        f"Command: `{command}`",
        "",
        "| step | wall | CPU (user + sys) | load before → after | target | status |",
        "|---|---|---|---|---|---|",
    ]
    for step, name in (("book", "cold `make book` in a fresh clone, install included"),
                       ("test", "`make test` in a fresh clone, its virtualenv made before")):  # fmt: skip
        if step not in results:
            continue
        r = results[step]
        verdict = "met" if r["wall"] <= TARGETS[step] and r["status"] == "ok" else "not met"
        extra = f" ({r['tests']})" if r.get("tests") else ""
        lines.append(f"| {name}{extra} | {minutes(r['wall'])} | {r['cpu']:.0f} s | {r['load']} | "
                     f"≤ {TARGETS[step] // 60} min | {verdict} ({r['status']}) |")  # fmt: skip
    if "alone" in results:
        r = results["alone"]
        pages = r["pages"]
        over_wall = [p for p, (w, _) in pages.items() if w > TARGETS["page"]]
        over_cpu = [p for p, (_, c) in pages.items() if c > TARGETS["page"]]
        slowest = max(pages, key=lambda p: pages[p][0]) if pages else "none"
        verdict = "met" if pages and not over_wall and r["status"] == "ok" else "not met"
        lines.append(
            f"| every page alone, each in a new kernel ({len(pages)} pages; slowest {slowest} "
            f"{pages.get(slowest, (0, 0))[0]:.1f} s) | {minutes(r['wall'])} | {r['cpu']:.0f} s | "
            f"{r['load']} | no page over {TARGETS['page']} s | {verdict}: {len(over_wall)} over "
            f"by wall, {len(over_cpu)} by kernel CPU ({r['status']}) |"
        )
        lines += ["", "| page | wall (s) | kernel CPU (s) |", "|---|---:|---:|"]
        lines += [f"| {p} | {w:.1f} | {c:.1f} |" for p, (w, c) in pages.items()]
    lines += [
        "",
        "Wall times depend on the machine's load (the table gives it); CPU times much less. "
        "pip's download cache is the user's: a first install ever also downloads the wheels.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default HEAD)")
    parser.add_argument("--steps", nargs="+", choices=("book", "alone", "test"),
                        default=["book", "alone", "test"])  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "fresh_clone_results.md")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="explodebook-fresh-"))
    try:
        commit = clone(args.ref, work / "book")
        results: dict[str, dict[str, Any]] = {}
        if "book" in args.steps:
            results["book"] = make("book", work / "book", work / "book.log")
        if "alone" in args.steps:
            if not (work / "book" / ".venv" / "bin" / "python").exists():
                make("venv", work / "book", work / "venv.log")  # untimed: alone needs the venv
            results["alone"] = alone(work / "book", work / "alone.log")
        if "test" in args.steps:
            # A clone of its own, as CI's: no execution cache from the steps above.
            # Its virtualenv is made first, untimed: a contributor runs make test
            # again and again in one; the cold install is the book step's.
            clone(args.ref, work / "test")
            make("venv", work / "test", work / "test-venv.log")
            results["test"] = make("test", work / "test", work / "test.log")
            found = PYTEST_LINE.findall((work / "test.log").read_text())
            if found:
                results["test"]["tests"] = f"{found[-1][0]} passed, pytest says {float(found[-1][1]):.0f} s"
        command = "python benchmarks/fresh_clone.py" + (
            "" if args.steps == ["book", "alone", "test"] else " --steps " + " ".join(args.steps))
        text = report(commit, results, command)
        args.out.write_text(text, encoding="utf-8")
        print(text, end="")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
