"""`explore`: ipywidgets controls over `RunSpec` fields that re-run and re-plot.

Needs a live kernel (JupyterLab, Voilà). For the static HTML book, use the
kernel-free `explodebook.scrubber.scrubber` instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from explodebook.cache import cached_run
from explodebook.checks import check_frameworks, describe, expect, expect_spec, plain
from explodebook.metrics import status
from explodebook.liveruns import LiveRuns
from explodebook.notebook import in_kernel
from explodebook.render import figure_png
from explodebook.spec import CHOICES, RunSpec
from explodebook.trace import Trace

# Live frames from this long after a change (quicker runs go straight to the figure), then at
# most every PREVIEW_SECONDS, 4x their drawing time apart (drawing holds the GIL torch needs).
# 0.05 s, not 0.1: a frame takes 0.15-0.25 s to draw beside two runs, and chapter 9's first
# frames came at 0.30-0.32 s (benchmarks/chapter_results.md, before and after).
FIRST_FRAME_SECONDS = 0.05
PREVIEW_SECONDS = 0.5

__all__ = ["explore", "Explorer", "DEFAULT_OPTIONS", "Draw"]

#: Draws the traces of one setting (one per framework) into a new figure.
Draw = Callable[[Sequence[Trace]], Any]

#: Values offered for a field when `explore` is not given any. Discrete
#: grids, so that moving back to a setting hits the run cache.
DEFAULT_OPTIONS: dict[str, Sequence[Any]] = {
    "learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
    "init_scale": (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0),
    "momentum": (0.0, 0.5, 0.9, 0.95, 0.99),
    "depth": (1, 2, 3, 4, 6, 8, 10, 15, 20),
    "width": (8, 16, 25, 32, 64, 128),
    "seq_len": (5, 10, 20, 30, 50, 75, 100),
    "truncation": (None, 1, 2, 5, 10, 20),
    "batch_size": (1, 4, 8, 16, 32, 64, 128, 250),
    "steps": (100, 200, 400, 800, 1600),
    "clipnorm": (None, 0.1, 0.5, 1.0, 5.0, 10.0),
    "clipvalue": (None, 0.1, 0.5, 1.0, 5.0, 10.0),
    "global_clipnorm": (None, 0.1, 0.5, 1.0, 5.0, 10.0),
    "l1": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1),
    "l2": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1),
    "seed": (1, 2, 3, 4, 5),
    "stop_on_nonfinite": (True, False),
    **{name: choices for name, choices in CHOICES.items()},
}

# The option value that stands for None (a clipping mode switched off).
_OFF = "off"

# Figures rendered as PNG, keyed by the specs and frameworks they show, so
# that returning to a setting redraws nothing.
_PNG_CACHE: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_PNG_CACHE_SIZE = 128


def _label(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_draw(traces: Sequence[Trace]) -> Any:
    """Loss (left) and total gradient norm (right) of each trace, log scale."""
    import matplotlib.pyplot as plt

    from explodebook import plots

    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    plots.loss_curve(list(traces), ax=ax_loss)
    plots.grad_norm_curve(list(traces), ax=ax_grad)
    return fig


class Explorer:
    """The state behind `explore`: controls, the current traces and the figure.

    Create it with `explore`. Setting a control's ``value`` (by hand or from
    code) re-runs the experiment for every framework and redraws. Errors
    (an invalid combination of settings, a failing run) are shown as a
    message in the widget, never as a traceback.

    In a live kernel the runs happen on a worker thread (``background``):
    a control's change only records the new setting and shows
    "running...", so the kernel keeps reading the reader's key presses
    while a run trains. Five fast presses on a slider then cost at most two
    runs (the one under way and the last setting), not five queued ones; a
    result that a newer setting has made stale is dropped, never drawn.
    Outside a kernel (scripts, tests) a change runs at once, in the caller's
    thread.

    A setting's runs train on helper threads (`explodebook.liveruns.LiveRuns`;
    ``concurrent``: one per framework, the first alone up to the first frame)
    while its curves grow (``progressive``) until ``draw``'s figure replaces
    them. A run whose setting the reader has left stops at its next chunk.

    Attributes:
        base: the spec the controls modify.
        controls: one widget per explored field, by field name.
        traces: the traces of the current setting, one per framework.
        error: the message shown for the current setting, or ``None``.
        widget: the ipywidgets box to display.
    """

    def __init__(
        self,
        base: RunSpec,
        options: Mapping[str, Sequence[Any]],
        frameworks: Sequence[str],
        draw: Draw,
        background: bool | None = None,
        progressive: bool = True,
        concurrent: bool = True,
    ) -> None:
        import ipywidgets as w

        self.base = base
        self.frameworks = tuple(frameworks)
        self.draw = draw
        self.traces: list[Trace] = []
        self.error: str | None = None
        self.background = in_kernel() if background is None else bool(background)
        self.progressive = bool(progressive)
        self.concurrent = bool(concurrent)
        #: frames of live curves shown (``progressive``)
        self.previews = 0
        self._live: Any = None  # the LiveCurves, made at the first frame
        #: settings drawn, and settings whose run finished after a newer
        #: setting was asked for (their result was dropped)
        self.drawn = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._wanted = 0  # generation of the newest setting asked for
        self._worker: threading.Thread | None = None
        self.controls: dict[str, Any] = {}
        for name, values in options.items():
            self.controls[name] = self._control(w, name, values, getattr(base, name))
            self.controls[name].observe(self._on_change, names="value")
        self.status = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.widget = w.VBox(
            [w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap")), self.status, self.image]
        )
        self.update()

    @staticmethod
    def _control(w: Any, name: str, values: Sequence[Any], current: Any) -> Any:
        values = list(values)
        if current not in values:
            values.append(current)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                values.sort()
        style = {"description_width": "initial"}
        # ipywidgets refuses value=None in a selection, so "off" stands for it.
        labelled = [(_label(v), _OFF if v is None else v) for v in values]
        numeric = all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
        )
        index = values.index(current)
        if numeric and len(values) > 2:
            return w.SelectionSlider(
                options=labelled,
                index=index,
                description=name,
                continuous_update=False,
                style=style,
                layout=w.Layout(width="320px"),
            )
        return w.Dropdown(options=labelled, index=index, description=name, style=style)

    @property
    def spec(self) -> RunSpec:
        """The spec of the current setting (raises `SpecError` if invalid)."""
        return self.base.replace(
            **{name: None if c.value == _OFF else c.value for name, c in self.controls.items()}
        )

    def _on_change(self, change: Mapping[str, Any]) -> None:
        if not self.background:
            self.update()
            return
        with self._lock:
            self._wanted += 1
            self._idle.clear()
            self._wake.set()
        self.status.value = "<i>running&hellip;</i>"
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="explore", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The worker thread: run the newest setting, again while newer ones arrive."""
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                generation = self._wanted
            self.update(stale=lambda: generation != self._wanted)
            with self._lock:
                if generation == self._wanted:
                    self._idle.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the newest setting is shown (background mode); ``False`` on timeout."""
        return self._idle.wait(timeout)

    def update(self, stale: Callable[[], bool] = lambda: False) -> None:
        """Re-run the current setting and redraw; show any error as a message.

        Args:
            stale: says whether a newer setting was asked for meanwhile; the
                result of a stale run is dropped instead of drawn.
        """
        self.status.value = "<i>running&hellip;</i>"
        try:
            spec = self.spec
            key = (spec, self.frameworks, self.draw)
            png = _PNG_CACHE.get(key)
            traces = self._run(spec, stale)
            if traces is None:  # abandoned for a newer setting
                self.dropped += 1
                return
            self.traces = traces
            if png is None:
                # Fast compression: the PNG only travels to the browser next to the kernel.
                png = figure_png(self.draw(self.traces), dpi=90, fast=True)
                _PNG_CACHE[key] = png
                while len(_PNG_CACHE) > _PNG_CACHE_SIZE:
                    _PNG_CACHE.popitem(last=False)
            else:
                _PNG_CACHE.move_to_end(key)
        except Exception as error:  # shown to the reader, never a traceback
            if stale():
                self.dropped += 1
                return
            self.error = f"{type(error).__name__}: {error}"
            self.status.value = (
                '<span style="color:#b00020"><b>Cannot run this setting.</b> '
                f"{_escape(self.error)}</span>"
            )
            return
        if stale():
            self.dropped += 1
            return
        self.error = None
        self.image.value = png
        self.status.value = _summary(self.traces)
        self.drawn += 1

    def _run(self, spec: RunSpec, stale: Callable[[], bool]) -> list[Trace] | None:
        """``spec``'s traces (``None`` if it went stale), drawing live curves meanwhile."""
        # cached_run looked up at call time, through this module: tests replace it.
        runs = LiveRuns(spec, self.frameworks, lambda s, fw: cached_run(s, fw, progress=False),
                        self.concurrent, head_start=self.progressive)  # fmt: skip
        next_frame = time.perf_counter() + FIRST_FRAME_SECONDS
        while not runs.done.wait(0.02):
            if stale():
                runs.abandon()
                return None
            if self.progressive and runs.fresh and time.perf_counter() >= next_frame:
                start = time.perf_counter()
                self._show_live(spec, runs)
                runs.release()  # the runs held back for the first frame (head_start) go
                cost = time.perf_counter() - start
                next_frame = time.perf_counter() + max(PREVIEW_SECONDS, 4 * cost)
        return None if stale() else runs.result()

    def _show_live(self, spec: RunSpec, runs: LiveRuns) -> None:
        from explodebook.plots.live import LiveCurves
        from explodebook.render import canvas_png

        self._live = self._live or LiveCurves(self.frameworks)
        partial = runs.partial()
        title = f"training: {runs.steps_done()} of {spec.steps} steps"
        self.image.value = canvas_png(self._live.update(partial, spec.steps, title))
        self.status.value = f"<i>{title}&hellip;</i>"
        self.previews += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _summary(traces: Sequence[Trace]) -> str:
    parts = []
    for trace in traces:
        parts.append(f"<b>{trace.label}</b>: {status(trace)} ({trace.wall_time:.2f} s)")
    return " &middot; ".join(parts)


def explore(
    base: RunSpec | None = None,
    controls: str | Sequence[str] | Mapping[str, Sequence[Any]] = ("learning_rate", "init_scale"),
    frameworks: str | Sequence[str] = "torch",
    draw: Draw | None = None,
    background: bool | None = None,
    progressive: bool = True,
    concurrent: bool = True,
) -> Explorer:
    """Interactive controls over some `RunSpec` fields, re-running on change.

    Args:
        base: the spec to start from (default ``RunSpec()``).
        controls: the fields to control, either names (their values come
            from `DEFAULT_OPTIONS`; one name is fine too) or a mapping from
            name to the values to offer (a list, or a numpy array such as
            ``np.arange(1, 5)``). Numeric fields get a slider, the others a
            drop-down.
        frameworks: ``"torch"``, ``"keras"`` or both; each setting is run in
            each.
        draw: draws one setting's traces (one per framework) and returns
            the figure; the default plots loss and gradient norm.
        background: run on a worker thread, dropping stale settings
            (`Explorer`); default: in a Jupyter kernel, yes.
        progressive: show the loss and gradient-norm curves growing while
            a setting trains, before ``draw``'s figure (`Explorer`).
        concurrent: train the frameworks of a setting at the same time,
            one thread each (compared in benchmarks/widget_levers.py).

    Returns:
        an `Explorer`; display it (as the last expression of a cell) to
        show the controls and the figure.

    Raises:
        TypeError: ``base`` is not a `RunSpec`, ``controls`` is neither
            names nor a mapping to lists of values, or ``draw`` is not
            callable.
        ValueError: an unknown field or framework, or a field without
            default values.
    """
    base = RunSpec() if base is None else expect_spec(base, "explore()")
    known = {f.name for f in fields(RunSpec)}
    if isinstance(controls, str):
        controls = (controls,)
    if isinstance(controls, Mapping):
        options = {}
        for name, values in controls.items():
            # A string is iterable too, but its characters are not values.
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise TypeError(
                    f"explore(controls=...) expects a list of values for {name!r}, "
                    f"got {describe(values)}"
                )
            # Python values, so that numbers from numpy get a slider and
            # read as numbers in its labels.
            options[name] = [plain(value) for value in values]
    else:
        expect(
            controls,
            Iterable,
            "explore(controls=...)",
            "field names or a mapping from field name to the values to offer",
        )
        options = {}
        for name in controls:
            if name not in DEFAULT_OPTIONS and name in known:
                raise ValueError(
                    f"field {name!r} has no default values: pass a mapping "
                    f"{{{name!r}: [values...]}}"
                )
            options[name] = list(DEFAULT_OPTIONS.get(name, ()))
    for name, values in options.items():
        if name not in known:
            raise ValueError(f"{name!r} is not a RunSpec field; choose from {sorted(known)}")
        if not values:
            raise ValueError(f"no values to offer for {name!r}")
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: {value!r} is not a finite number")
    names = check_frameworks(frameworks, "explore(frameworks=...)")
    if draw is not None and not callable(draw):
        raise TypeError(
            "explore(draw=...) expects a function that takes the traces and returns "
            f"a figure, or None, got {describe(draw)}"
        )
    return Explorer(
        base, options, names, draw or default_draw, background, bool(progressive), bool(concurrent)
    )
