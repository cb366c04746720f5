"""Issue 19's speed targets in one table, read from the benchmarks' result files.

Each benchmark writes its own Markdown file in ``benchmarks/`` (``make bench``,
``make bench-book``); this script reads the figure each target is judged on
from those files and prints one table: the figure, the target, met or not,
and the file it comes from. A file that is missing or that no longer has the
expected line gives a row that says so, instead of a guess.

    python benchmarks/targets.py            # the table, Markdown
    python benchmarks/targets.py --out F    # also written to F
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The old grader's seconds per notebook on a quiet machine (2026-11-27) and the
#: target: a notebook in at most 10 s, i.e. at most this fraction of the old time.
OLD_GRADER_SECONDS = (22.0, 25.0)
GRADING_TARGET_SECONDS = 10.0


@dataclass(frozen=True)
class Row:
    """One target: what was measured, what it must be, whether it is."""

    target: str
    measured: str
    goal: str
    met: bool | None  # None: not measured (file or line missing)
    source: str


def _read(folder: Path, name: str) -> str | None:
    path = folder / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _missing(target: str, goal: str, source: str, why: str) -> Row:
    return Row(target, why, goal, None, source)


def widgets(folder: Path) -> list[Row]:
    """Target 1: every explore widget, first result <= 0.3 s and final figure <= 1 s."""
    source = "chapter_results.md"
    text = _read(folder, source)
    goals = ("every widget (N of N)", "every widget (N of N)")
    names = ("widgets: first result <= 0.3 s", "widgets: final figure <= 1 s")
    if text is None:
        return [_missing(n, g, source, "no results file") for n, g in zip(names, goals)]
    line = re.search(r"^- After[^:]*:\s*first result ≤ 0\.3 s: (\d+) of (\d+) widgets; "
                     r"final figure ≤ 1 s: (\d+) of (\d+) widgets", text, re.M)
    if line is None:
        return [_missing(n, g, source, "no 'After' line") for n, g in zip(names, goals)]
    first, n_first, final, n_final = map(int, line.groups())
    return [
        Row(names[0], f"{first} of {n_first}", goals[0], first == n_first, source),
        Row(names[1], f"{final} of {n_final}", goals[1], final == n_final, source),
    ]


def sweeps(folder: Path) -> list[Row]:
    """Target 3: a 20x20 grid on N workers within serial/N plus a constant."""
    source = "sweep_results.md"
    text = _read(folder, source)
    if text is None:
        return [_missing("20x20 grid on all cores", "<= serial/N + constant", source, "no results file")]
    rows = []
    for fw, seconds, speedup, verdict in re.findall(
        r"^\| (\w+) \| \d+ workers, cold pool \| ([\d.]+) \| ([\d.]+)x \| ([^|]*)\|", text, re.M
    ):
        goal = verdict.split(":")[0].strip()
        met = verdict.strip().endswith(": met")
        rows.append(Row(f"20x20 grid, {fw}, cold pool", f"{seconds} s ({speedup}x serial)", goal,
                        met, source))
    return rows or [_missing("20x20 grid on all cores", "<= serial/N + constant", source,
                             "no 'cold pool' rows")]


def book(folder: Path) -> list[Row]:
    """Target 4: the book's kernel CPU at most half of the previous version's."""
    source = "book_results.md"
    text = _read(folder, source)
    target, goal = "book: kernel CPU, after / before", "<= 0.5"
    if text is None:
        return [_missing(target, goal, source, "no results file")]
    line = re.search(r"^\| kernel CPU summed over the pages \| ([\d.]+) s[^|]*\| ([\d.]+) s[^|]*\| "
                     r"([\d.]+) \|", text, re.M)
    if line is None:
        return [_missing(target, goal, source, "no before/after kernel CPU row")]
    before, after, ratio = line.groups()
    return [Row(target, f"{after} s / {before} s = {ratio}", goal, float(ratio) <= 0.5, source)]


def grading(folder: Path) -> list[Row]:
    """Target 5: a notebook graded in <= 10 s, against the old grader's 22-25 s, as a ratio."""
    source = "grading_results.md"
    text = _read(folder, source)
    worst_allowed = max(OLD_GRADER_SECONDS) / GRADING_TARGET_SECONDS
    target = "grading: old grader / new, per notebook"
    goal = f">= {worst_allowed:.1f}x on every page (10 s against {OLD_GRADER_SECONDS[1]:.0f} s)"
    if text is None:
        return [_missing(target, goal, source, "no results file")]
    ratios = [float(r) for r in re.findall(r"\| ([\d.]+)× \|\s*$", text, re.M)]
    if not ratios:
        return [_missing(target, goal, source, "no 'old ÷ class' column")]
    measured = f"{min(ratios):.1f}x to {max(ratios):.1f}x over {len(ratios)} pages"
    return [Row(target, measured, goal, min(ratios) >= worst_allowed, source)]


def fresh_clone(folder: Path) -> list[Row]:
    """Target 4: a fresh clone's cold ``make book`` (install included), each page alone, ``make test``."""
    source = "fresh_clone_results.md"
    text = _read(folder, source)
    names = ("cold make book, fresh clone, install included", "every page alone, new kernel",
             "make test, fresh clone")  # fmt: skip
    if text is None:
        return [_missing(n, "see fresh_clone.py", source, "no results file") for n in names]
    rows = []
    for name, key in zip(names, ("cold `make book`", "every page alone", "`make test`")):
        line = re.search(rf"^\| {re.escape(key)}([^|]*)\| ([^|]+) \| [^|]+ \| [^|]+ \| ([^|]+) \| "
                         r"(met|not met)([^|]*)\|", text, re.M)  # fmt: skip
        if line is None:
            rows.append(_missing(name, "see fresh_clone.py", source, "no row"))
            continue
        detail, wall, goal, verdict, why = (g.strip() for g in line.groups())
        measured = wall
        if key == "every page alone":
            slowest = re.search(r"slowest (\S+ [\d.]+ s)", detail)
            over = re.search(r"(\d+ over by wall, \d+ by kernel CPU)", why)
            measured = f"slowest {slowest[1] if slowest else '?'}; {over[1] if over else '?'}"
        rows.append(Row(name, measured, goal, verdict == "met", source))
    return rows


SECTIONS: tuple[Callable[[Path], list[Row]], ...] = (widgets, sweeps, book, fresh_clone, grading)


def table(folder: Path = HERE) -> list[Row]:
    """Every target's row, in the issue's order."""
    return [row for section in SECTIONS for row in section(folder)]


def markdown(rows: list[Row]) -> str:
    """The rows as one Markdown table."""
    mark = {True: "met", False: "not met", None: "not measured"}
    lines = ["| target | measured | goal | status | from |", "|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.measured} | {r.goal} | {mark[r.met]} | {r.source} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=HERE, help="where the result files are")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    text = markdown(table(args.folder))
    print(text, end="")
    if args.out is not None:
        args.out.write_text(
            "# Speed targets (issue 19), from the benchmarks' result files\n\n" + text,
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
