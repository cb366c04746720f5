"""What both backends do around their training loop, framework-free: budget, progress bar, Ctrl-C."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from explodebook import budget
from explodebook.spec import RunSpec
from explodebook.trace import Trace

__all__ = ["run_within_budget", "TrainingLoop", "observing", "Observer"]

#: Called between chunks of steps with the run's spec, its framework and
#: its record so far: a ``(n, 2 + 4 * L)`` array (`Trace.from_record`).
Observer = Callable[[RunSpec, str, Any], None]

# The observer of the runs that this thread starts (see `observing`).
_local = threading.local()


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Show ``observer`` the record of every run this thread starts, as it grows.

    Between chunks of steps (about every ``budget.CHECK_SECONDS`` of
    training, where the loop also checks for Ctrl-C), both backends call
    ``observer(spec, framework, record)``; the widgets draw the loss curve
    growing from it. An exception the observer raises ends the run (a
    widget abandons a setting the reader has left this way); the run is
    then not cached. Per thread, so that two runs on two threads (the two
    frameworks of one setting) each report to their own observer.
    Watching does not change the trace: the record is the same rows the
    run returns, read earlier.
    """
    previous = getattr(_local, "observer", None)
    _local.observer = observer
    try:
        yield
    finally:
        _local.observer = previous


def run_within_budget(
    spec: RunSpec,
    framework: str,
    train: Callable[[RunSpec, Any], Trace],
    max_seconds: Any,
    progress: bool | None,
    on_interrupt: Callable[[], None] | None = None,
) -> Trace:
    """Plan a run (refused if over budget: ``budget.plan``), then ``train(spec, plan)``.

    ``plan`` is the ``budget.Plan`` of the run: its estimate, and whether
    to show a progress bar.

    A Ctrl-C during set-up, or a second one mid-step, leaves no consistent
    record: it raises ``RunInterrupted`` without a trace, after
    ``on_interrupt()`` (if given) has put back what the training changed.
    """
    plan = budget.plan([(spec, framework)], max_seconds, progress)
    try:
        return train(spec, plan)
    except budget.RunInterrupted:
        raise
    except KeyboardInterrupt as e:
        if on_interrupt is not None:
            on_interrupt()
        raise budget.stopped_at_once(spec, framework) from e


class TrainingLoop:
    """A training loop's progress bar, first Ctrl-C and wall time.

    Wrap the steps in ``with loop.running() as stop:`` (check
    ``stop.requested`` and move ``loop.bar`` between chunks of steps), then
    return ``loop.finish(trace)``: the trace, or, after a first Ctrl-C, a
    ``RunInterrupted`` that carries it. ``plan`` is the run's ``budget.Plan``.
    """

    def __init__(self, spec: RunSpec, framework: str, plan: Any) -> None:
        self.spec, self.framework = spec, framework
        self.bar = budget.Progress(plan.progress, spec.steps, budget.describe(spec, framework))
        self.wall_time = 0.0
        self.stop: Any = None  # the StopFlag of running()
        self._observer: Observer | None = getattr(_local, "observer", None)
        #: whether an observer watches (`observing`): the loops then report
        #: in smaller chunks, so that a widget's first frame comes sooner
        self.observed = self._observer is not None

    def report(self, record: Callable[[], Any]) -> None:
        """Show the record so far to the thread's observer (`observing`), if any.

        ``record()`` is only called when there is an observer: without one
        the loop does exactly what it did before.
        """
        if self._observer is not None:
            self._observer(self.spec, self.framework, record())

    @contextmanager
    def running(self) -> Iterator[Any]:
        """Time the steps inside, with Ctrl-C turned into a request to stop.

        Yields the ``StopFlag`` whose ``requested`` says a first Ctrl-C came.
        """
        completed = False
        try:
            start = time.perf_counter()
            with budget.interruptible() as stop:
                self.stop = stop
                yield stop
            self.wall_time = time.perf_counter() - start
            completed = not stop.requested
        finally:
            self.bar.close(completed)

    def finish(self, trace: Trace) -> Trace:
        """``trace``, or a ``RunInterrupted`` with it if the first Ctrl-C stopped the loop."""
        if self.stop is not None and self.stop.requested:
            raise budget.interrupted(trace, self.spec, self.framework)
        return trace
