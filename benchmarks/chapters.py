"""Each chapter's `explore` widgets: default-experiment latency and widget response.

Run from the repository root with ``.venv/bin/python benchmarks/chapters.py``
(``--chapters 01 07`` to limit, ``--skip-cold`` to leave out the cold
processes, which dominate the time); writes ``benchmarks/chapter_results.md``
(a Markdown table headed by the machine's description) and prints it. Not
part of the tests: timings depend on the machine and on what else it is
doing. Chapters run one after the other (sequentially, never two at once,
so that they do not compete for the 2 cores).

For every chapter (default: every chapter of ``_toc.yml`` that calls
``explore(``), a fresh worker process reads the chapter's code cells as the
build does (`explodebook.book.sources`) and executes them in order in one
namespace (``MPLBACKEND=agg``, working directory the chapter's folder,
IPython magic lines commented out), with
`explodebook.widgets.Explorer.__init__` wrapped so that every explorer the
chapter makes is recorded with its cell index. Then, per
explorer:

1. default experiment latency, per framework of the widget: *cold* is the
   wall time of a fresh ``python -c`` process that imports explodebook and
   the backend and runs ``backend.run(spec)`` on the widget's base spec
   once, timed from before the imports (as ``benchmarks/run.py``'s cold
   run; for Keras it includes graph tracing); *warm* is the median of
   ``--repeats`` further runs of the same spec in that process (with
   ``--skip-cold``: in the worker, after the chapter ran);
2. widget response, on the widget's FIRST control, moved to an adjacent
   value that the chapter has not run (if there is one): *uncached* is the
   time of ``control.value = new`` (run in every framework of the widget
   through `explodebook.cache.cached_run`, then draw the PNG) after
   clearing the run cache and the widget's PNG cache, median of
   ``--repeats``; it is split into the run time per framework and the
   drawing time by timing the calls to ``cached_run`` and ``figure_png`` that
   the widget makes. Keras' compiled-trainer cache is not cleared: a
   reader moving a slider has traced graphs already. *Cached* is the time
   of moving back to the previous value or forth again, both in the
   caches (median of ``2 * max(3, --repeats)`` moves).

Targets (issue #7): uncached response <= 1 s, cached <= 50 ms. The uncached
target is judged on the widget's whole response (all its frameworks);
below the table, each missed target names its biggest part.
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
if str(HERE) not in sys.path:  # benchmarks/ is not a package
    sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

UNCACHED_TARGET_S = 1.0
CACHED_TARGET_S = 0.050
WORKER_TIMEOUT_S = 1200  # one chapter's worker, including its measurements

COLD = """
import json, os, statistics, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
start = time.perf_counter()
from explodebook import RunSpec
from explodebook.backends import {framework} as backend
spec = RunSpec.from_dict(json.loads(sys.argv[1]))
backend.run(spec)
cold = time.perf_counter() - start
warm = []
for _ in range({repeats}):
    t0 = time.perf_counter()
    backend.run(spec)
    warm.append(time.perf_counter() - t0)
print(json.dumps({{"cold": cold, "warm": statistics.median(warm)}}))
"""


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


def pick_move(explorer: Any) -> tuple[str, Any, Any]:
    """The first control's name, its current value and the value to move to.

    Prefers an adjacent value whose spec the chapter has not run (in any of
    the widget's frameworks) and that is a valid spec.
    """
    from explodebook import cache

    name, control = next(iter(explorer.controls.items()))
    values = option_values(control)
    run_specs = {spec for _, spec in list(cache._traces)}
    seen = [v for v in values if spec_with(explorer, name, v) in run_specs]
    seen += [v for v in values if spec_with(explorer, name, v) is None]  # invalid
    return name, control.value, adjacent_value(values, control.value, seen)


@contextlib.contextmanager
def timing_widget_calls() -> Iterator[dict[str, list[float]]]:
    """Time the `cached_run` calls (per framework) and the drawing of `Explorer.update`.

    The drawing is the explorer's ``draw`` and `explodebook.scrubber.figure_png`:
    from the end of the last run to the end of ``figure_png``.
    """
    from explodebook import widgets

    times: dict[str, list[float]] = {}
    run, png = widgets.cached_run, widgets.figure_png
    last_run_end = [0.0]

    def timed_run(spec: Any, framework: str = "torch") -> Any:
        start = time.perf_counter()
        try:
            return run(spec, framework)
        finally:
            last_run_end[0] = time.perf_counter()
            times.setdefault(framework, []).append(last_run_end[0] - start)

    def timed_png(*args: Any, **kwargs: Any) -> Any:
        try:
            return png(*args, **kwargs)
        finally:
            times.setdefault("draw", []).append(time.perf_counter() - last_run_end[0])

    widgets.cached_run, widgets.figure_png = timed_run, timed_png
    try:
        yield times
    finally:
        widgets.cached_run, widgets.figure_png = run, png


def measure_response(explorer: Any, repeats: int) -> dict[str, Any]:
    """Uncached and cached response of moving the explorer's first control."""
    from explodebook import cache, widgets

    name, old, new = pick_move(explorer)
    result: dict[str, Any] = {
        "control": name, "from": _show(old), "to": _show(new),
        "error_default": explorer.error,
    }  # fmt: skip
    if new is None:
        result["note"] = "the first control offers one value only"
        return result
    control = explorer.controls[name]
    uncached, parts, errors = [], [], []
    for _ in range(max(1, repeats)):
        control.value = old  # (unmeasured, possibly from the caches)
        cache.clear()
        widgets._PNG_CACHE.clear()
        with timing_widget_calls() as times:
            start = time.perf_counter()
            control.value = new
            uncached.append(time.perf_counter() - start)
        errors.append(explorer.error)
        parts.append({key: sum(values) for key, values in times.items()})
    result["uncached"] = statistics.median(uncached)
    result["uncached_first"] = uncached[0]
    result["parts"] = {
        key: statistics.median(p.get(key, 0.0) for p in parts)
        for key in sorted({k for p in parts for k in p})
    }
    result["error_moved"] = next((e for e in errors if e), None)
    cached = []
    for _ in range(max(3, repeats)):  # both settings are in the caches now
        for value in (old, new):
            start = time.perf_counter()
            control.value = value
            cached.append(time.perf_counter() - start)
    result["cached"] = statistics.median(cached)
    control.value = old
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


def worker(path: Path, repeats: int, skip_cold: bool) -> dict[str, Any]:
    """Run one chapter and measure its explorers (in this process)."""
    from explodebook.backends import torch as _  # noqa: F401  (torch before TensorFlow)
    from run import warm  # benchmarks/run.py

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
        entry.update(measure_response(explorer, repeats))
        if skip_cold:
            entry["latency"] = {
                fw: {"cold": None, "warm": warm(fw, repeats, spec=explorer.base)}
                for fw in explorer.frameworks
            }
        widgets_out.append(entry)
    return {"chapter": path.name, "seconds": seconds, "widgets": widgets_out}


def cold(spec: dict[str, Any], framework: str, repeats: int) -> dict[str, Any]:
    """Cold (import + first run) and warm seconds in a fresh process.

    A process that fails is tried once more; if it fails again, the result
    holds ``None`` times and the last line of its error output.
    """
    command = [sys.executable, "-c", COLD.format(framework=framework, repeats=repeats),
               json.dumps(spec)]  # fmt: skip
    for _ in range(2):
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if out.returncode == 0:
            return json.loads(out.stdout.strip().splitlines()[-1])
    lines = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
    return {"cold": None, "warm": None, "error": lines[-1]}


def measure_chapter(path: Path, repeats: int, skip_cold: bool) -> dict[str, Any]:
    """One worker process for the chapter, then the cold processes."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ, MPLBACKEND="agg")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path),
                   "--result", str(result_file), "--repeats", str(repeats)]  # fmt: skip
        if skip_cold:
            command.append("--skip-cold")
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                                  timeout=WORKER_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"chapter": path.name, "failed": [f"timed out after {WORKER_TIMEOUT_S} s"]}
        if done.returncode != 0:
            return {"chapter": path.name, "failed": done.stderr.strip().splitlines()[-20:]}
        result = json.loads(result_file.read_text())
    if not skip_cold:
        for entry in result["widgets"]:
            entry["latency"] = {fw: cold(entry["spec"], fw, repeats) for fw in entry["frameworks"]}
    return result


# -- the report ------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def widget_rows(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Table rows (one per widget) and one note per missed target or problem."""
    rows, notes = [], []
    for chapter in results:
        name = chapter["chapter"].removesuffix(".md")
        if "failed" in chapter:
            notes.append(f"- {name}: the chapter failed to run: `{chapter['failed'][-1]}`")
            continue
        for w in chapter["widgets"]:
            lat = w.get("latency", {})
            cells = [name, str(w["number"]), ", ".join(w["controls"]), ", ".join(w["frameworks"]),
                     w["summary"]]  # fmt: skip
            for fw in ("torch", "keras"):
                cells += [_s(lat.get(fw, {}).get("cold")), _s(lat.get(fw, {}).get("warm"))]
            label = f"{name} widget {w['number']} ({w['control']} {w['from']} → {w['to']})"
            if "uncached" not in w:
                cells += ["–", "–", "–", "–"]
                notes.append(f"- {label}: not measured: {w.get('note')}")
            else:
                parts = w["parts"]
                split = " / ".join(_s(parts.get(k)) for k in ("torch", "keras", "draw"))
                ok_u = w["uncached"] <= UNCACHED_TARGET_S
                ok_c = w["cached"] <= CACHED_TARGET_S
                cells += [f"{w['uncached']:.2f} ({split})", f"{w['cached'] * 1e3:.1f}",
                          "✓" if ok_u else "✗", "✓" if ok_c else "✗"]  # fmt: skip
                if not ok_u:
                    big = max(("torch", "keras", "draw"), key=lambda k: parts.get(k, 0.0))
                    what = "drawing" if big == "draw" else f"the {big} run"
                    torch_only = parts.get("torch", 0.0) + parts.get("draw", 0.0)
                    notes.append(
                        f"- {label}: uncached {w['uncached']:.2f} s > 1 s; biggest part: "
                        f"{what} ({parts[big]:.2f} s); torch run + draw alone "
                        f"{torch_only:.2f} s."
                    )
                if w["uncached_first"] > 1.5 * w["uncached"]:
                    notes.append(
                        f"- {label}: the first uncached move took {w['uncached_first']:.2f} s "
                        f"(median {w['uncached']:.2f} s): a one-off cost such as Keras "
                        "tracing a new graph shape."
                    )
                if not ok_c:
                    notes.append(
                        f"- {label}: cached {w['cached'] * 1e3:.0f} ms > 50 ms (nothing is "
                        "run or drawn on a cached move: the time is the widget's own)."
                    )
            for fw, times in lat.items():
                if times.get("error"):
                    notes.append(f"- {label}: the cold {fw} process failed twice: `{times['error']}`")
            for key in ("error_default", "error_moved"):
                if w.get(key):
                    notes.append(f"- {label}: explorer.error = `{w[key]}`")
            rows.append("| " + " | ".join(cells) + " |")
    return rows, notes


def report(results: Sequence[dict[str, Any]], header: str, repeats: int, skip_cold: bool) -> str:
    rows, notes = widget_rows(results)
    times = ", ".join(
        f"{r['chapter'].removesuffix('.md')} {r['seconds']:.0f} s" for r in results if "seconds" in r
    )
    return "\n".join(
        [
            "# Chapter widgets: default experiment latency and response",
            "",
            f"Machine: {header}.",
            "",
            "| chapter | widget | controls | frameworks | spec | cold torch (s) | "
            "warm torch (s) | cold keras (s) | warm keras (s) | "
            "uncached response (s) (run torch / run keras / draw) | cached response (ms) | "
            "≤ 1 s uncached | ≤ 50 ms cached |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(notes or ["All widgets meet both targets."]),
            "",
            f"Chapters run one at a time (execution time in the worker: {times}). "
            f"Warm and uncached: medians of {repeats}; cached: median of "
            f"{2 * max(3, repeats)} moves. Cold: a fresh process importing explodebook "
            "and the backend and running the widget's base spec once"
            + (" (skipped: --skip-cold; warm measured in the chapter's process)" if skip_cold else "")
            + ". Response: moving the widget's first control to an adjacent value "
            "(run in all the widget's frameworks, then drawn); '–' = not applicable. "
            "Not part of the tests.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", metavar="NN",
                        help="chapter file prefixes, e.g. 01 07 (default: every chapter "
                             "with an explore widget)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="runs per median (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "chapter_results.md")
    parser.add_argument("--skip-cold", action="store_true",
                        help="leave out the cold processes (warm is measured in the worker)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args.worker, args.repeats, args.skip_cold)
        args.result.write_text(json.dumps(result))
        return

    from explodebook.backends import torch as _  # noqa: F401  (torch before TensorFlow)
    from run import machine

    header = machine()
    results = []
    paths = select_chapters(args.chapters)
    for done, path in enumerate(paths, start=1):
        start = time.perf_counter()
        results.append(measure_chapter(path, args.repeats, args.skip_cold))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        text = report(results, header, args.repeats, args.skip_cold)
        if done < len(paths):  # keep what is measured if a later chapter stops the run
            text += f"\n(Partial: {done} of {len(paths)} chapters measured so far.)\n"
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
