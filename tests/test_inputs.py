"""Inputs from wherever a reader runs the code: numpy numbers, and wrong types.

Numpy scalars (``np.arange``, ``np.linspace``, ``np.float32``) are accepted
wherever Python numbers are, and stored as Python numbers. A wrong kind of
argument fails at the public call that received it, with a message naming
the function, what it expects and what it got.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import explodebook  # noqa: E402
from explodebook import cache, checks, plots, theory  # noqa: E402
from explodebook.diagnose import Thresholds, diagnose  # noqa: E402
from explodebook.outcome import (  # noqa: E402
    describe_change,
    mean_predictor_loss,
    outcome,
    outcome_table,
)
from explodebook.spec import RunSpec, SpecError  # noqa: E402
from explodebook.sweep import sweep  # noqa: E402
from explodebook.timesteps import input_gradient_norms  # noqa: E402
from explodebook.trace import Trace  # noqa: E402

from _traces import LAYERS, hand_trace  # noqa: E402

TINY = RunSpec(task="regression-scaled", steps=5, width=8)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def a_trace() -> Trace:
    return hand_trace(np.linspace(2.0, 1.0, 10))


# -- numpy numbers in a RunSpec ----------------------------------------------


@pytest.mark.parametrize("make", [np.int64, np.int32, np.uint8, np.array])
def test_numpy_integers_are_stored_as_python_ints(make: Any) -> None:
    spec = RunSpec(depth=make(3), seed=make(7), truncation=None)
    assert type(spec.depth) is int and type(spec.seed) is int
    python = RunSpec(depth=3, seed=7)
    assert spec == python and hash(spec) == hash(python)
    assert spec.to_dict() == python.to_dict()
    json.dumps(spec.to_dict())  # plain, JSON-serialisable


@pytest.mark.parametrize("make", [np.float32, np.float64, np.array])
def test_numpy_floats_are_stored_as_python_floats(make: Any) -> None:
    spec = RunSpec(init_scale=make(0.5), learning_rate=make(0.25), clipnorm=make(2.0))
    for name in ("init_scale", "learning_rate", "clipnorm"):
        assert type(getattr(spec, name)) is float
    python = RunSpec(init_scale=0.5, learning_rate=0.25, clipnorm=2.0)
    assert spec == python and hash(spec) == hash(python)
    assert json.dumps(spec.to_dict()) == json.dumps(python.to_dict())


def test_a_float32_keeps_its_own_value() -> None:
    # float32(0.01) is not 0.01; the spec stores what the reader passed.
    spec = RunSpec(learning_rate=np.float32(0.01))
    assert spec == RunSpec(learning_rate=float(np.float32(0.01)))
    assert type(spec.learning_rate) is float


def test_a_numpy_integer_in_a_float_field_equals_the_python_int() -> None:
    spec = RunSpec(l2=np.int64(0), init_scale=np.int32(2))
    assert spec.to_dict() == RunSpec(l2=0, init_scale=2).to_dict()
    assert type(spec.l2) is int


def test_numpy_bools_and_strings_are_plain_too() -> None:
    spec = RunSpec(stop_on_nonfinite=np.bool_(False), model=np.str_("rnn"))
    assert spec.stop_on_nonfinite is False and type(spec.model) is str
    assert spec == RunSpec(stop_on_nonfinite=False, model="rnn")


@pytest.mark.parametrize("value", [True, np.bool_(True), 3.0, np.float64(3.0), "3"])
def test_bools_and_non_integers_are_refused_for_integer_fields(value: Any) -> None:
    # a regression guard: accepting numpy integers must not let these in
    with pytest.raises(SpecError, match=r"RunSpec\.depth=.* expected an integer"):
        RunSpec(depth=value)


@pytest.mark.parametrize("value", [True, np.bool_(False), np.complex128(1.0), "0.1"])
def test_bools_and_non_numbers_are_refused_for_float_fields(value: Any) -> None:
    with pytest.raises(SpecError, match=r"RunSpec\.learning_rate=.* expected a finite number"):
        RunSpec(learning_rate=value)


def test_a_numpy_spec_hits_the_same_cache_entry() -> None:
    cache.clear()
    first = cache.cached_run(TINY.replace(depth=np.int64(2), init_scale=np.float32(0.5)))
    assert cache.cached_run(TINY.replace(depth=2, init_scale=0.5)) is first


def test_sweep_over_numpy_values() -> None:
    depths = sweep(TINY, "depth", np.arange(1, 4))
    assert [s.depth for s in depths.specs] == [1, 2, 3]
    assert all(type(s.depth) is int for s in depths.specs)
    assert [t.steps_run for t in depths.traces["torch"]] == [5, 5, 5]

    scales = sweep(TINY, "init_scale", np.linspace(0.5, 1.5, 3))
    assert [s.init_scale for s in scales.specs] == [0.5, 1.0, 1.5]
    assert scales.base_index == 1

    rates = sweep(TINY, "learning_rate", np.array([1e-3, 1e-2], dtype=np.float32))
    assert all(type(s.learning_rate) is float for s in rates.specs)


def test_explore_offers_numpy_values_on_a_slider() -> None:
    from explodebook.widgets import explore

    explorer = explore(TINY, {"depth": np.arange(1, 4)})
    assert type(explorer.controls["depth"]).__name__ == "SelectionSlider"
    assert explorer.error is None
    explorer.controls["depth"].value = 3
    assert explorer.error is None and explorer.spec.depth == 3


def test_timesteps_takes_a_numpy_batch_size() -> None:
    spec = RunSpec(model="rnn", width=4, seq_len=5, batch_size=8)
    norms = input_gradient_norms(spec, batch_size=np.int64(4))
    assert np.array_equal(norms, input_gradient_norms(spec, batch_size=4))


def test_outcome_takes_a_numpy_tolerance_but_not_a_bool() -> None:
    trace = a_trace()
    assert outcome(trace, np.float32(0.5), baseline=2.0) == outcome(trace, 0.5, baseline=2.0)
    with pytest.raises(ValueError, match=r"tolerance=True .*number in \(0, 1\]"):
        outcome(trace, True, baseline=2.0)


# -- the shared checks --------------------------------------------------------


def test_describe_shows_type_and_a_short_repr() -> None:
    assert checks.describe("abc") == "str 'abc'"
    assert checks.describe(None) == "None"
    assert len(checks.describe(list(range(1000)))) < 60


def test_check_framework() -> None:
    assert checks.check_framework(np.str_("keras")) == "keras"
    with pytest.raises(
        ValueError, match=r"^framework='jax' is not allowed: choose one of \['torch', 'keras'\]$"
    ):
        checks.check_framework("jax")
    with pytest.raises(ValueError, match=r"framework=\['torch'\] is not allowed"):
        checks.check_framework(["torch"])
    assert checks.check_frameworks("torch", "f") == ("torch",)
    with pytest.raises(ValueError, match="names a framework twice"):
        checks.check_frameworks(["torch", "torch"], "f")


# -- wrong types say what was expected ----------------------------------------


def test_from_dict_expects_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"RunSpec\.from_dict\(\) expects a dict .*got None"):
        RunSpec.from_dict(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expects a dict .*got list"):
        RunSpec.from_dict([("depth", 2)])  # type: ignore[arg-type]


def test_from_dict_lists_unknown_keys_of_any_type() -> None:
    with pytest.raises(SpecError, match=r"unknown RunSpec field\(s\) \[1, 'colour'\]"):
        RunSpec.from_dict({1: 2, "colour": "red"})  # type: ignore[dict-item]


def test_diagnose_expects_a_trace() -> None:
    with pytest.raises(
        TypeError,
        match=r"^diagnose\(\) expects a Trace \(from explodebook.run or a monitor\), got str 'abc'$",
    ):
        diagnose("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"diagnose\(thresholds=...\) expects a Thresholds or None, got dict"):
        diagnose(a_trace(), {"window": 5})  # type: ignore[arg-type]


def test_thresholds_take_numpy_numbers() -> None:
    assert diagnose(a_trace(), window=np.int64(4)).thresholds.window == 4
    with pytest.raises(ValueError, match=r"Thresholds\.window=True .*expected an integer"):
        Thresholds(window=np.bool_(True))


@pytest.mark.parametrize(
    ("call", "where", "expected"),
    [
        (lambda: outcome(None), r"outcome\(\)", "a Trace"),  # type: ignore[arg-type]
        (lambda: mean_predictor_loss("spec"), r"mean_predictor_loss\(\)", "a RunSpec"),  # type: ignore[arg-type]
        (lambda: describe_change([("depth", 2)]), r"describe_change\(\)", "a mapping"),  # type: ignore[arg-type]
        (lambda: outcome_table("spec", {}), r"outcome_table\(\)", "a RunSpec"),  # type: ignore[arg-type]
        (lambda: outcome_table(TINY, ["a"]), r"outcome_table\(variants=...\)", "a mapping"),  # type: ignore[arg-type]
        (lambda: outcome_table(TINY, {"a": [1]}), r"outcome_table\(variants=...\)", "a mapping"),  # type: ignore[dict-item]
    ],
)
def test_outcome_functions_expect_their_types(call: Any, where: str, expected: str) -> None:
    with pytest.raises(TypeError, match=rf"^{where} expects {expected}.*, got "):
        call()


def test_outcome_table_checks_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing should run before the arguments are checked")

    monkeypatch.setattr(explodebook, "run", no_run)
    with pytest.raises(ValueError, match="tolerance=2"):
        outcome_table(TINY, {"a": {}}, tolerance=2)
    with pytest.raises(ValueError, match=r"framework='jax' is not allowed: choose one of"):
        outcome_table(TINY, {"a": {}}, frameworks=("torch", "jax"))


def test_outcome_table_takes_one_framework_name() -> None:
    table = outcome_table(TINY, {"base": {}}, frameworks="torch")
    assert list(table.attrs["outcomes"]["base"]) == ["torch"]


def test_final_loss_window_must_be_a_positive_integer() -> None:
    trace = a_trace()
    assert trace.final_loss(np.int64(3)) == trace.final_loss(3)
    for window in ("5", 0, 2.5):
        with pytest.raises(ValueError, match=rf"window={window!r} is not allowed: expected an integer"):
            trace.final_loss(window)  # type: ignore[arg-type]


def test_trace_equals_expects_a_trace() -> None:
    with pytest.raises(TypeError, match=r"Trace\.equals\(\) expects a Trace.*got str 'x'"):
        a_trace().equals("x")  # type: ignore[arg-type]


def test_trace_fields_are_checked() -> None:
    good = a_trace()
    with pytest.raises(TypeError, match=r"Trace\(spec=...\) expects a RunSpec.*got dict"):
        dataclasses.replace(good, spec=RunSpec().to_dict())
    with pytest.raises(TypeError, match=r"Trace\(layers=...\) expects a list of layer names.*got str"):
        dataclasses.replace(good, layers="ab")
    with pytest.raises(TypeError, match=r"Trace\(layers=...\) expects a list of layer names.*got list"):
        dataclasses.replace(good, layers=[1, 2])
    with pytest.raises(TypeError, match=r"Trace\.loss expects an array of numbers, got str 'abc'"):
        dataclasses.replace(good, loss="abc")
    with pytest.raises(ValueError, match=r"Trace\.framework='jax' is not allowed: choose one of"):
        dataclasses.replace(good, framework="jax")


def test_from_record_takes_a_nested_list_and_checks_the_rest() -> None:
    spec = RunSpec(steps=3)
    record = np.ones((3, 2 + 4 * 2))
    assert Trace.from_record(record.tolist(), spec, "torch").equals(
        Trace.from_record(record, spec, "torch")
    )
    with pytest.raises(TypeError, match=r"Trace\.from_record\(spec=...\) expects a RunSpec"):
        Trace.from_record(record, "spec", "torch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"framework='jax' is not allowed"):
        Trace.from_record(record, spec, "jax")


# -- Trace.load says what the file is ----------------------------------------


def test_loading_a_npy_file_says_it_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "array.npy"
    np.save(path, np.arange(4.0))
    with pytest.raises(ValueError, match=r"not an explodebook trace file.*a single numpy array \(\.npy\)"):
        Trace.load(path)


def test_loading_a_text_file_says_it_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("loss,grad\n1,2\n")
    with pytest.raises(ValueError, match=r"not an explodebook trace file.*not a \.npz archive"):
        Trace.load(path)


def test_loading_an_npz_without_a_header_says_it_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, loss=np.ones(3))
    with pytest.raises(ValueError, match=r"not an explodebook trace file.*no trace header.*'loss'"):
        Trace.load(path)


def test_save_and_load_expect_a_path(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Trace\.save\(\) expects a file path.*got float 3.5"):
        a_trace().save(3.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Trace\.load\(\) expects a file path.*got None"):
        Trace.load(None)  # type: ignore[arg-type]


# -- plots ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "plot", [plots.loss_curve, plots.grad_norm_curve, plots.compare]
)
def test_plots_of_several_traces_say_which_item_is_wrong(plot: Any) -> None:
    name = plot.__name__
    with pytest.raises(TypeError, match=rf"^{name}\(\) expects a Trace or a list of Traces, got str 'abc'$"):
        plot("abc")
    with pytest.raises(TypeError, match=rf"^{name}\(\) expects .*, item 1 is None$"):
        plot([a_trace(), None])


@pytest.mark.parametrize("plot", [plots.grad_heatmap, plots.layer_norms, plots.weight_norms])
def test_plots_of_one_trace_expect_a_trace(plot: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{plot.__name__}\(\) expects a Trace .*got dict"):
        plot({"loss": [1.0]})


def test_plots_expect_axes_not_a_figure() -> None:
    figure = plt.figure()
    with pytest.raises(TypeError, match=r"loss_curve\(ax=...\) expects a matplotlib Axes or None, got Figure"):
        plots.loss_curve(a_trace(), ax=figure)
    with pytest.raises(TypeError, match=r"depth_profile\(ax=...\) expects a matplotlib Axes"):
        plots.depth_profile([1.0, 2.0], ax=figure)


def test_depth_profile_expects_numbers() -> None:
    with pytest.raises(TypeError, match=r"depth_profile\(\) expects numbers.*got str 'abc'"):
        plots.depth_profile("abc")


# -- theory -------------------------------------------------------------------


def test_theory_names_and_sequences_are_checked() -> None:
    with pytest.raises(ValueError, match=r"activation=\['tanh'\] is not allowed: choose one of"):
        theory.pascanu_condition(np.eye(2), activation=["tanh"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dtype=\['float32'\] is not allowed: choose one of"):
        theory.overflow_steps(2.0, dtype=["float32"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"matrix_product_norms\(\) expects .*matrices.*got int 5"):
        theory.matrix_product_norms(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"h0 must be an array of numbers, got str"):
        theory.rnn_backprop_norms(np.eye(2), 3, h0="ab")  # type: ignore[arg-type]


def test_theory_matrices_show_what_was_given() -> None:
    with pytest.raises(TypeError, match=r"W must be a 2-D array of numbers, got str 'abc'"):
        theory.largest_singular_value("abc")


def test_compare_refuses_a_list_as_quantity_clearly() -> None:
    with pytest.raises(ValueError, match=r"quantity=\['loss'\] is not allowed: choose one of"):
        plots.compare([a_trace()], quantity=["loss"])  # type: ignore[arg-type]


def test_theory_takes_numpy_numbers() -> None:
    assert theory.random_matrix_product(np.int64(2), np.int64(3), np.float32(0.5)).norms.shape == (3,)
    assert theory.overflow_steps(np.float32(2.0), dtype=np.str_("float16")) == 16


# -- timesteps and widgets -------------------------------------------------


def test_timesteps_expects_a_spec() -> None:
    with pytest.raises(TypeError, match=r"^input_gradient_norms\(\) expects a RunSpec.*got dict"):
        input_gradient_norms({"model": "rnn"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base": {}}, TypeError, r"explore\(\) expects a RunSpec .*got dict \{\}"),
        ({"controls": {"depth": 3}}, TypeError, r"explore\(controls=...\) expects a list of values for 'depth', got int 3"),
        ({"controls": 5}, TypeError, r"explore\(controls=...\) expects field names or a mapping.*got int 5"),
        ({"frameworks": ()}, ValueError, r"explore\(frameworks=...\) is empty: give at least one"),
        ({"frameworks": "jax"}, ValueError, r"^framework='jax' is not allowed: choose one of"),
        ({"draw": "loss"}, TypeError, r"explore\(draw=...\) expects a function .*got str 'loss'"),
    ],
)
def test_explore_arguments_are_checked(kwargs: dict, error: type, message: str) -> None:
    from explodebook.widgets import explore

    kwargs = {"base": TINY, **kwargs}
    with pytest.raises(error, match=message):
        explore(**kwargs)


def test_explore_takes_one_control_name() -> None:
    from explodebook.widgets import explore

    explorer = explore(TINY, "depth")
    assert list(explorer.controls) == ["depth"]
