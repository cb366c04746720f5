"""plots: every function draws healthy and diverged traces, quietly and correctly."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import same_color  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from explodebook import plots  # noqa: E402
from explodebook.backends.torch import run  # noqa: E402
from explodebook.spec import RunSpec  # noqa: E402
from explodebook.trace import FRAMEWORKS, Trace  # noqa: E402

from _traces import LAYERS, hand_trace  # noqa: E402


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("plots must never call show()")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(Figure, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def healthy() -> Trace:
    return run(RunSpec(task="regression-scaled", steps=60))


@pytest.fixture(scope="module")
def classic() -> Trace:
    """Stops at step 8 with an infinite loss."""
    return run(RunSpec())


@pytest.fixture(scope="module")
def no_stop() -> Trace:
    """Goes on with NaN after step 8."""
    return run(RunSpec(stop_on_nonfinite=False, steps=20))


def odd_traces() -> dict[str, Trace]:
    return {
        "empty": hand_trace(np.zeros(0)),
        "one_step": hand_trace([2.0]),
        "nan_from_step_0": hand_trace(
            [np.nan] * 3, np.full((3, 2), np.nan), np.full((3, 2), np.nan)
        ),
        "zeros": hand_trace(np.zeros(5), np.zeros((5, 2)), np.zeros((5, 2))),
        "inf_at_step_1": hand_trace([2.0, np.inf], [[3.0, 3.0], [np.inf, np.nan]]),
    }


DRAW: dict[str, Callable[[Trace], object]] = {
    "loss_curve": lambda t: plots.loss_curve(t),
    "loss_curve_linear": lambda t: plots.loss_curve(t, log=False),
    "grad_norm_curve": lambda t: plots.grad_norm_curve(t),
    "grad_heatmap": lambda t: plots.grad_heatmap(t),
    "grad_heatmap_weights": lambda t: plots.grad_heatmap(t, which="weight_norms"),
    "layer_norms": lambda t: plots.layer_norms(t),
    "layer_norms_max": lambda t: plots.layer_norms(t, which="grad_max_abs"),
    "weight_norms": lambda t: plots.weight_norms(t),
    "weight_norms_relative": lambda t: plots.weight_norms(t, relative=True),
    "compare_loss": lambda t: plots.compare([t, t]),
    "compare_grads": lambda t: plots.compare([t, t], quantity="grad_norms"),
}


def draw_quietly(draw: Callable[[], object]) -> object:
    """Draw and render with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = draw()
        first = result if isinstance(result, Axes) else np.ravel(result)[0]
        first.figure.canvas.draw()
    return result


@pytest.mark.parametrize("name", list(DRAW))
@pytest.mark.parametrize("which", ["healthy", "classic", "no_stop"])
def test_draws_real_runs(name: str, which: str, request: pytest.FixtureRequest) -> None:
    trace = request.getfixturevalue(which)
    result = draw_quietly(lambda: DRAW[name](trace))
    axes = [result] if isinstance(result, Axes) else list(np.ravel(result))
    assert all(isinstance(ax, Axes) for ax in axes)


@pytest.mark.parametrize("name", list(DRAW))
@pytest.mark.parametrize("odd", list(odd_traces()))
def test_draws_odd_traces(name: str, odd: str) -> None:
    draw_quietly(lambda: DRAW[name](odd_traces()[odd]))


@pytest.mark.parametrize("name", list(DRAW))
def test_draws_with_the_book_style(name: str, classic: Trace) -> None:
    # The style turns on constrained layout, which has warnings of its own.
    with matplotlib.rc_context():
        plots.use_style()
        draw_quietly(lambda: DRAW[name](classic))


def test_draws_on_the_given_axes(healthy: Trace) -> None:
    fig, (a, b, c) = plt.subplots(1, 3)
    assert plots.loss_curve(healthy, ax=a) is a
    assert plots.layer_norms(healthy, ax=b) is b
    assert plots.grad_heatmap(healthy, ax=c) is c


def divergence_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == "divergence"]


def test_loss_curve_marks_divergence(classic: Trace) -> None:
    step = classic.first_nonfinite_step
    assert step is not None and not np.isfinite(classic.loss[step])
    ax = plots.loss_curve(classic)
    texts = divergence_texts(ax)
    assert texts == [f"loss inf at step {step}"]
    dashed = [
        line for line in ax.get_lines()
        if line.get_linestyle() == "--" and list(line.get_xdata()) == [step, step]
    ]
    assert dashed, "no dashed vertical line at the divergence step"


def test_loss_curve_marks_nothing_on_a_healthy_run(healthy: Trace) -> None:
    assert divergence_texts(plots.loss_curve(healthy)) == []


def test_loss_curve_shows_every_recorded_step(no_stop: Trace) -> None:
    # The NaN steps after divergence are part of the x range, not cut off.
    ax = plots.loss_curve(no_stop)
    assert ax.get_xlim()[1] >= no_stop.steps_run - 1
    assert "never finite again" in divergence_texts(ax)[0]


def test_per_layer_plots_mark_divergence(classic: Trace) -> None:
    for ax in (plots.layer_norms(classic), plots.grad_heatmap(classic)):
        assert any(f"step {classic.first_nonfinite_step}" in t for t in divergence_texts(ax))


def test_compare_shares_y_limits(healthy: Trace, classic: Trace) -> None:
    axes = plots.compare([healthy, classic], labels=["scaled", "raw"], title="raw explodes")
    assert len(axes) == 2
    assert axes[0].get_ylim() == axes[1].get_ylim()
    low, high = axes[0].get_ylim()
    finite = np.concatenate([healthy.loss, classic.loss[np.isfinite(classic.loss)]])
    assert low <= finite.min() and high >= finite.max()
    assert [ax.get_title() for ax in axes] == ["scaled", "raw"]
    assert axes[0].figure.get_suptitle() == "raw explodes"


def test_compare_shares_limits_on_given_axes(healthy: Trace, classic: Trace) -> None:
    fig, given = plt.subplots(1, 2)  # not created with sharey
    axes = plots.compare([healthy, classic], quantity="grad_norms", axes=given)
    assert axes[0].get_ylim() == axes[1].get_ylim()


def test_framework_colours_come_from_the_palette(healthy: Trace) -> None:
    assert set(plots.FRAMEWORK_COLORS) == set(FRAMEWORKS)
    keras = dataclasses.replace(healthy, framework="keras")
    ax = plots.loss_curve([healthy, keras])
    colours = [line.get_color() for line in ax.get_lines()[:2]]
    assert same_color(colours[0], plots.FRAMEWORK_COLORS["torch"])
    assert same_color(colours[1], plots.FRAMEWORK_COLORS["keras"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PyTorch", "Keras"]


def test_second_trace_of_a_framework_gets_another_shade(healthy: Trace) -> None:
    ax = plots.loss_curve([healthy, healthy])
    first, second = (line.get_color() for line in ax.get_lines()[:2])
    assert same_color(first, plots.FRAMEWORK_COLORS["torch"])
    assert not same_color(first, second)


def test_label_mapping(healthy: Trace) -> None:
    ax = plots.loss_curve(healthy, labels={"torch": "PyTorch, lr 0.01"})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PyTorch, lr 0.01"]


def test_heatmap_bins_long_runs_and_keeps_nan_visible() -> None:
    n = 2000
    grads = np.ones((n, 2))
    grads[1500, 1] = np.nan
    grads[700, 0] = 1e6  # a spike must survive binning
    ax = plots.grad_heatmap(hand_trace(np.ones(n), grads), max_columns=400)
    image = ax.images[0].get_array()
    assert image.shape == (2, 400)  # layers x columns, 5 steps per column
    assert image.mask[1, 1500 // 5] and not image.mask[0, 1500 // 5]
    assert image[0, 700 // 5] == 1e6
    assert ax.images[0].origin == "lower" and "input at bottom" in ax.get_ylabel()


def test_gradient_plots_draw_the_reference_line(healthy: Trace) -> None:
    def has_line_at_one(ax: Axes) -> bool:
        return any(list(line.get_ydata()) == [1, 1] for line in ax.get_lines())

    assert has_line_at_one(plots.layer_norms(healthy))
    assert not has_line_at_one(plots.layer_norms(healthy, which="weight_norms"))
    assert not has_line_at_one(plots.layer_norms(healthy, reference=False))


def test_axes_are_labelled_with_units(healthy: Trace) -> None:
    ax = plots.layer_norms(healthy)
    assert ax.get_xlabel() == "step"
    assert ax.get_ylabel() == "‖∇W‖₂ (log)"
    assert ax.get_yscale() == "log"
    assert plots.loss_curve(healthy, title="It learns").get_title() == "It learns"


def test_depth_profile_marks_overflow_and_underflow() -> None:
    k = np.arange(0, 400, 10)
    with np.errstate(over="ignore", under="ignore"):
        values = {
            "x1.5": np.float32(1.5) ** k.astype(np.float32),
            "x0.5": np.float32(0.5) ** k.astype(np.float32),
        }
    first_inf = int(k[np.argmax(np.isinf(values["x1.5"]))])
    ax = draw_quietly(lambda: plots.depth_profile(values, x=k))
    texts = divergence_texts(ax)
    assert f"x1.5: overflow to inf at {first_inf}" in texts
    assert any(t.startswith("x0.5: underflow to 0") for t in texts)
    draw_quietly(lambda: plots.depth_profile(np.zeros(5)))
    draw_quietly(lambda: plots.depth_profile(np.ones((2, 6))))


def test_invalid_quantity_raises(healthy: Trace) -> None:
    with pytest.raises(ValueError, match="which='loss'.*choose one of"):
        plots.layer_norms(healthy, which="loss")
    with pytest.raises(ValueError, match="quantity='gradients'"):
        plots.compare([healthy], quantity="gradients")


def test_use_style_loads_the_packaged_style() -> None:
    with matplotlib.rc_context():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plots.use_style()
        assert matplotlib.rcParams["axes.spines.top"] is False
        cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
        # generic series never borrow a framework's colour
        assert not any(
            same_color(c, f) for c in cycle for f in plots.FRAMEWORK_COLORS.values()
        )


def test_both_frameworks_on_one_axes_stay_visible_when_they_agree():
    # Chapter 7's widget drew Keras exactly over PyTorch: only one line showed.
    torch_trace = hand_trace(np.linspace(3.0, 1.0, 50))
    keras_trace = hand_trace(np.linspace(3.0, 1.0, 50), framework="keras")
    ax = plots.loss_curve([torch_trace, keras_trace])
    assert [line.get_linestyle() for line in ax.get_lines()[:2]] == ["-", "--"]
    legend = {t.get_text(): h.get_linestyle() for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    assert legend == {"PyTorch": "-", "Keras": "--"}
    # One framework alone keeps solid lines.
    ax = plots.loss_curve([keras_trace])
    assert ax.get_lines()[0].get_linestyle() == "-"
    plt.close("all")


# -- the compact divergence mark (chapter 10's draw_pair) and the live curves ------


def test_loss_curve_compact_mark_is_an_x_where_the_line_ends(classic: Trace) -> None:
    ax = plots.loss_curve([classic, classic], divergence="compact")
    assert divergence_texts(ax) == []  # no dashed line, no text
    step = classic.first_nonfinite_step
    marks = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(marks) == 2
    # The last finite loss: the line's end, where the "x" sits.
    assert [float(np.ravel(m.get_xdata())[0]) for m in marks] == [step - 1, step - 1]
    assert float(np.ravel(marks[0].get_ydata())[0]) == classic.loss[step - 1]


def test_loss_curve_refuses_an_unknown_divergence_mark(classic: Trace) -> None:
    with pytest.raises(ValueError, match="'annotated' or 'compact', got 'dots'"):
        plots.loss_curve(classic, divergence="dots")


def test_draw_pair_draws_through_loss_curve_with_the_compact_mark(classic: Trace) -> None:
    from explodebook import plots as plots_module
    from explodebook.remedies import draw_pair

    keras_like = dataclasses.replace(classic, framework="keras")
    calls = []
    real = plots_module.loss_curve

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots_module, "loss_curve", spy)
        fig = draw_pair(classic, keras_like, labels=["run"], reference=1.0, title="t")
    assert [c["divergence"] for c in calls] == ["compact"]
    ax = fig.axes[0]
    assert divergence_texts(ax) == []
    assert len([line for line in ax.get_lines() if line.get_marker() == "x"]) == 2
    # One legend entry per run, plus the two frameworks' line styles.
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["run", "PyTorch", "Keras"]


def test_draw_pair_without_labels_names_each_framework_once(classic: Trace) -> None:
    # chapter 10b's scrubber frames: one run in both frameworks, no labels
    from explodebook.remedies import draw_pair

    keras_like = dataclasses.replace(classic, framework="keras")
    fig = draw_pair(classic, keras_like, title="t")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["PyTorch", "Keras"]
    plt.close(fig)


def test_live_curves_grow_in_place(healthy: Trace) -> None:
    from explodebook.plots.live import LiveCurves
    from explodebook.render import canvas_png

    live = LiveCurves(["torch", "keras"])
    half = Trace.from_record(_record_of(healthy)[:30], healthy.spec, "torch")
    fig = live.update([half], healthy.spec.steps, "30 of 60")
    torch_loss, keras_loss = (lines[0] for lines in live._lines.values())
    assert len(torch_loss.get_xdata()) == 30 and len(keras_loss.get_xdata()) == 0
    assert fig.axes[0].get_xlim() == (0.0, 60.0)  # the whole run from the start
    first = canvas_png(fig)
    assert first.startswith(b"\x89PNG")
    assert live.update([healthy], 60, "done") is fig  # the same figure, updated
    assert len(torch_loss.get_xdata()) == 60
    assert canvas_png(fig) != first
    assert not plt.get_fignums()  # not a pyplot figure: nothing to close
    with pytest.raises(ValueError, match="unknown frameworks"):
        LiveCurves(["jax"])


def test_a_live_frame_is_drawn_once_with_fixed_margins_under_the_book_style(healthy: Trace) -> None:
    # The book style turns constrained layout on and saves tight bounding
    # boxes: a live frame must still be one Agg draw (no layout engine, no
    # second draw to measure a tight box), or every frame costs about twice.
    from explodebook.plots.live import LiveCurves
    from explodebook.render import canvas_png

    with matplotlib.rc_context():
        plots.use_style()
        live = LiveCurves(["torch", "keras"])
        assert live.figure.get_layout_engine() is None
        draws: list[object] = []
        live.figure.canvas.mpl_connect("draw_event", draws.append)
        png = canvas_png(live.update([healthy], healthy.spec.steps, "done"))
    assert len(draws) == 1
    width, height = (int.from_bytes(png[16 + 4 * i : 20 + 4 * i], "big") for i in range(2))
    assert (width, height) == (round(9 * 72), round(3.2 * 72))  # the whole figure, as laid out


def _record_of(trace: Trace) -> np.ndarray:
    """The record matrix a backend builds ``trace`` from (`Trace.from_record`)."""
    return np.column_stack([trace.loss, trace.grad_norm_total, trace.grad_norms,
                            trace.clipped_grad_norms, trace.grad_max_abs, trace.weight_norms])
