"""Run one `RunSpec` field over a list of values, in one or more frameworks.

A `Sweep` holds the traces, one per value and framework, in order. Every
run goes through `explodebook.cache.cached_run` by default, the package's
single run cache. To show a sweep in the static HTML book, pass it to
`explodebook.scrubber.scrubber`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

from explodebook import budget
from explodebook.cache import cached_run
from explodebook.cache import contains as cache_contains
from explodebook.checks import check_frameworks
from explodebook.progress import Progress, RunInterrupted
from explodebook.spec import RunSpec, SpecError
from explodebook.trace import Trace

__all__ = ["Sweep", "sweep", "format_value"]


def format_value(value: Any) -> str:
    """A field value as a reader wants to see it: ``1.5``, ``tanh``, ``None``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True, eq=False)
class Sweep:
    """The traces of one `RunSpec` field swept over a list of values.

    Attributes:
        base: the spec every run starts from.
        field: the `RunSpec` field that varies.
        values: the field's values, in order (length ``N``).
        specs: ``base.replace(field=value)`` for each value (length ``N``).
        traces: framework name -> its ``N`` traces, in ``values`` order.
    """

    base: RunSpec
    field: str
    values: tuple[Any, ...]
    specs: tuple[RunSpec, ...]
    traces: dict[str, list[Trace]]

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks run, in the order given to `sweep`."""
        return tuple(self.traces)

    def __len__(self) -> int:
        return len(self.values)

    def frame(self, index: int) -> tuple[Trace, ...]:
        """The traces of value ``index``, one per framework (in `frameworks` order)."""
        return tuple(self.traces[name][index] for name in self.traces)

    def label(self, index: int) -> str:
        """``"<field> = <value>"`` for value ``index``, e.g. ``"init_scale = 1.5"``."""
        return f"{self.field} = {format_value(self.values[index])}"

    @property
    def labels(self) -> list[str]:
        """`label` of every value."""
        return [self.label(i) for i in range(len(self))]

    @property
    def base_index(self) -> int | None:
        """Index of the value that reproduces ``base`` (its default), if any."""
        for i, spec in enumerate(self.specs):
            if spec == self.base:
                return i
        return None


def sweep(
    base: RunSpec,
    field: str,
    values: Iterable[Any],
    framework: str | Sequence[str] = "torch",
    cache: bool = True,
    *,
    max_seconds: float | None = budget.DEFAULT,
    progress: bool | None = None,
) -> Sweep:
    """Run ``base`` once per value of one field, in one or more frameworks.

    Every spec is built (and so validated) before anything runs, so a bad
    value fails at once instead of after minutes of training; and the
    time of all the runs still to do (not those already in the run cache)
    is estimated before any starts, so a sweep that would take too long is
    refused at once, with a ``BudgetError`` that says which fields to
    lower (``explodebook.budget``). Ctrl-C during a run raises
    ``RunInterrupted`` (its ``trace`` holds that run's steps done); the
    runs finished before it are in the run cache, so calling the same
    sweep again resumes where it stopped.

    Args:
        base: the spec to start from.
        field: name of a `RunSpec` field, e.g. ``"init_scale"``.
        values: the values the field takes (``N >= 1``).
        framework: ``"torch"``, ``"keras"`` or several, e.g.
            ``("torch", "keras")``.
        cache: go through `explodebook.cache.cached_run` (re-running a
            sweep in the same process costs nothing); ``False`` always runs.
        max_seconds: the longest estimated time of all the runs together,
            in seconds; default ``explodebook.budget.MAX_SECONDS``, ``None``
            for no limit.
        progress: a progress bar over the runs (and one for each run
            estimated over ``explodebook.budget.PROGRESS_SECONDS``);
            default: when the sweep is estimated over that threshold.

    Returns:
        a `Sweep` with ``N`` traces per framework.

    Raises:
        SpecError: ``field`` is not a `RunSpec` field, or a value is not
            allowed for it (the message says which value); also the
            ``BudgetError`` above.
    """
    if not isinstance(base, RunSpec):
        raise TypeError(f"base must be a RunSpec, got {type(base).__name__}")
    names = [f.name for f in fields(RunSpec)]
    if field not in names:
        raise SpecError(f"field={field!r} is not a RunSpec field; choose one of {names}")
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"values={values!r} is a string; give a list of values, e.g. [{values!r}]"
        )
    values = tuple(values)
    if not values:
        raise ValueError(f"values is empty: give at least one value of {field}")
    frameworks = check_frameworks(framework, "sweep(framework=...)")

    specs = []
    for i, value in enumerate(values):
        try:
            specs.append(base.replace(**{field: value}))
        except SpecError as e:
            raise SpecError(f"sweep over {field}: values[{i}]={value!r} is invalid: {e}") from e

    # The budget covers the runs still to do, all together. Each run checks
    # its own estimate against the same budget again, and passes: it is part
    # of the total.
    todo = [
        (spec, name)
        for name in frameworks
        for spec in (dict.fromkeys(specs) if cache else specs)  # cached: a repeat runs once
        if not (cache and cache_contains(spec, name))
    ]
    plan = budget.plan(
        todo, max_seconds, progress,
        what=f"sweep over {field} ({len(todo)} runs)",
        anyway=f"sweep(base, {field!r}, values, ..., max_seconds=None)",
    )  # fmt: skip
    # Each run: a bar of its own only when long, and none when bars are off.
    options = budget.given(max_seconds, False if progress is False else None)
    runs: dict[str, Callable[[RunSpec], Trace]] = {}
    for name in frameworks:
        if cache:
            runs[name] = partial(cached_run, framework=name, **options)
        else:
            from explodebook import backends

            runs[name] = partial(backends.get(name).run, **options)
    bar = Progress(plan.progress, len(specs) * len(frameworks), f"sweep {field}", "run")
    traces: dict[str, list[Trace]] = {name: [] for name in frameworks}
    completed = False
    try:
        for name in frameworks:
            for spec in specs:
                traces[name].append(runs[name](spec))
                bar.to(sum(map(len, traces.values())))
        completed = True
    except RunInterrupted as e:
        if hasattr(e, "add_note"):
            done = sum(map(len, traces.values()))
            e.add_note(
                f"sweep over {field}: {done} of {len(specs) * len(frameworks)} runs done"
                + (" (in the run cache: the same sweep resumes from there)" if cache else "")
            )
        raise
    finally:
        bar.close(completed)
    return Sweep(base, field, values, tuple(specs), traces)
