"""Every chapter's `explore` widgets: time to a first result and to the final figure, before and after.

Run from the repository root with ``.venv/bin/python benchmarks/chapters.py``
(``--chapters 01 07`` to limit); writes ``benchmarks/chapter_results.md``
(a Markdown table headed by the machine's description and load average)
and prints it. Not part of the tests: timings depend on the machine and on
what else it is doing.

With ``--before PATH`` (a checkout of an earlier version of the package,
e.g. ``git worktree add --detach /tmp/before HEAD`` made before a change),
every chapter is measured twice in one sitting, alternating: first with
the package at ``PATH``, then with this one, each in a fresh worker process
that runs the current chapter's code. Chapters run one after the other,
never two at once, so that they do not compete for the cores.

For every chapter (default: every page of ``_toc.yml`` that calls
``explore(``), the worker executes the page's code cells in order in one
namespace (``MPLBACKEND=agg``, working directory the chapter's folder,
IPython magic lines commented out), with `explodebook.widgets.Explorer`'s
``__init__`` wrapped so that every explorer the page makes is recorded.
Then, per explorer, **every control** is moved once to an adjacent value
whose spec the page has not run and that is valid (a *move*), uncached:
the run cache and the widget's PNG cache are cleared first (Keras'
compiled-trainer cache is not: a reader moving a slider has traced graphs
already). Per move:

- *first result*: from the control's change to the first new image in the
  widget (a frame of live curves, or the final figure if there is none);
- *final*: to the final figure (the whole response; outside a kernel the
  widget answers a change synchronously);
- the time in each framework's run (``cached_run``, overlapping when the
  runs are concurrent).

Per widget the table gives the medians over its moves and how many of its
``M`` moves were within 0.3 s (first result) and 1 s (final); *cached* is
the median of moving back and forth between two settings in the caches.
Targets (issue #19): first result <= 0.3 s and final <= 1 s, median of
moves, for every widget.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The package measured: this checkout's, or an earlier one's (--before).
PACKAGE_ROOT = Path(os.environ.get("EXPLODEBOOK_BENCH_PACKAGE", ROOT))
for path in (HERE, PACKAGE_ROOT):  # benchmarks/ is not a package
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

FIRST_TARGET_S = 0.3
FINAL_TARGET_S = 1.0
CACHED_TARGET_S = 0.050
WORKER_TIMEOUT_S = 1500  # one chapter's worker, including its measurements


# -- finding the chapters and their explorers --------------------------------------


def toc_chapters() -> list[Path]:
    """Chapters of ``_toc.yml`` whose source calls ``explore(``, in order."""
    from explodebook.book.sources import Book

    book = Book.load(ROOT)
    paths = [book.source(name) for name in book.notebooks()]
    return [path for path in paths if "explore(" in path.read_text()]


def select_chapters(prefixes: Sequence[str] | None) -> list[Path]:
    """The toc chapters whose file name starts with one of ``prefixes``."""
    chapters = toc_chapters()
    if not prefixes:
        return chapters
    chosen = [p for p in chapters if any(p.name.startswith(x) for x in prefixes)]
    missing = [x for x in prefixes if not any(p.name.startswith(x) for p in chapters)]
    if missing:
        raise SystemExit(f"no chapter with an explore widget starts with {missing}")
    return chosen


_MAGIC = re.compile(r"^(\s*)([%!])")


def code_cells(path: Path) -> list[str]:
    """The chapter's code cells' sources, IPython magic lines commented out."""
    from explodebook.book.sources import code_cells as read_cells, read_config

    config = read_config(ROOT)  # the book's MyST extensions, for any chapter
    return ["\n".join(_MAGIC.sub(r"\1# \2", line) for line in cell.splitlines())
            for cell in read_cells(path, config)]  # fmt: skip


@contextlib.contextmanager
def recording_explorers() -> Iterator[list[list[Any]]]:
    """Record every `Explorer` made inside the block as ``[cell, explorer]``.

    The cell index is the last value of ``recorded_cell[0]`` set by the
    caller; the list yielded is filled in as explorers are made.
    """
    from explodebook import widgets

    recorded: list[list[Any]] = []
    original = widgets.Explorer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        original(self, *args, **kwargs)
        recorded.append([CURRENT_CELL[0], self, time.perf_counter() - start])

    widgets.Explorer.__init__ = init  # type: ignore[method-assign]
    try:
        yield recorded
    finally:
        widgets.Explorer.__init__ = original  # type: ignore[method-assign]


CURRENT_CELL = [-1]


def run_chapter(path: Path) -> tuple[list[tuple[int, Any, float]], float]:
    """Execute ``path``'s code cells in order in one namespace.

    Returns:
        the explorers made, as ``(cell index, explorer, seconds to make
        it)``, and the chapter's execution time in seconds. Cell output
        (prints, displays) is discarded.
    """
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    cells = code_cells(path)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(path.parent)
    start = time.perf_counter()
    try:
        with recording_explorers() as recorded, contextlib.redirect_stdout(io.StringIO()):
            for index, source in enumerate(cells):
                CURRENT_CELL[0] = index
                exec(compile(source, f"<{path.name} cell {index}>", "exec"), namespace)
                plt.close("all")
    finally:
        os.chdir(cwd)
    return [(cell, explorer, made) for cell, explorer, made in recorded], time.perf_counter() - start


# -- moving a control ------------------------------------------------------------


def option_values(control: Any) -> list[Any]:
    """The values a control offers, in order (``"off"`` stands for None)."""
    return [value for _, value in control.options]


def adjacent_value(values: Sequence[Any], current: Any, seen: Sequence[Any] = ()) -> Any:
    """A value next to ``current`` in ``values``, preferring one not in ``seen``.

    Tries the next value, then the previous one, first among those not
    ``seen``; returns ``None`` if ``values`` has no other value.
    """
    index = list(values).index(current)
    neighbours = [values[i] for i in (index + 1, index - 1) if 0 <= i < len(values)]
    if not neighbours:
        return None
    fresh = [value for value in neighbours if value not in seen]
    return (fresh or neighbours)[0]


def spec_with(explorer: Any, name: str, value: Any) -> Any:
    """The explorer's spec with control ``name`` at ``value`` (None if invalid)."""
    from explodebook.spec import SpecError
    from explodebook.widgets import _OFF

    current = {n: None if c.value == _OFF else c.value for n, c in explorer.controls.items()}
    current[name] = None if value == _OFF else value
    try:
        return explorer.base.replace(**current)
    except SpecError:
        return None


def pick_value(explorer: Any, name: str) -> Any:
    """The value to move control ``name`` to: adjacent, valid, preferably not run yet.

    Returns ``None`` if the control offers no other valid value.
    """
    from explodebook import cache

    control = explorer.controls[name]
    values = option_values(control)
    valid = [v for v in values if v == control.value or spec_with(explorer, name, v) is not None]
    if len(valid) < 2:
        return None
    run_specs = {spec for _, spec in list(cache._traces)}
    seen = [v for v in valid if spec_with(explorer, name, v) in run_specs]
    return adjacent_value(valid, control.value, seen)


def pick_move(explorer: Any) -> tuple[str, Any, Any]:
    """The first control's name, its current value and the value to move it to."""
    name, control = next(iter(explorer.controls.items()))
    return name, control.value, pick_value(explorer, name)


@contextlib.contextmanager
def timing_runs() -> Iterator[dict[str, float]]:
    """Seconds spent in the widget's `cached_run` calls, per framework (summed)."""
    from explodebook import widgets

    times: dict[str, float] = {}
    run = widgets.cached_run

    def timed_run(spec: Any, framework: str = "torch", **options: Any) -> Any:
        start = time.perf_counter()
        try:
            return run(spec, framework, **options)
        finally:
            times[framework] = times.get(framework, 0.0) + time.perf_counter() - start

    widgets.cached_run = timed_run
    try:
        yield times
    finally:
        widgets.cached_run = run


def measure_move(explorer: Any, name: str, new: Any) -> dict[str, Any]:
    """Move control ``name`` to ``new`` uncached; then cached moves; put it back."""
    from explodebook import cache, widgets

    control = explorer.controls[name]
    old = control.value
    cache.clear()
    widgets._PNG_CACHE.clear()
    stamps: list[float] = []

    def seen(change: Any) -> None:
        stamps.append(time.perf_counter())

    explorer.image.observe(seen, names="value")
    try:
        with timing_runs() as runs:
            start = time.perf_counter()
            control.value = new
            final = time.perf_counter() - start
    finally:
        explorer.image.unobserve(seen, names="value")
    first = stamps[0] - start if stamps else final
    result = {"control": name, "from": _show(old), "to": _show(new), "first": first,
              "final": final, "frames": len(stamps), "runs": dict(runs),
              "error": explorer.error}  # fmt: skip
    if final > FINAL_TARGET_S and not explorer.error:
        result["floor"] = floor(explorer)
    control.value = old  # (unmeasured: runs the old setting again, into the cache)
    cached = []
    for _ in range(2):  # both settings are in the caches now
        for value in (new, old):
            start = time.perf_counter()
            control.value = value
            cached.append(time.perf_counter() - start)
    result["cached"] = statistics.median(cached)
    return result


def floor(explorer: Any) -> dict[str, float]:
    """What the current setting costs with nothing else running: the floor of a move's final time.

    Each framework's run alone, one after the other, uncached (in Keras
    with the compiled loop the move left: no tracing, so a lower bound
    for a move that had to trace), then the final figure drawn and
    encoded once. Seconds, by ``torch``, ``keras`` and ``draw``. A move
    whose slower run alone plus the drawing is over the target cannot meet
    it by running the frameworks side by side or by drawing sooner.
    """
    from explodebook import cache, widgets
    from explodebook.render import figure_png

    spec = explorer.spec
    out: dict[str, float] = {}
    for fw in explorer.frameworks:
        cache.clear()
        start = time.perf_counter()
        widgets.cached_run(spec, fw, progress=False)
        out[fw] = time.perf_counter() - start
    start = time.perf_counter()
    figure_png(explorer.draw(explorer.traces), dpi=90, fast=True)
    out["draw"] = time.perf_counter() - start
    for fw in explorer.frameworks:  # both in the cache again, for the cached moves that follow
        widgets.cached_run(spec, fw, progress=False)
    return out


def measure_widget(explorer: Any, repeats: int) -> dict[str, Any]:
    """Every control moved once (``repeats`` times), uncached; medians over the moves."""
    moves, skipped = [], []
    for name in explorer.controls:
        new = pick_value(explorer, name)
        if new is None:
            skipped.append(name)
            continue
        for _ in range(max(1, repeats)):
            moves.append(measure_move(explorer, name, new))
    result: dict[str, Any] = {"moves": moves, "skipped": skipped,
                              "error_default": explorer.error}  # fmt: skip
    if moves:
        for key in ("first", "final", "cached"):
            result[key] = statistics.median(m[key] for m in moves)
    return result


def _show(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool)) else repr(value)


def summarize_spec(spec: Any) -> str:
    """A short description of a spec's model and length."""
    if spec.model == "rnn":
        shape = f"rnn {spec.cell} {spec.depth}x{spec.width}, T={spec.seq_len}"
    else:
        shape = f"mlp {spec.depth}x{spec.width} {spec.activation}"
    return f"{shape}, {spec.steps} steps"


def worker(path: Path, repeats: int) -> dict[str, Any]:
    """Run one chapter and measure its explorers (in this process)."""
    import explodebook
    from explodebook.backends import torch as _  # noqa: F401  (torch before TensorFlow)

    explorers, seconds = run_chapter(path)
    widgets_out = []
    for number, (cell, explorer, made) in enumerate(explorers, start=1):
        entry: dict[str, Any] = {
            "number": number,
            "cell": cell,
            "made_s": made,
            "controls": list(explorer.controls),
            "frameworks": list(explorer.frameworks),
            "spec": explorer.base.to_dict(),
            "summary": summarize_spec(explorer.base),
        }
        entry.update(measure_widget(explorer, repeats))
        widgets_out.append(entry)
    return {"chapter": path.name, "seconds": seconds, "widgets": widgets_out,
            "package": str(Path(explodebook.__file__).parent)}  # fmt: skip


def measure_chapter(path: Path, repeats: int, package: Path | None = None) -> dict[str, Any]:
    """One worker process for the chapter, with this package or the one at ``package``."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ, MPLBACKEND="agg")
        env.pop("EXPLODEBOOK_BENCH_PACKAGE", None)
        if package is not None:
            env["EXPLODEBOOK_BENCH_PACKAGE"] = str(package)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path),
                   "--result", str(result_file), "--repeats", str(repeats)]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                                  timeout=WORKER_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"chapter": path.name, "failed": [f"timed out after {WORKER_TIMEOUT_S} s"]}
        if done.returncode != 0:
            return {"chapter": path.name, "failed": done.stderr.strip().splitlines()[-20:]}
        return json.loads(result_file.read_text())


# -- the report ------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _within(moves: Sequence[dict[str, Any]], key: str, limit: float) -> str:
    return f"{sum(m[key] <= limit for m in moves)} of {len(moves)}"


def _widgets(chapter: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    if not chapter or "failed" in chapter:
        return {}
    return {w["number"]: w for w in chapter["widgets"]}


def widget_rows(
    results: Sequence[dict[str, Any]], before: Sequence[dict[str, Any]] | None = None
) -> tuple[list[str], list[str], dict[str, list[int]]]:
    """Table rows (one per widget), notes, and per version the widgets meeting each target.

    ``before``: the same chapters measured with the earlier package (or
    ``None``). The counts are ``[first within 0.3 s, final within 1 s,
    widgets measured]`` under ``"after"`` (and ``"before"``).
    """
    rows, notes = [], []
    counts = {"after": [0, 0, 0], "before": [0, 0, 0]}
    earlier = {c["chapter"]: c for c in before or ()}
    for chapter in results:
        name = chapter["chapter"].removesuffix(".md")
        for label, ch in (("after", chapter), ("before", earlier.get(chapter["chapter"]))):
            if ch is not None and "failed" in ch:
                notes.append(f"- {name} ({label}): the chapter failed to run: `{ch['failed'][-1]}`")
        old = _widgets(earlier.get(chapter["chapter"]))
        for number, w in _widgets(chapter).items():
            b = old.get(number)
            cells = [name, str(number), ", ".join(w["controls"]), ", ".join(w["frameworks"]),
                     w["summary"], str(len(w["moves"]))]  # fmt: skip
            for version, x in (("before", b), ("after", w)):
                if x is None or not x.get("moves"):
                    cells += ["–", "–"]
                    continue
                cells += [_s(x["first"]), _s(x["final"])]
                counts[version][0] += x["first"] <= FIRST_TARGET_S
                counts[version][1] += x["final"] <= FINAL_TARGET_S
                counts[version][2] += 1
            if not w.get("moves"):
                cells += ["–", "–", "–", "–", "–"]
                notes.append(f"- {name} widget {number}: no control offers a second valid value")
            else:
                ratio = w["final"] / b["final"] if b and b.get("moves") else None
                cells += [_s(ratio), _within(w["moves"], "first", FIRST_TARGET_S),
                          _within(w["moves"], "final", FINAL_TARGET_S), f"{w['cached'] * 1e3:.1f}",
                          "✓" if w["first"] <= FIRST_TARGET_S and w["final"] <= FINAL_TARGET_S
                          else "✗"]  # fmt: skip
                notes += _move_notes(f"{name} widget {number}", w)
            for key in ("error_default",):
                if w.get(key):
                    notes.append(f"- {name} widget {number}: explorer.error = `{w[key]}`")
            rows.append("| " + " | ".join(cells) + " |")
    return rows, notes, counts


def _move_notes(label: str, w: dict[str, Any]) -> list[str]:
    """One note per move over a target: what it took and where the time went."""
    notes = []
    for m in w["moves"]:
        if m.get("error"):
            notes.append(f"- {label} ({m['control']} {m['from']} → {m['to']}): error `{m['error']}`")
        if m["final"] > FINAL_TARGET_S or m["first"] > FIRST_TARGET_S:
            runs = ", ".join(f"{fw} run {t:.2f} s" for fw, t in sorted(m["runs"].items()))
            alone = ""
            if m.get("floor"):
                f = m["floor"]
                slowest = max(v for k, v in f.items() if k != "draw")
                alone = (" Alone: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(f.items()))
                         + f"; slower run + drawing {slowest + f['draw']:.2f} s"
                         + (", over the target by itself." if slowest + f["draw"] > FINAL_TARGET_S
                            else "."))  # fmt: skip
            notes.append(
                f"- {label} ({m['control']} {m['from']} → {m['to']}): first {m['first']:.2f} s, "
                f"final {m['final']:.2f} s ({runs or 'no run'}; {m['frames']} images).{alone}"
            )
    return notes


def report(
    results: Sequence[dict[str, Any]],
    header: str,
    repeats: int,
    before: Sequence[dict[str, Any]] | None = None,
    before_name: str = "",
) -> str:
    rows, notes, counts = widget_rows(results, before)
    times = ", ".join(
        f"{r['chapter'].removesuffix('.md')} {r['seconds']:.0f} s" for r in results if "seconds" in r
    )

    def count(version: str) -> str:
        first, final, n = counts[version]
        return (f"first result ≤ 0.3 s: {first} of {n} widgets; final figure ≤ 1 s: "
                f"{final} of {n} widgets")  # fmt: skip

    summary = [f"- After (this checkout): {count('after')}."]
    if before is not None:
        summary.insert(0, f"- Before ({before_name}): {count('before')}.")
    return "\n".join(
        [
            "# Chapter widgets: time to a first result and to the final figure",
            "",
            f"Machine: {header}.",
            "",
            *summary,
            "",
            "| page | widget | controls | frameworks | spec | moves M | before: first (s) | "
            "before: final (s) | after: first (s) | after: final (s) | final after / before | "
            "after: first ≤ 0.3 s | after: final ≤ 1 s | after: cached (ms) | targets met |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(notes or ["Every move meets both targets."]),
            "",
            f"Pages run one at a time, before and after alternating per page (execution "
            f"time of the page in the after worker: {times}). First and final: medians over "
            f"the widget's M moves (every control moved once{'' if repeats == 1 else f', {repeats} times'} "
            "to an adjacent valid value, uncached: run and PNG caches cleared); cached: median "
            "of 4 moves between two settings in the caches. Not part of the tests.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", metavar="NN",
                        help="page file prefixes, e.g. 01 07 (default: every page with an "
                             "explore widget)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1,
                        help="uncached moves per control (default 1)")  # fmt: skip
    parser.add_argument("--before", type=Path, metavar="PATH",
                        help="a checkout of an earlier version: measure it too, alternating")
    parser.add_argument("--out", type=Path, default=HERE / "chapter_results.md")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args.worker, args.repeats)
        args.result.write_text(json.dumps(result))
        return

    from explodebook.backends import torch as _  # noqa: F401  (torch before TensorFlow)
    from run import machine

    if args.before is not None and not (args.before / "explodebook" / "__init__.py").exists():
        raise SystemExit(f"--before {args.before}: no explodebook package there")
    header = machine()
    before_name = ""
    if args.before is not None:
        commit = subprocess.run(["git", "-C", str(args.before), "log", "-1", "--format=%h %s"],
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        before_name = f"the package at commit {commit[:60]}" if commit else str(args.before)
    results: list[dict[str, Any]] = []
    earlier: list[dict[str, Any]] | None = [] if args.before is not None else None
    paths = select_chapters(args.chapters)
    for done, path in enumerate(paths, start=1):
        start = time.perf_counter()
        if earlier is not None:
            earlier.append(measure_chapter(path, args.repeats, args.before))
        results.append(measure_chapter(path, args.repeats))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, load average "
              f"{os.getloadavg()[0]:.2f}", file=sys.stderr)  # fmt: skip
        text = report(results, header, args.repeats, earlier, before_name)
        text += f"\nLoad average at the end: {os.getloadavg()[0]:.2f}.\n"
        if done < len(paths):  # keep what is measured if a later chapter stops the run
            text += f"\n(Partial: {done} of {len(paths)} pages measured so far.)\n"
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
