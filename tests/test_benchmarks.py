"""Smoke tests of the non-timing logic of benchmarks/chapters.py and benchmarks/scaling.py.

No timing assertions: the benchmarks themselves are not part of the tests.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


chapters = _load("chapters")

NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
    jupytext_version: 1.19.6
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# A tiny chapter

```{code-cell} ipython3
%matplotlib inline
from explodebook import RunSpec
from explodebook.widgets import explore

spec = RunSpec(task="regression-scaled", steps=5)
```

Some prose.

```{code-cell} ipython3
explore(spec, {"learning_rate": [1e-3, 0.01, 0.03]})
```

```{code-cell} ipython3
x = 1
```

```{code-cell} ipython3
w = explore(spec.replace(depth=2), {"depth": [1, 2, 4], "width": [8, 25]})
```
"""


def test_run_chapter_records_every_explorer_with_its_cell(tmp_path: Path) -> None:
    from explodebook import widgets

    path = tmp_path / "99_tiny.md"
    path.write_text(NOTEBOOK)
    original = widgets.Explorer.__init__
    explorers, seconds = chapters.run_chapter(path)
    assert widgets.Explorer.__init__ is original  # the wrapper is removed
    assert [cell for cell, _, _ in explorers] == [1, 3]  # code cells 0..3
    assert seconds > 0
    first, second = explorers[0][1], explorers[1][1]
    assert list(first.controls) == ["learning_rate"]
    assert list(second.controls) == ["depth", "width"]
    assert second.base.depth == 2 and first.error is None and second.error is None
    assert chapters.summarize_spec(second.base) == "mlp 2x25 relu, 5 steps"

    # The first control's move: to a neighbour the chapter has not run.
    from explodebook import cache

    cache.clear()
    assert chapters.pick_move(second) == ("depth", 2, 4)
    cache.cached_run(second.base.replace(depth=4), "torch")  # now 4 has been run
    assert chapters.pick_move(second) == ("depth", 2, 1)

    result = chapters.measure_widget(first, repeats=1)
    [move] = result["moves"]
    assert (move["control"], move["from"], move["to"]) == ("learning_rate", 0.01, 0.03)
    assert set(move["runs"]) == {"torch"} and move["error"] is None
    assert 0 < move["first"] <= move["final"] and move["cached"] >= 0
    assert result["final"] == move["final"] and result["skipped"] == []
    assert first.controls["learning_rate"].value == 0.01  # moved back


def test_magic_lines_are_commented_out(tmp_path: Path) -> None:
    path = tmp_path / "magic.md"
    path.write_text(NOTEBOOK)
    cells = chapters.code_cells(path)
    assert len(cells) == 4
    assert cells[0].splitlines()[0] == "# %matplotlib inline"


def test_adjacent_value() -> None:
    values = [0.1, 0.3, 1.0, 3.0]
    assert chapters.adjacent_value(values, 0.3) == 1.0
    assert chapters.adjacent_value(values, 0.3, seen=[1.0]) == 0.1
    assert chapters.adjacent_value(values, 0.3, seen=[1.0, 0.1]) == 1.0  # all seen: next
    assert chapters.adjacent_value(values, 3.0) == 1.0
    assert chapters.adjacent_value(["off", 0.1], "off") == 0.1
    assert chapters.adjacent_value([5], 5) is None


def _move(control: str, first: float, final: float, **extra) -> dict:
    return {"control": control, "from": 1, "to": 2, "first": first, "final": final,
            "frames": 2, "runs": {"torch": 0.5}, "error": None, "cached": 0.01, **extra}


def _widget(moves: list, **extra) -> dict:
    widget = {"number": 1, "controls": [m["control"] for m in moves], "frameworks": ["torch"],
              "summary": "mlp 1x25 relu, 400 steps", "moves": moves, "skipped": [],
              "error_default": None}  # fmt: skip
    if moves:
        for key in ("first", "final", "cached"):
            widget[key] = sorted(m[key] for m in moves)[len(moves) // 2]
    return {**widget, **extra}


def test_widget_rows_count_moves_within_the_targets_before_and_after() -> None:
    after = _widget([_move("lr", 0.2, 0.8), _move("depth", 0.25, 1.4), _move("seed", 0.5, 0.9)])
    before = _widget([_move("lr", 1.6, 1.6), _move("depth", 2.0, 2.0), _move("seed", 1.0, 1.0)])
    rows, notes, counts = chapters.widget_rows(
        [{"chapter": "02_x.md", "seconds": 1, "widgets": [after]}],
        [{"chapter": "02_x.md", "seconds": 1, "widgets": [before]}],
    )
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:2] == ["02_x", "1"] and cells[5] == "3"
    assert cells[6:10] == ["1.60", "1.60", "0.25", "0.90"]  # medians of the moves
    assert cells[10] == f"{0.9 / 1.6:.2f}"  # final after / before
    assert cells[11:13] == ["2 of 3", "2 of 3"]
    assert cells[13:] == ["10.0", "✓"]
    assert counts == {"after": [1, 1, 1], "before": [0, 0, 1]}
    text = "\n".join(notes)
    assert "(depth 1 → 2): first 0.25 s, final 1.40 s (torch run 0.50 s; 2 images)" in text
    assert "(seed 1 → 2): first 0.50 s" in text and "(lr" not in text


def test_a_slow_moves_floor_says_whether_it_is_over_the_target_by_itself() -> None:
    over = _move("cell", 0.3, 1.3)
    over["floor"] = {"torch": 0.4, "keras": 0.9, "draw": 0.17}
    under = _move("lr", 0.3, 1.1)
    under["floor"] = {"torch": 0.4, "keras": 0.5, "draw": 0.17}
    _, notes, _ = chapters.widget_rows([{"chapter": "09_y.md", "seconds": 1,
                                         "widgets": [_widget([over, under])]}])  # fmt: skip
    cell = next(n for n in notes if "(cell" in n)
    lr = next(n for n in notes if "(lr" in n)
    assert "Alone: draw 0.17 s, keras 0.90 s, torch 0.40 s; slower run + drawing 1.07 s, over" in cell
    assert "slower run + drawing 0.67 s." in lr and "over the target" not in lr


def test_widget_rows_without_before_and_a_failed_chapter() -> None:
    slow = _widget([_move("lr", 0.4, 1.2, error="SpecError: bad")])
    rows, notes, counts = chapters.widget_rows(
        [{"chapter": "09_y.md", "seconds": 1, "widgets": [slow]}, {"chapter": "10_z.md",
          "failed": ["Traceback", "RuntimeError: boom"]}]  # fmt: skip
    )
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[6:11] == ["–", "–", "0.40", "1.20", "–"] and cells[-1] == "✗"
    assert counts["after"] == [0, 0, 1] and counts["before"] == [0, 0, 0]
    assert any("error `SpecError: bad`" in n for n in notes)
    assert any("10_z (after): the chapter failed to run: `RuntimeError: boom`" in n for n in notes)
    text = chapters.report([{"chapter": "09_y.md", "seconds": 1, "widgets": [slow]}], "m", 1)
    assert "final figure ≤ 1 s: 0 of 1 widgets" in text and "Before" not in text


# -- scaling ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scaling():
    return _load("scaling")


def _fake_points(scaling):
    P = scaling.Point
    points = []
    for fw, factor in (("torch", 1.0), ("keras", 2.0)):
        # depth: 100 µs/step at depth 1, linear in depth
        points += [P("mlp", "depth", d, fw, factor * 100e-6 * d * 400, 400, 400) for d in (1, 2, 4, 8, 16)]
        points += [P("mlp", "steps", s, fw, factor * 100e-6 * s, s, s) for s in (100, 400, 1600)]
        # seq_len: 20 µs per time step per step; one run stopped at step 50 of 100
        points += [P("rnn", "seq_len", t, fw, factor * 20e-6 * t * (50 if t == 100 else 100),
                     50 if t == 100 else 100, 100) for t in (10, 25, 50, 100)]  # fmt: skip
        points += [P("rnn", "cell", c, fw, factor * m * 1e-3 * 100, 100, 100)
                   for c, m in (("simple", 1.0), ("lstm", 3.0), ("gru", 2.5))]  # fmt: skip
    return points


def test_format_table(scaling) -> None:
    table = scaling.format_table(_fake_points(scaling))
    lines = table.splitlines()
    assert len(lines) == 2 + 5 + 3 + 4 + 3  # header + one row per (model, knob, value)
    row = {tuple(c.strip() for c in line.strip("|").split("|"))[:3]: line for line in lines[2:]}
    depth8 = [c.strip() for c in row[("mlp", "depth", "8")].strip("|").split("|")]
    assert depth8[3:] == ["0.320", "800", "×8.00", "0.640", "1600", "×8.00", "400/400"]
    t100 = [c.strip() for c in row[("rnn", "seq_len", "100")].strip("|").split("|")]
    assert t100[4:6] == ["2000", "×10.00"] and "stopped" in t100[-1]


def test_estimate_and_limits(scaling) -> None:
    points = _fake_points(scaling)
    depth = [p for p in points if p.knob == "depth" and p.framework == "torch"]
    assert scaling.estimate_per_step(depth, 6) == pytest.approx(600e-6)  # interpolated
    assert scaling.estimate_per_step(depth, 32) == pytest.approx(3200e-6)  # extrapolated
    assert scaling.estimate_per_step(depth, 0.5) == pytest.approx(50e-6)
    options = {"depth": (1, 4, 6, 10), "steps": (100, 1600, 12800), "seq_len": (10, 100)}
    lines = scaling.limits(points, options)
    text = "\n".join(lines)
    # depth: 1600 steps x 100 µs x depth <= 1 s up to depth 6.25: largest measured 4
    depth_line = next(line for line in lines if line.startswith("- **depth**"))
    assert "largest measured value within 1 s in PyTorch: 4" in depth_line
    assert "1 s reached at about 6, interpolated" in depth_line  # 1 / (1600 x 100 µs) = 6.25
    assert "10 (1.6 s)" in depth_line and "6 (" not in depth_line
    steps_line = next(line for line in lines if line.startswith("- **steps**"))
    assert "1600" in steps_line and "12800 (1.3 s)" in steps_line
    assert "lstm 1.50 s" in text and "over 1 s: lstm, gru" in text


@pytest.mark.parametrize("script", ["chapters.py", "scaling.py", "threads.py", "widget_levers.py", "zh_build.py",
                                    "keras_process_lever.py", "sweep_parallel.py", "compile_levers.py"])
def test_help(script: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--repeats" in out.stdout and "--out" in out.stdout


def test_recording_overhead_is_a_cost_per_step_without_fixed_costs() -> None:
    run = _load("run")
    steps = run.SPEC.steps
    # Runs costing 0.5 s once plus 1 ms per step: the fixed part cancels.
    long = [0.5 + 1e-3 * steps + noise for noise in (0.02, -0.01, 0.0)]
    short = [0.5 + 1e-3 * run.SHORT_STEPS + noise for noise in (0.0, 0.03, -0.02)]
    assert run.per_step(long, short) == pytest.approx(1e-3)


# -- benchmarks/targets.py: issue 19's targets read from the result files ---------

targets = _load("targets")


def test_targets_read_every_committed_result_file() -> None:
    rows = targets.table()
    assert {r.source for r in rows} == {"chapter_results.md", "sweep_results.md", "book_results.md",
                                        "fresh_clone_results.md", "grading_results.md"}
    committed = [r for r in rows if (ROOT / "benchmarks" / r.source).is_file()]
    assert {r.source for r in committed} >= {"chapter_results.md", "sweep_results.md",
                                             "book_results.md", "grading_results.md"}
    assert all(r.met is not None for r in committed), [r for r in committed if r.met is None]


def test_targets_judge_the_figures_and_say_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "chapter_results.md").write_text(
        "- After (this checkout): first result ≤ 0.3 s: 3 of 3 widgets; "
        "final figure ≤ 1 s: 2 of 3 widgets.\n")
    (tmp_path / "book_results.md").write_text(
        "| kernel CPU summed over the pages | 400 s (24 pages) | 190 s (24 pages) | 0.48 |\n")
    (tmp_path / "grading_results.md").write_text(
        "| a | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 2.4× |\n| b | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 9.0× |\n")
    rows = {r.target: r for r in targets.table(tmp_path)}
    assert rows["widgets: first result <= 0.3 s"].met is True
    assert rows["widgets: final figure <= 1 s"].met is False
    assert rows["book: kernel CPU, after / before"].met is True
    assert rows["grading: old grader / new, per notebook"].met is False  # 2.4x < 25 s / 10 s
    assert rows["20x20 grid on all cores"].met is None
    assert "not measured" in targets.markdown(list(rows.values()))


def test_targets_read_the_fresh_clone_report_it_writes(tmp_path: Path) -> None:
    fresh = _load("fresh_clone")
    step = {"cpu": 300.0, "load": "0.1 → 1.9", "status": "ok"}
    results = {
        "book": {**step, "wall": 7 * 60 + 30.0},
        "alone": {**step, "wall": 500.0, "pages": {"intro": (12.0, 10.0), "chapters/09": (31.5, 29.0)}},
        "test": {**step, "wall": 12 * 60 + 1.0, "tests": "1600 passed, pytest says 721 s"},
    }
    (tmp_path / "fresh_clone_results.md").write_text(fresh.report("abc1234", results, "cmd"))
    rows = {r.target: r for r in targets.table(tmp_path)}
    book = rows["cold make book, fresh clone, install included"]
    assert book.met is True and book.measured == "7 min 30.0 s" and book.goal == "≤ 8 min"
    alone = rows["every page alone, new kernel"]
    assert alone.met is False  # 09: 31.5 s by the wall clock
    assert "1 over by wall, 0 by kernel CPU" in alone.measured and "chapters/09 31.5 s" in alone.measured
    assert rows["make test, fresh clone"].met is False  # 12 min 1 s


def test_fresh_clone_help() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fresh_clone.py"), "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "--steps" in out.stdout and "--out" in out.stdout, out.stderr
