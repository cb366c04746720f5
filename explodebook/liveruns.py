"""One setting's runs in every framework at once, on helper threads, watched as they train."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from explodebook.backends.common import observing
from explodebook.spec import RunSpec
from explodebook.trace import Trace

__all__ = ["LiveRuns", "Abandoned", "HEAD_START_SECONDS"]

#: Longest head start, in seconds, of the first framework's run over the
#: others' (`LiveRuns`): a caller that never releases them, or a first run
#: slow to show anything, holds them back no longer than this.
HEAD_START_SECONDS = 0.15


class Abandoned(Exception):
    """Raised into a run whose setting the reader has left: it stops at its next chunk."""


class LiveRuns:
    """One setting's runs, one per framework, on helper threads; their records as they grow.

    The caller's thread stays free: it waits on ``done``, reads the
    records so far with `partial` (``fresh`` says a new one came), abandons
    the runs with `abandon` or collects them with `result`.

    Args:
        spec: the setting.
        frameworks: run ``spec`` in each, in this order.
        run: ``run(spec, framework) -> Trace``, e.g. a cached run.
        concurrent: one thread per framework, training at the same time;
            ``False``: one thread running them one after the other.
        head_start: with ``concurrent``, start the first framework's run
            alone, and the others when the caller calls `release` (after
            drawing its first frame), when the first run ends, or
            `HEAD_START_SECONDS` later, whichever comes first. ``False``:
            all at once.

    Why a head start: a widget's first frame needs a first record, and
    then Python's lock to draw it. A Keras run that builds a new model or
    traces a new loop holds that lock for most of its first 0.2 s: beside
    it, a PyTorch run's first record came after 0.2 s instead of 0.02 s,
    and the frame's drawing waited as long again. The head start costs the
    other runs the time to the first frame, about a tenth of a second
    (``benchmarks/chapter_results.md``).
    """

    def __init__(
        self,
        spec: RunSpec,
        frameworks: Sequence[str],
        run: Callable[[RunSpec, str], Trace],
        concurrent: bool = True,
        head_start: bool = False,
    ) -> None:
        self.spec, self.frameworks, self._run = spec, tuple(frameworks), run
        self.done = threading.Event()
        self.fresh = False  # a record arrived since the last `partial()`
        self._records: dict[str, Any] = {}
        self._traces: dict[str, Trace] = {}
        self._errors: dict[str, BaseException] = {}
        self._abandoned = False
        self._go = threading.Event()  # the other runs may start
        if not head_start:
            self._go.set()
        groups = [[fw] for fw in self.frameworks] if concurrent else [list(self.frameworks)]
        self._threads = [
            threading.Thread(target=self._train, args=(group,), name="explore-run", daemon=True)
            for group in groups
        ]
        self._left = len(self._threads)
        self._lock = threading.Lock()
        for thread in self._threads:
            thread.start()

    def _observe(self, spec: RunSpec, framework: str, record: Any) -> None:
        if self._abandoned:
            raise Abandoned()
        self._records[framework] = record
        self.fresh = True

    def release(self) -> None:
        """Let the runs held back by ``head_start`` begin (no effect after the first call)."""
        self._go.set()

    def _train(self, frameworks: list[str]) -> None:
        fw = frameworks[0]
        first = fw == self.frameworks[0]
        try:
            if not first:  # the head start (see the class docstring)
                self._go.wait(HEAD_START_SECONDS)
                if self._abandoned:
                    raise Abandoned()
            with observing(self._observe):
                for fw in frameworks:
                    self._traces[fw] = self._run(self.spec, fw)
                    self.fresh = True
        except BaseException as error:  # raised again by result(), in the caller's thread
            self._errors[fw] = error
        finally:
            if first:
                self._go.set()
            with self._lock:
                self._left -= 1
                if not self._left:
                    self.done.set()

    def partial(self) -> list[Trace]:
        """The traces so far: complete ones, and the records of runs under way."""
        self.fresh = False
        traces = []
        for fw in self.frameworks:
            if fw in self._traces:
                traces.append(self._traces[fw])
            elif fw in self._records:
                traces.append(Trace.from_record(self._records[fw], self.spec, fw))
        return traces

    def steps_done(self) -> int:
        """Steps done by the run furthest behind (a finished run counts as all its steps)."""
        done = [
            self.spec.steps if fw in self._traces else len(self._records.get(fw, ()))
            for fw in self.frameworks
        ]
        return min(done, default=0)

    def abandon(self) -> None:
        """Stop the runs at their next chunk of steps, and wait for them (held ones never start)."""
        self._abandoned = True
        self._go.set()
        for thread in self._threads:
            thread.join()

    def result(self) -> list[Trace]:
        """Every framework's trace, in order; a run's error raised again."""
        for thread in self._threads:
            thread.join()
        for fw in self.frameworks:
            if fw in self._errors:
                raise self._errors[fw]
        return [self._traces[fw] for fw in self.frameworks]
