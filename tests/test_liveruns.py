"""Runs watched while they train, and a setting's frameworks run at once, give the same traces.

The widgets draw from these (`explodebook.liveruns`); a faster or earlier
view of a run must not change a single number of it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from explodebook.backends.common import observing
from explodebook.liveruns import Abandoned, LiveRuns
from explodebook.spec import RunSpec
from explodebook.trace import Trace

SPECS = {
    "mlp": RunSpec(task="regression-scaled", steps=700, learning_rate=0.003),
    "rnn clipped": RunSpec(model="rnn", cell="lstm", seq_len=10, steps=300, global_clipnorm=1.0),
    "diverges": RunSpec(steps=400),  # the classic set-up: non-finite at step 8
}
FIELDS = ("loss", "grad_norm_total", "grad_norms", "clipped_grad_norms", "grad_max_abs",
          "weight_norms")  # fmt: skip


def _backend(framework: str):
    if framework == "keras":
        pytest.importorskip("tensorflow")
    from explodebook.backends import get

    return get(framework)


def assert_same(a: Trace, b: Trace) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.first_nonfinite_step == b.first_nonfinite_step


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("name", list(SPECS))
def test_a_watched_run_is_the_same_run(framework: str, name: str) -> None:
    backend, spec = _backend(framework), SPECS[name]
    plain = backend.run(spec)
    records: list[np.ndarray] = []
    with observing(lambda s, fw, record: records.append(np.array(record))):
        watched = backend.run(spec)
    assert_same(watched, plain)  # bit for bit, not only to rounding
    if name != "diverges":  # (stops within its first chunk)
        assert len(records) >= 3  # the record grew in several chunks
    sizes = [len(r) for r in records]
    assert sizes == sorted(sizes) and all(sizes)
    for record in records:  # every view is the start of the run's own record
        np.testing.assert_array_equal(record[:, 0], plain.loss[: len(record)])


def test_observing_is_per_thread_and_ends_with_the_block() -> None:
    from explodebook.backends import torch as backend

    seen: list[str] = []
    spec = SPECS["mlp"]
    with observing(lambda s, fw, record: seen.append(threading.current_thread().name)):
        other = threading.Thread(target=backend.run, args=(spec,), name="other")
        other.start()
        other.join()
        assert seen == []  # the other thread has no observer
        backend.run(spec)
    count = len(seen)
    assert count and set(seen) == {threading.current_thread().name}
    backend.run(spec)
    assert len(seen) == count  # none after the block


def test_an_observer_that_raises_ends_the_run() -> None:
    from explodebook.backends import torch as backend

    calls = []

    def stop(spec: RunSpec, framework: str, record: np.ndarray) -> None:
        calls.append(len(record))
        raise Abandoned()

    with observing(stop), pytest.raises(Abandoned):
        backend.run(SPECS["mlp"])
    assert len(calls) == 1 and calls[0] < SPECS["mlp"].steps


@pytest.mark.parametrize("concurrent", [True, False])
def test_frameworks_run_at_once_give_each_framework_its_own_trace(concurrent: bool) -> None:
    pytest.importorskip("tensorflow")
    from explodebook.backends import get

    spec = SPECS["rnn clipped"]
    runs = LiveRuns(spec, ("torch", "keras"), lambda s, fw: get(fw).run(s), concurrent)
    assert runs.done.wait(300)
    traces = runs.result()
    assert [t.framework for t in traces] == ["torch", "keras"]
    for trace in traces:
        assert_same(trace, get(trace.framework).run(spec))
    assert runs.steps_done() == spec.steps


def test_a_failing_run_raises_in_the_callers_thread() -> None:
    def fail(spec: RunSpec, framework: str) -> Trace:
        raise RuntimeError(f"{framework} failed")

    runs = LiveRuns(SPECS["mlp"], ("torch",), fail)
    assert runs.done.wait(30)
    with pytest.raises(RuntimeError, match="torch failed"):
        runs.result()


def _held_runs(first_gate: threading.Event, log: list[str]):
    """A run function: the first framework waits for ``first_gate``; the others log their start."""
    plain = _backend("torch").run(SPECS["diverges"])

    def run(spec: RunSpec, framework: str) -> Trace:
        if framework == "torch":
            assert first_gate.wait(30)
        else:
            log.append(f"{framework} starts")
        return plain

    return run


def _keras_starts_while_the_first_run_waits(runs: LiveRuns, gate: threading.Event, log: list[str]) -> None:
    """Keras' run starts (within 30 s) while the first run still waits for ``gate``; then all end."""
    for _ in range(300):
        if log:
            break
        threading.Event().wait(0.1)
    assert log == ["keras starts"] and not runs.done.is_set()
    gate.set()
    assert runs.done.wait(30)


def test_a_head_start_holds_the_other_runs_until_released(monkeypatch) -> None:
    from explodebook import liveruns

    monkeypatch.setattr(liveruns, "HEAD_START_SECONDS", 60.0)  # only release() lets it go here
    gate, log = threading.Event(), []
    runs = LiveRuns(SPECS["diverges"], ("torch", "keras"), _held_runs(gate, log), head_start=True)
    assert not runs.done.wait(0.3)
    assert log == []  # held back while the first run is under way
    runs.release()
    gate.set()
    assert runs.done.wait(30)
    assert log == ["keras starts"] and len(runs.result()) == 2


def test_a_head_start_ends_with_the_first_run_or_after_its_limit(monkeypatch) -> None:
    from explodebook import liveruns

    monkeypatch.setattr(liveruns, "HEAD_START_SECONDS", 60.0)
    gate, log = threading.Event(), []
    gate.set()  # the first run ends at once, never released: the others start then
    runs = LiveRuns(SPECS["diverges"], ("torch", "keras"), _held_runs(gate, log), head_start=True)
    assert runs.done.wait(30) and log == ["keras starts"]

    monkeypatch.setattr(liveruns, "HEAD_START_SECONDS", 0.05)
    gate, log = threading.Event(), []
    runs = LiveRuns(SPECS["diverges"], ("torch", "keras"), _held_runs(gate, log), head_start=True)
    # a first run slow to show anything holds the others 0.05 s at most
    _keras_starts_while_the_first_run_waits(runs, gate, log)


def test_without_a_head_start_every_run_starts_at_once() -> None:
    gate, log = threading.Event(), []
    runs = LiveRuns(SPECS["diverges"], ("torch", "keras"), _held_runs(gate, log))
    _keras_starts_while_the_first_run_waits(runs, gate, log)


def test_a_run_held_back_and_then_abandoned_never_starts(monkeypatch) -> None:
    from explodebook import liveruns

    monkeypatch.setattr(liveruns, "HEAD_START_SECONDS", 60.0)
    gate, log = threading.Event(), []
    runs = LiveRuns(SPECS["diverges"], ("torch", "keras"), _held_runs(gate, log), head_start=True)
    stopper = threading.Thread(target=runs.abandon)  # the reader moved on meanwhile
    stopper.start()
    stopper.join(0.5)
    gate.set()  # the first run ends after abandon()
    stopper.join(30)
    assert not stopper.is_alive()  # the held run woke at abandon(), not after 60 s
    assert log == [] and runs.done.is_set()
