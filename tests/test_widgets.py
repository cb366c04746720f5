"""The ipywidgets explorer, driven from code as a frontend would drive it."""

from __future__ import annotations

import numpy as np
import pytest

from explodebook import cache
from explodebook.spec import RunSpec
from explodebook.widgets import explore

BASE = RunSpec(task="regression-scaled", steps=30)


def test_initial_setting_is_run_and_drawn() -> None:
    explorer = explore(BASE, {"learning_rate": [0.001, 0.01]})
    assert explorer.error is None
    assert [t.spec for t in explorer.traces] == [BASE]
    assert bytes(explorer.image.value).startswith(b"\x89PNG")
    assert "final loss" in explorer.status.value


def test_moving_a_control_reruns_and_redraws() -> None:
    explorer = explore(BASE, {"init_scale": [0.5, 1.0, 2.0]})
    before = bytes(explorer.image.value)
    explorer.controls["init_scale"].value = 2.0
    assert explorer.traces[0].spec == BASE.replace(init_scale=2.0)
    assert bytes(explorer.image.value) != before


def test_returning_to_a_setting_hits_the_cache() -> None:
    explorer = explore(BASE, {"depth": [1, 2]})
    explorer.controls["depth"].value = 2
    misses = cache.info().misses
    explorer.controls["depth"].value = 1
    explorer.controls["depth"].value = 2
    assert cache.info().misses == misses


def test_invalid_setting_shows_a_message_not_a_traceback() -> None:
    explorer = explore(BASE, {"learning_rate": [0.01, -1.0]})
    image = bytes(explorer.image.value)
    explorer.controls["learning_rate"].value = -1.0
    assert "RunSpec.learning_rate=-1.0 is not allowed" in explorer.status.value
    assert "Traceback" not in explorer.status.value
    assert bytes(explorer.image.value) == image  # the last good figure stays
    explorer.controls["learning_rate"].value = 0.01
    assert explorer.error is None


def test_both_frameworks() -> None:
    pytest.importorskip("tensorflow")
    explorer = explore(BASE, {"learning_rate": [0.01]}, frameworks=("torch", "keras"))
    assert [t.framework for t in explorer.traces] == ["torch", "keras"]
    assert "Keras" in explorer.status.value


def test_default_controls_come_from_default_options() -> None:
    explorer = explore(BASE)
    assert set(explorer.controls) == {"learning_rate", "init_scale"}
    # a numeric field gets a slider, a choice a drop-down
    explorer = explore(BASE, ["depth", "activation"])
    assert type(explorer.controls["depth"]).__name__ == "SelectionSlider"
    assert type(explorer.controls["activation"]).__name__ == "Dropdown"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"controls": ["colour"]}, "not a RunSpec field"),
        ({"controls": {"depth": []}}, "no values"),
        ({"frameworks": "jax"}, "framework='jax'"),
        ({"controls": ["cell", "task", "model", "init"]}, None),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict, message: str | None) -> None:
    if message is None:
        explore(BASE, **kwargs)  # every choice field has default options
        return
    with pytest.raises(ValueError, match=message):
        explore(BASE, **kwargs)


def test_a_field_that_is_off_by_default_can_be_explored() -> None:
    explorer = explore(BASE, ["clipnorm"])
    control = explorer.controls["clipnorm"]
    assert control.label == "off" and explorer.spec.clipnorm is None
    control.label = "1"
    assert explorer.traces[0].spec.clipnorm == 1.0
    control.index = 0  # as a frontend moves it back
    assert explorer.traces[0].spec.clipnorm is None and explorer.error is None


def test_fast_key_presses_run_the_last_setting_and_drop_the_stale_one(monkeypatch) -> None:
    # A reader pressing an arrow key five times while the first run trains:
    # in a kernel the presses arrive as messages while the worker thread
    # runs; only the run under way and the newest setting may run, and only
    # the newest is drawn.
    import threading

    from explodebook import widgets

    gate = threading.Event()
    ran: list[float] = []
    real = widgets.cached_run

    def slow_first_run(spec, framework, **options):
        ran.append(spec.learning_rate)
        if len(ran) == 2:  # the first run after the initial setting
            assert gate.wait(30)
        return real(spec, framework, **options)

    monkeypatch.setattr(widgets, "cached_run", slow_first_run)
    rates = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
    explorer = explore(BASE.replace(learning_rate=0.001), {"learning_rate": rates}, background=True)
    assert ran == [0.001] and explorer.drawn == 1  # the initial setting, drawn at once
    slider = explorer.controls["learning_rate"]
    for rate in rates[1:]:
        slider.value = rate
        assert "running" in explorer.status.value  # said at once, from the message handler
    gate.set()
    assert explorer.wait(60)
    assert ran == [0.001, 0.002, 0.006]  # not the three in between
    assert explorer.dropped == 1 and explorer.drawn == 2
    assert explorer.traces[0].spec.learning_rate == 0.006
    assert "final loss" in explorer.status.value


def test_outside_a_kernel_a_change_runs_at_once() -> None:
    explorer = explore(BASE.replace(learning_rate=0.001), {"learning_rate": [0.001, 0.01]})
    assert explorer.background is False
    explorer.controls["learning_rate"].value = 0.01
    assert explorer.traces[0].spec.learning_rate == 0.01 and explorer.drawn == 2


def test_in_a_kernel_changes_run_in_the_background() -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("from explodebook.notebook import in_kernel\nprint(in_kernel())"))
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    assert notebook.cells[0].outputs[0]["text"].strip() == "True"


def _gated_run(real, gate: "threading.Event", log: list):
    """A cached_run that shows the widget's observer a first chunk, then waits for ``gate``."""
    from explodebook.backends import common

    def run(spec, framework, **options):
        trace = real(spec, framework, **options)
        observer = getattr(common._local, "observer", None)
        if observer is not None and spec.learning_rate == 0.01:
            half = np.column_stack([trace.loss, trace.grad_norm_total, trace.grad_norms,
                                    trace.clipped_grad_norms, trace.grad_max_abs,
                                    trace.weight_norms])[: spec.steps // 2]  # fmt: skip
            observer(spec, framework, half)
            log.append("chunk shown to the widget")
            assert gate.wait(30)
            log.append("run ends")
        return trace

    return run


def test_the_first_result_is_shown_before_the_run_ends(monkeypatch) -> None:
    import threading

    from explodebook import widgets

    gate, log = threading.Event(), []
    monkeypatch.setattr(widgets, "cached_run", _gated_run(widgets.cached_run, gate, log))
    explorer = explore(BASE.replace(learning_rate=0.001), {"learning_rate": [0.001, 0.01]},
                       frameworks=("torch",))  # fmt: skip
    images = []

    def shown(change):
        images.append((len(log), bytes(change["new"])))
        gate.set()  # the run may end once an image of it is shown

    explorer.image.observe(shown, names="value")
    explorer.controls["learning_rate"].value = 0.01  # outside a kernel: returns when drawn
    assert log == ["chunk shown to the widget", "run ends"]
    assert explorer.previews >= 1 and len(images) >= 2
    assert images[0][0] == 1  # the first image came while the run was still under way
    assert images[-1][1] == bytes(explorer.image.value) and explorer.drawn == 2
    assert explorer.traces[0].spec.learning_rate == 0.01


def test_without_progressive_frames_only_the_final_figure_is_shown() -> None:
    explorer = explore(BASE.replace(learning_rate=0.001), {"learning_rate": [0.001, 0.01]},
                       progressive=False, concurrent=False)  # fmt: skip
    images = []
    explorer.image.observe(lambda change: images.append(change["new"]), names="value")
    explorer.controls["learning_rate"].value = 0.01
    assert explorer.previews == 0 and len(images) == 1


def test_a_run_the_reader_has_left_stops_early(monkeypatch) -> None:
    # In a kernel: a long run is under way when the slider moves again; the
    # run stops at its next chunk of steps (Abandoned) and is not drawn.
    import threading

    from explodebook import widgets
    from explodebook.backends import common
    from explodebook.liveruns import Abandoned

    started, outcomes = threading.Event(), []
    real = widgets.cached_run

    def long_run(spec, framework, **options):
        if spec.learning_rate != 0.002:
            return real(spec, framework, **options)
        observer = common._local.observer
        started.set()
        try:
            for _ in range(3000):  # chunk after chunk, as a long run reports
                observer(spec, framework, np.zeros((1, 2 + 4 * spec.depth)))
                threading.Event().wait(0.01)
        except Abandoned:
            outcomes.append("abandoned")
            raise
        outcomes.append("ran to the end")
        return real(spec, framework, **options)

    monkeypatch.setattr(widgets, "cached_run", long_run)
    explorer = explore(BASE.replace(learning_rate=0.001),
                       {"learning_rate": [0.001, 0.002, 0.003]}, background=True)  # fmt: skip
    slider = explorer.controls["learning_rate"]
    slider.value = 0.002
    assert started.wait(30)
    slider.value = 0.003
    assert explorer.wait(60)
    assert outcomes == ["abandoned"]
    assert explorer.dropped == 1 and explorer.traces[0].spec.learning_rate == 0.003


def test_with_live_frames_the_second_framework_starts_after_the_first_frame(monkeypatch) -> None:
    # LiveRuns' head start: Keras building a model beside the PyTorch run
    # used to starve it and the first frame's drawing of Python's lock.
    import threading

    from explodebook import liveruns, widgets

    pytest.importorskip("tensorflow")
    monkeypatch.setattr(liveruns, "HEAD_START_SECONDS", 60.0)  # only the frame lets Keras go
    gate, log = threading.Event(), []
    real = widgets.cached_run
    gated = _gated_run(real, gate, log)  # torch: shows a chunk, then waits for an image

    def run(spec, framework, **options):
        if framework == "torch":
            return gated(spec, framework, **options)
        if spec.learning_rate == 0.01:
            log.append("keras starts")
        return real(spec, framework, **options)

    monkeypatch.setattr(widgets, "cached_run", run)
    explorer = explore(BASE.replace(learning_rate=0.001), {"learning_rate": [0.001, 0.01]},
                       frameworks=("torch", "keras"))  # fmt: skip

    def shown(change):
        log.append("image")
        gate.set()

    explorer.image.observe(shown, names="value")
    explorer.controls["learning_rate"].value = 0.01
    assert log[:2] == ["chunk shown to the widget", "image"]
    assert "keras starts" in log[2:]  # only after the first frame
    assert [t.framework for t in explorer.traces] == ["torch", "keras"]
