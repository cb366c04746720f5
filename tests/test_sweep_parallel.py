"""`explodebook.sweep` on several workers: joblib's loky processes, and a real Dask cluster.

The traces must be the serial run's bit for bit; runs done in workers land
in this process's run cache; the budget counts the workers; Ctrl-C keeps
the finished runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import joblib
import pytest

from explodebook import budget, cache, sweep as sweep_module
from explodebook.budget import BudgetError
from explodebook.progress import RunInterrupted
from explodebook.spec import RunSpec
from explodebook.sweep import sweep

# The classic MLP for 30 steps: finite at 0.001, non-finite at step 8 at
# 0.01 and at step 4 at 0.1 (a run that stops early is compared too).
SHORT = RunSpec(steps=30)
RATES = [0.001, 0.01, 0.1]


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b, strict=True))


def test_workers_give_the_serial_traces_bit_for_bit() -> None:
    serial = sweep(SHORT, "learning_rate", RATES, cache=False, n_jobs=1).traces["torch"]
    parallel = sweep(SHORT, "learning_rate", RATES, cache=False, n_jobs=2).traces["torch"]
    assert [t.first_nonfinite_step for t in serial] == [None, 8, 4]  # the comparison sees both kinds
    assert _same(serial, parallel)
    assert [t.spec.learning_rate for t in parallel] == RATES  # in the order asked, not finished


def test_keras_workers_give_the_serial_traces_bit_for_bit() -> None:
    # TensorFlow in the workers runs on one thread; here, on its default pools.
    values = RATES[:2]
    serial = sweep(SHORT, "learning_rate", values, "keras", cache=False, n_jobs=1)
    parallel = sweep(SHORT, "learning_rate", values, "keras", cache=False, n_jobs=2)
    assert _same(serial.traces["keras"], parallel.traces["keras"])


def test_worker_runs_land_in_the_parent_cache() -> None:
    first = sweep(SHORT, "learning_rate", RATES, n_jobs=2)
    assert all(cache.contains(SHORT.replace(learning_rate=r)) for r in RATES)
    misses = cache.info().misses
    again = sweep(SHORT, "learning_rate", RATES, n_jobs=2)  # all cached: no workers, no runs
    assert all(a is b for a, b in zip(first.traces["torch"], again.traces["torch"], strict=True))
    assert cache.info().misses == misses
    with pytest.raises(ValueError, match="read-only"):
        first.traces["torch"][0].loss[0] = 0.0
    # One cached, two to do: the cached trace is reused, the others run.
    cache.clear()
    kept = cache.cached_run(SHORT.replace(learning_rate=0.01))
    mixed = sweep(SHORT, "learning_rate", RATES, n_jobs=2).traces["torch"]
    assert mixed[1] is kept and _same(mixed, first.traces["torch"])


def test_the_budget_bounds_the_wall_time_of_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "SPEED", budget.Speed(1.0, 1.0, 1.0))  # estimates fixed
    values = [0.5, 1.0, 1.5, 2.0]
    one = budget.estimate_seconds(SHORT, "torch")
    limit = 2.5 * one  # the four runs fit on two workers, not on one
    with pytest.raises(BudgetError, match=r"\(4 runs\)"):
        sweep(SHORT, "init_scale", values, max_seconds=limit, n_jobs=1)
    assert cache.info().currsize == 0
    result = sweep(SHORT, "init_scale", values, max_seconds=limit, n_jobs=2)
    assert len(result) == 4
    cache.clear()
    with pytest.raises(BudgetError, match=r"4 runs on 2 workers, so 2 x"):
        sweep(SHORT, "init_scale", values, max_seconds=1.1 * one, n_jobs=2)  # 2 x 1.1 < 4
    with pytest.raises(BudgetError, match="the longest run of the sweep over init_scale"):
        sweep(SHORT, "init_scale", values, max_seconds=0.9 * one, n_jobs=8)  # 8 x 0.9 > 4
    assert cache.info().currsize == 0


@pytest.mark.parametrize("n_jobs", [0, 1.5, True, "2"])
def test_n_jobs_must_be_a_nonzero_integer(n_jobs: object) -> None:
    with pytest.raises(ValueError, match=f"n_jobs={n_jobs!r} is not allowed"):
        sweep(SHORT, "learning_rate", RATES, n_jobs=n_jobs)  # type: ignore[arg-type]


def test_the_default_uses_workers_only_when_they_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    todo = [(SHORT.replace(learning_rate=r), "torch") for r in RATES]
    cores = min(joblib.cpu_count(), len(todo))
    assert sweep_module._workers(None, todo) == (1, 1)  # 3 short runs: a start-up costs more
    monkeypatch.setitem(sweep_module.STARTUP_SECONDS, "torch", 0.0)
    assert sweep_module._workers(None, todo) == ((-1, cores) if cores > 1 else (1, 1))
    with monkeypatch.context() as m:  # a book build: its pages already share the cores
        m.setattr(budget, "watched", lambda: False)
        assert sweep_module._workers(None, todo) == (1, 1)
        assert sweep_module._workers(2, todo) == (2, 2)  # asked for: given
    assert sweep_module._workers(1, todo) == (1, 1)
    assert sweep_module._workers(2, todo[:1]) == (1, 1)  # one run: here
    with joblib.parallel_config(n_jobs=2):  # a joblib context decides, whatever the estimate
        monkeypatch.setitem(sweep_module.STARTUP_SECONDS, "torch", 1e9)
        assert sweep_module._workers(None, todo) == (2, 2)


def test_ctrl_c_on_workers_keeps_the_finished_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = []
    real = cache.store

    def store(spec: RunSpec, framework: str, trace: object) -> object:
        if stored:
            raise KeyboardInterrupt  # Ctrl-C while the second trace arrives
        stored.append(spec)
        return real(spec, framework, trace)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "store", store)
    with pytest.raises(RunInterrupted, match="1 of 3 runs done.*in the run cache") as info:
        sweep(SHORT, "learning_rate", RATES, n_jobs=2)
    assert info.value.trace is None
    assert cache.info().currsize == 1 and cache.contains(stored[0])
    monkeypatch.undo()
    resumed = sweep(SHORT, "learning_rate", RATES, n_jobs=2).traces["torch"]  # the pool still works
    kept = RATES.index(stored[0].learning_rate)  # the first to finish, whichever it was
    assert len(resumed) == 3 and resumed[kept] is cache.cached_run(stored[0])
    assert cache.info().currsize == 3


@pytest.mark.slow  # starts a cluster of two processes
def test_the_same_call_runs_on_a_dask_cluster() -> None:
    distributed = pytest.importorskip("dask.distributed")
    serial = sweep(SHORT, "learning_rate", RATES, cache=False, n_jobs=1).traces["torch"]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
            on_dask = sweep(SHORT, "learning_rate", RATES, cache=False).traces["torch"]
    assert _same(serial, on_dask)
    assert len(tasks.data) >= len(RATES)  # the runs were the cluster's tasks, not this process's
