"""`explodebook.budget`: runs estimated before they start, refused over a
budget, progress bars for long ones, and Ctrl-C that leaves a usable trace
and a clean process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import explodebook  # noqa: E402
from explodebook import budget, cache, costs  # noqa: E402
from explodebook.budget import BudgetError, Speed  # noqa: E402
from explodebook.progress import RunInterrupted  # noqa: E402
from explodebook.spec import RunSpec, SpecError  # noqa: E402
from explodebook.sweep import sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HUGE = RunSpec(depth=64, width=1024, steps=1600)
SMALL = RunSpec(task="regression-scaled", steps=400)
FRAMEWORKS = ("torch", "keras")


@pytest.fixture(autouse=True)
def _reference_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Estimates as on the reference machine: the same numbers on any
    # machine, and no calibration timing inside the tests.
    monkeypatch.setattr(budget, "SPEED", Speed(1.0, 1.0, 1.0))
    monkeypatch.setattr(budget, "MAX_SECONDS", 120.0)
    monkeypatch.setattr(budget, "PROGRESS_SECONDS", 3.0)
    cache.clear()
    yield
    cache.clear()


def _backend(framework: str) -> Any:
    from explodebook.backends import get

    return get(framework)


def _no_training(monkeypatch: pytest.MonkeyPatch, framework: str) -> None:
    # Fail fast instead of training for hours if a check is missing.
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the run started")

    monkeypatch.setattr(_backend(framework), "_train", refuse)


# -- the estimate ---------------------------------------------------------------


def test_estimate_is_linear_in_steps() -> None:
    for framework in FRAMEWORKS:
        e = [budget.estimate_seconds(SMALL.replace(steps=n), framework) for n in (1000, 2000, 3000)]
        assert e[2] - e[1] == pytest.approx(e[1] - e[0])
        assert e[1] > e[0] > 0


@pytest.mark.parametrize(
    "field, values",
    [
        ("steps", [10, 100, 1000]),
        ("depth", [1, 4, 16, 64]),
        ("width", [8, 64, 256, 1024]),
        ("batch_size", [1, 32, 500]),
    ],
)
def test_estimate_grows_with_every_size_field(field: str, values: list[int]) -> None:
    for framework in FRAMEWORKS:
        base = RunSpec(depth=4, width=64)
        e = [budget.estimate_seconds(base.replace(**{field: v}), framework) for v in values]
        assert e == sorted(e) and e[0] < e[-1]


def test_estimate_grows_with_sequence_length_and_gates() -> None:
    rnn = RunSpec(model="rnn", width=128, steps=400)
    for framework in FRAMEWORKS:
        e = [budget.estimate_seconds(rnn.replace(seq_len=T), framework) for T in (20, 200, 2000)]
        assert e[0] < e[1] < e[2]
        # long sequences: about proportional to the length
        assert 5 < e[2] / e[1] < 10
    # Wide cells are arithmetic-bound: an LSTM (4 gates) costs more than a
    # GRU (3), which costs more than a simple cell (1).
    wide = rnn.replace(width=1024, seq_len=200, steps=10)
    simple, gru, lstm = (
        budget.estimate_seconds(wide.replace(cell=c), "keras") for c in ("simple", "gru", "lstm")
    )
    assert simple < gru < lstm
    assert lstm / simple > 2.5


def test_width_costs_about_its_square_in_a_deep_network() -> None:
    deep = RunSpec(depth=8, steps=100)
    for framework in FRAMEWORKS:
        wide, narrow = (
            budget.estimate_seconds(deep.replace(width=w), framework) for w in (1024, 512)
        )
        ratio = wide / narrow
        assert 3 < ratio < 8


def test_truncation_lowers_the_estimate() -> None:
    rnn = RunSpec(model="rnn", seq_len=200, steps=400)
    full = budget.estimate_seconds(rnn, "torch")
    assert budget.estimate_seconds(rnn.replace(truncation=5), "torch") < 0.5 * full


def test_estimate_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="RunSpec"):
        budget.estimate_seconds({"depth": 2}, "torch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="framework='jax'"):
        budget.estimate_seconds(RunSpec(), "jax")


def test_speed_scales_the_estimate() -> None:
    slow = costs.run_seconds(HUGE, "torch", Speed(2.0, 2.0, 2.0))
    assert slow == pytest.approx(2 * costs.run_seconds(HUGE, "torch", Speed(1.0, 1.0, 1.0)))


@pytest.mark.parametrize(
    "seconds, text",
    [(4.2, "about 4.2 s"), (40, "about 40 s"), (600, "about 10 min"),
     (10_200, "about 2 h 50 min"), (7200, "about 2 h"), (500_000, "about 6 days")],
)  # fmt: skip
def test_format_seconds(seconds: float, text: str) -> None:
    assert budget.format_seconds(seconds) == text


# -- calibration ----------------------------------------------------------------


def test_calibrate_measures_clamped_factors_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "SPEED", None)
    speed = budget.calibrate()
    assert budget.SPEED is speed
    assert all(0.25 <= f <= 4 for f in speed)
    calls = []
    monkeypatch.setattr(budget, "_measure", lambda: calls.append(1) or budget._REFERENCE_UNITS)
    monkeypatch.setattr(budget, "SPEED", None)
    budget.estimate_seconds(RunSpec(), "torch")
    budget.estimate_seconds(HUGE, "keras")
    assert calls == [1]
    assert budget.SPEED == Speed(1.0, 1.0, 1.0)


def test_calibration_factors_are_clamped(monkeypatch: pytest.MonkeyPatch) -> None:
    units = budget._REFERENCE_UNITS
    odd = Speed(units.op * 100, units.mac / 100, units.elem)
    monkeypatch.setattr(budget, "_measure", lambda: odd)
    assert budget.calibrate() == Speed(4.0, 0.25, 1.0)


def test_fast_runs_never_calibrate(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("calibrated")

    monkeypatch.setattr(budget, "SPEED", None)
    monkeypatch.setattr(budget, "_measure", refuse)
    for framework in FRAMEWORKS:
        plan = budget.plan([(RunSpec(), framework)])
        assert not plan.progress
    assert budget.SPEED is None
    # a run near a limit does calibrate
    with pytest.raises(AssertionError, match="calibrated"):
        budget.plan([(HUGE.replace(steps=2), "torch")])


# -- the budget -----------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_huge_run_is_refused_naming_fields_and_keyword(
    monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    _no_training(monkeypatch, framework)
    with pytest.raises(BudgetError) as info:
        explodebook.run(HUGE, framework)
    error = info.value
    assert isinstance(error, SpecError) and isinstance(error, ValueError)
    message = str(error)
    assert "RunSpec(depth=64, width=1024)" in message
    assert f"with {framework}" in message
    assert " h " in message  # hours, e.g. "about 1 h 31 min"
    assert "budget of 2 min" in message
    for name in ("width", "depth", "steps"):
        assert name in error.fields
        assert f"{name} to at most" in message
    assert f'explodebook.run(spec, "{framework}", max_seconds=None)' in message
    assert error.seconds > 3600 and error.max_seconds == 120
    assert not cache.contains(HUGE, framework)


def test_suggested_values_fit_the_budget() -> None:
    with pytest.raises(BudgetError) as info:
        budget.plan([(HUGE, "torch")])
    message = str(info.value)
    for name in info.value.fields:
        value = int(message.split(f"{name} to at most ")[1].split(",")[0].split(" ")[0].rstrip("."))
        assert budget.estimate_seconds(HUGE.replace(**{name: value}), "torch") <= 120
        assert budget.estimate_seconds(HUGE.replace(**{name: value + 1}), "torch") > 120


def test_every_path_checks_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_training(monkeypatch, "torch")
    backend = _backend("torch")
    for call in (
        lambda: backend.run(HUGE),
        lambda: cache.cached_run(HUGE, "torch"),
        lambda: explodebook.run(HUGE, "torch", cache=False),
        lambda: sweep(HUGE, "init_scale", [1.0]),
        lambda: sweep(HUGE, "init_scale", [1.0], cache=False),
    ):
        with pytest.raises(BudgetError):
            call()


def test_the_keyword_or_the_setting_lets_a_run_through(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = RunSpec(steps=30)  # 0.02 s, over a budget of a millisecond
    with pytest.raises(BudgetError, match=r"budget of 0.001 s \(max_seconds\).*max_seconds=None"):
        explodebook.run(spec, max_seconds=1e-3)
    assert explodebook.run(spec, max_seconds=None).steps_run > 0
    assert explodebook.run(spec.replace(seed=2), max_seconds=10).steps_run > 0
    monkeypatch.setattr(budget, "MAX_SECONDS", 1e-3)
    with pytest.raises(BudgetError, match=r"budget of 0.001 s \(explodebook.budget.MAX_SECONDS\)"):
        explodebook.run(spec.replace(seed=3))
    assert explodebook.run(spec.replace(seed=3), max_seconds=None).steps_run > 0
    monkeypatch.setattr(budget, "MAX_SECONDS", None)
    assert explodebook.run(spec.replace(seed=4)).steps_run > 0
    # a cached trace costs nothing: returned whatever the budget
    assert explodebook.run(spec, max_seconds=1e-3) is explodebook.run(spec)


def test_max_seconds_takes_numpy_numbers() -> None:
    for limit in (np.int64(60), np.float32(60.0)):
        assert explodebook.run(RunSpec(steps=5), max_seconds=limit).steps_run == 5


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "60", True])
def test_max_seconds_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="max_seconds"):
        explodebook.run(RunSpec(steps=5), max_seconds=bad)


def test_sweep_checks_its_total_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend("torch")
    started: list[RunSpec] = []
    real = backend._train
    def train(spec: RunSpec, plan: Any) -> Any:
        started.append(spec)
        return real(spec, plan)

    monkeypatch.setattr(backend, "_train", train)
    base = RunSpec(depth=4, width=256, steps=1000)
    one = budget.estimate_seconds(base, "torch")
    values = [0.5, 1.0, 1.5, 2.0]
    limit = 2.5 * one  # each run fits, the four together do not
    with pytest.raises(BudgetError) as info:  # in this process (on workers: test_sweep_parallel)
        sweep(base, "init_scale", values, max_seconds=limit, n_jobs=1)
    assert "sweep over init_scale (4 runs)" in str(info.value)
    assert "sweep(base, 'init_scale', values, ..., max_seconds=None)" in str(info.value)
    assert started == []
    # Runs already in the cache do not count: with two of them done, the
    # rest fits.
    small = base.replace(steps=20)
    one_small = budget.estimate_seconds(small, "torch")
    sweep(small, "init_scale", values[:2], max_seconds=None)
    started.clear()
    sweep(small, "init_scale", values, max_seconds=2.5 * one_small)
    assert [s.init_scale for s in started] == values[2:]


def test_book_runs_are_well_under_the_budget() -> None:
    # The largest runs of the chapters, their widgets and exercises: a
    # quarter of the default budget at most on the reference machine, and
    # within it on a machine four times as slow (the most calibration
    # assumes).
    rnn_base = RunSpec(model="rnn", cell="simple", task="adding", width=32, init="xavier",
                       seq_len=20, steps=500)  # fmt: skip
    adding = RunSpec(model="rnn", width=32, init="xavier", optimizer="adam",
                     learning_rate=0.01, steps=400, seq_len=20)  # fmt: skip
    book = [
        RunSpec(),
        rnn_base.replace(seq_len=80, steps=2000),  # chapter 2's exercise
        rnn_base.replace(seq_len=100),  # chapter 2's widget at its longest
        adding.replace(cell="lstm", seq_len=40, steps=1000),  # chapter 6's exercise
        adding.replace(cell="gru"),
        RunSpec(model="rnn", cell="lstm", width=32, seq_len=150, init_scale=4.0, steps=100),
        RunSpec(depth=20, width=32, task="regression-scaled", steps=300),
        RunSpec(depth=20, width=32, task="regression-scaled", steps=200, normalization="batch"),
        RunSpec(depth=10, width=32, task="regression-scaled", steps=300, batch_size=500),
        RunSpec(width=512, steps=1),
        # chapter 6's widget at its largest: cell, seq_len and steps
        RunSpec(model="rnn", cell="gru", width=32, seq_len=100, steps=1600),
    ]
    for spec in book:
        for framework in FRAMEWORKS:
            assert budget.estimate_seconds(spec, framework) < 30, (spec, framework)
            assert costs.run_seconds(spec, framework, Speed(4.0, 4.0, 4.0)) < 120


def test_explore_shows_a_budget_error_as_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets")
    from explodebook.widgets import explore

    monkeypatch.setattr(budget, "MAX_SECONDS", 1e-3)
    explorer = explore(RunSpec(steps=20), controls={"width": [8, 16]})
    assert explorer.error is not None and explorer.error.startswith("BudgetError:")
    assert "Cannot run this setting" in explorer.status.value


# -- progress bars --------------------------------------------------------------


class FakeBar:
    """Stands in for tqdm.auto.tqdm, recording what the bar was told."""

    made: list[FakeBar] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.total = kwargs["total"]
        self.n = 0
        self.updates = 0
        self.closed = False
        FakeBar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n
        self.updates += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[FakeBar]:
    import tqdm.auto

    FakeBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    return FakeBar.made


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_bar_for_a_fast_run(bars: list[FakeBar], framework: str) -> None:
    explodebook.run(SMALL, framework)
    assert bars == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_long_run_has_a_bar_updated_per_chunk(
    monkeypatch: pytest.MonkeyPatch, bars: list[FakeBar], framework: str
) -> None:
    spec = SMALL.replace(steps=300)
    expected = explodebook.run(spec, framework, cache=False)
    assert bars == []
    monkeypatch.setattr(budget, "PROGRESS_SECONDS", 0.0)  # every run counts as long
    monkeypatch.setattr(budget, "CHECK_SECONDS", 0.01)  # chunks of a few steps
    trace = explodebook.run(spec, framework)
    (bar,) = bars
    assert bar.kwargs["total"] == 300 and bar.kwargs["unit"] == "step"
    assert bar.kwargs["leave"] is False
    assert bar.closed and bar.n == 300
    assert 2 < bar.updates < 300  # per chunk, not per step
    # the same trace as in the usual chunks, without a bar
    assert trace.equals(expected)


def test_progress_keyword_forces_or_hides_the_bar(
    monkeypatch: pytest.MonkeyPatch, bars: list[FakeBar]
) -> None:
    explodebook.run(RunSpec(steps=20), progress=True)
    assert len(bars) == 1 and bars[0].closed
    monkeypatch.setattr(budget, "PROGRESS_SECONDS", 0.0)
    explodebook.run(RunSpec(steps=21), progress=False)
    assert len(bars) == 1


def test_a_long_sweep_has_one_bar_over_its_runs(
    monkeypatch: pytest.MonkeyPatch, bars: list[FakeBar]
) -> None:
    base, values = RunSpec(steps=40), [0.5, 1.0, 1.5]
    runs = [(base.replace(init_scale=v), fw) for fw in FRAMEWORKS for v in values]
    longest = max(budget.estimate_seconds(spec, fw) for spec, fw in runs)
    total = sum(budget.estimate_seconds(spec, fw) for spec, fw in runs)
    monkeypatch.setattr(budget, "PROGRESS_SECONDS", (longest + total) / 2)
    sweep(base, "init_scale", values, FRAMEWORKS)
    (bar,) = bars  # its runs are short: no bar of their own
    assert bar.kwargs["unit"] == "run" and bar.kwargs["total"] == 6
    assert bar.closed and bar.n == 6
    sweep(RunSpec(steps=41), "init_scale", [0.5], progress=False)
    assert len(bars) == 1


def test_no_automatic_bar_in_a_notebook_run_by_a_tool(
    monkeypatch: pytest.MonkeyPatch, bars: list[FakeBar]
) -> None:
    # A kernel executing for nbclient (a book build) was asked for no input.
    import types

    kernel = types.SimpleNamespace(_allow_stdin=False)
    shell = types.SimpleNamespace(kernel=kernel)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setattr(budget, "PROGRESS_SECONDS", 0.0)
    assert not budget.watched()
    explodebook.run(RunSpec(steps=20))
    sweep(RunSpec(steps=21), "init_scale", [0.5, 1.0])
    assert bars == []
    explodebook.run(RunSpec(steps=22), progress=True)  # asked for: shown
    assert len(bars) == 1
    kernel._allow_stdin = True  # JupyterLab, VS Code...
    assert budget.watched()
    explodebook.run(RunSpec(steps=23))
    assert len(bars) == 2


def test_a_missing_tqdm_means_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    progress = budget.Progress(True, 10, "x")
    progress.to(5)
    progress.close(True)


# -- Ctrl-C ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _ctrl_c_is_delivered() -> Iterator[None]:
    """Ctrl-C reaches Python as at a terminal, whatever the test process inherited.

    A shell starts a background job (``make test &``, a CI script run
    with ``&``) with SIGINT ignored, and Python then leaves it ignored: the
    presses these tests simulate would never arrive.
    """
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _ctrl_c_after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: int,
                  presses: int = 1) -> None:  # fmt: skip
    """Press Ctrl-C (SIGINT to this process) ``presses`` times during the
    ``calls``-th call of ``owner.name``, which the loop makes once per step
    or chunk."""
    real = getattr(owner, name)
    count = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        if count[0] == calls:
            for _ in range(presses):
                signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def _interrupt_point(framework: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, int]:
    if framework == "torch":
        from explodebook.backends.torch import LayerRecorder

        return LayerRecorder, "end_step", 50  # once per step
    from explodebook.backends import keras as kb
    from explodebook.flat import FlatLayout

    monkeypatch.setattr(kb, "CHUNK_STEPS", 20)
    return FlatLayout, "rows", 3  # once per chunk of 20 steps


def _threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ctrl_c_raises_with_the_steps_done_as_a_trace(
    monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    spec = SMALL.replace(steps=300)
    full = _backend(framework).run(spec)
    threads = _threads()
    info_before = cache.info()
    owner, name, calls = _interrupt_point(framework, monkeypatch)
    with monkeypatch.context() as m:
        _ctrl_c_after(m, owner, name, calls)
        with pytest.raises(RunInterrupted) as info:
            explodebook.run(spec, framework)
    error = info.value
    assert isinstance(error, KeyboardInterrupt)
    assert (error.spec, error.framework) == (spec, framework)
    partial = error.trace
    n = partial.steps_run
    assert 50 <= n < 300 if framework == "torch" else n == 60
    assert f"after {n} of 300 steps" in str(error)
    # A valid trace: that of the shorter run, bit for bit.
    assert partial.spec == spec.replace(steps=n)
    assert partial.extra == {"interrupted": True, "requested_steps": 300}
    assert partial.equals(_backend(framework).run(spec.replace(steps=n)))
    np.testing.assert_array_equal(partial.loss, full.loss[:n])
    # The process is as before: threads, the run cache, and the next run.
    assert _threads() == threads
    assert not cache.contains(spec, framework)
    assert cache.info().currsize == info_before.currsize
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    again = explodebook.run(spec, framework)
    assert again.steps_run == 300 and again.equals(full)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_second_ctrl_c_stops_at_once_and_leaves_a_clean_process(
    monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    spec = SMALL.replace(steps=300, seed=2)
    full = _backend(framework).run(spec)
    threads = _threads()
    owner, name, calls = _interrupt_point(framework, monkeypatch)
    if framework == "keras":
        from explodebook.backends import keras as kb

        kb.clear_cache()
        kb.run(spec)
        (trainer,) = kb._TRAINERS.values()
    with monkeypatch.context() as m:
        _ctrl_c_after(m, owner, name, calls, presses=2)
        with pytest.raises(RunInterrupted, match="second Ctrl-C") as info:
            explodebook.run(spec, framework)
    assert info.value.trace is None
    assert isinstance(info.value.__cause__, KeyboardInterrupt)
    assert _threads() == threads
    assert not cache.contains(spec, framework)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if framework == "keras":
        # the loop stopped half-way through a call is not reused
        assert trainer not in kb._TRAINERS.values()
    assert explodebook.run(spec, framework).equals(full)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ctrl_c_during_set_up_raises_without_a_trace(
    monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    backend = _backend(framework)
    spec = SMALL.replace(steps=7, seed=5)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    threads = _threads()
    monkeypatch.setattr(backend, "dataset_for", interrupted)
    with pytest.raises(RunInterrupted) as info:
        explodebook.run(spec, framework)
    assert info.value.trace is None
    assert _threads() == threads
    monkeypatch.undo()
    assert explodebook.run(spec, framework).steps_run == 7


def test_ctrl_c_in_a_sweep_keeps_the_finished_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from explodebook.backends.torch import LayerRecorder

    base = SMALL.replace(steps=300)
    _ctrl_c_after(monkeypatch, LayerRecorder, "end_step", 2 * 300 + 50)  # in the third run
    with pytest.raises(RunInterrupted) as info:
        sweep(base, "init_scale", [0.5, 1.0, 1.5])
    assert info.value.trace.spec.init_scale == 1.5
    if hasattr(info.value, "__notes__"):
        assert "2 of 3 runs done" in info.value.__notes__[0]
    assert cache.contains(base.replace(init_scale=0.5), "torch")
    assert cache.contains(base.replace(init_scale=1.0), "torch")
    assert not cache.contains(base.replace(init_scale=1.5), "torch")


def test_interruptible_outside_the_main_thread_changes_nothing() -> None:
    seen = []

    def body() -> None:
        with budget.interruptible() as flag:
            seen.append((flag.requested, signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [(False, signal.default_int_handler)]


def test_next_run_after_ctrl_c_matches_a_fresh_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Interrupt a run of each framework here, run the spec again, and
    # compare with the same spec run in a new process.
    spec = RunSpec(model="rnn", cell="lstm", seq_len=10, steps=120, clipnorm=1.0)
    again = {}
    for framework in FRAMEWORKS:
        owner, name, calls = _interrupt_point(framework, monkeypatch)
        with monkeypatch.context() as m:
            _ctrl_c_after(m, owner, name, calls)
            with pytest.raises(RunInterrupted):
                explodebook.run(spec, framework, cache=False)
        again[framework] = explodebook.run(spec, framework, cache=False)
    code = (
        "import sys; import explodebook; from explodebook import RunSpec\n"
        f"spec = RunSpec.from_dict({spec.to_dict()!r})\n"
        "for fw in ('torch', 'keras'):\n"
        "    explodebook.run(spec, fw).save(f'{sys.argv[1]}/{fw}.npz')\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT, env=env,
                   capture_output=True)  # fmt: skip
    from explodebook.trace import Trace

    for framework in FRAMEWORKS:
        assert again[framework].equals(Trace.load(tmp_path / f"{framework}.npz"))
