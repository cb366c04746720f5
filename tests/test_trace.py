"""Trace: persistence without pickle, and where the first non-finite value is."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from explodebook.spec import RunSpec
from explodebook.trace import Trace, locate_nonfinite

LAYERS = ["dense_1", "dense_2", "output"]


def make_trace(n: int = 5, framework: str = "torch") -> Trace:
    spec = RunSpec(depth=2, steps=n)
    rng = np.random.default_rng(0)
    L = len(LAYERS)
    record = np.abs(rng.normal(size=(n, 2 + 4 * L)))
    record[-1, 3] = np.nan  # last step: non-finite gradient in dense_2
    return Trace.from_record(record, spec, framework, wall_time=0.25)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    trace = make_trace()
    path = tmp_path / "run.npz"
    trace.save(path)
    loaded = Trace.load(path)
    assert loaded.equals(trace, ignore_time=False)
    assert loaded.spec == trace.spec
    assert loaded.first_nonfinite_step == 4


def test_saved_file_holds_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    make_trace().save(path)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            header = archive.read(name)[:200]
            # .npy headers say whether the array holds Python objects
            assert b"'descr': '|O'" not in header, name
    # and loading without pickle works (np.load would raise otherwise)
    Trace.load(path)


def test_equals_sees_a_changed_number() -> None:
    a, b = make_trace(), make_trace()
    assert a.equals(b)
    b.grad_norms[0, 0] += 1e-12
    assert not a.equals(b)


def test_from_record_checks_the_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 14\)"):
        Trace.from_record(np.zeros((3, 5)), RunSpec(depth=2), "torch")


def test_unknown_framework_is_refused() -> None:
    with pytest.raises(ValueError, match="'jax'"):
        make_trace(framework="jax")


def grid(n: int, bad: dict[tuple[int, int], float] | None = None) -> np.ndarray:
    a = np.ones((n, len(LAYERS)))
    for (step, layer), value in (bad or {}).items():
        a[step, layer] = value
    return a


def test_nothing_non_finite() -> None:
    assert locate_nonfinite(np.ones(4), grid(4), grid(4), LAYERS) == (None, None, None)


def test_weights_take_precedence_and_blame_the_first_layer_from_the_input() -> None:
    grads = grid(4, {(2, 0): np.inf})
    weights = grid(4, {(2, 1): np.nan, (2, 2): np.nan})
    assert locate_nonfinite(np.ones(4), grads, weights, LAYERS) == (2, "weight", "dense_2")


def test_gradients_blame_the_first_layer_from_the_output() -> None:
    grads = grid(4, {(1, 0): np.inf, (1, 1): np.nan})
    assert locate_nonfinite(np.ones(4), grads, grid(4), LAYERS) == (1, "gradient", "dense_2")


def test_loss_only() -> None:
    loss = np.array([1.0, np.inf, 1.0])
    assert locate_nonfinite(loss, grid(3), grid(3), LAYERS) == (1, "loss", None)


def test_earliest_step_wins() -> None:
    loss = np.array([1.0, 1.0, np.nan, np.nan])
    grads = grid(4, {(3, 0): np.nan})
    assert locate_nonfinite(loss, grads, grid(4), LAYERS)[0] == 2


def test_parameter_record_has_the_layout_of_the_layer_record() -> None:
    # One parameter per layer: the monitors' record is the backends' record
    # without the total column, and both make the same trace.
    spec = RunSpec(depth=2, steps=4)
    L = len(LAYERS)
    record = np.abs(np.random.default_rng(1).normal(size=(4, 2 + 4 * L)))
    record[:, 1] = np.sqrt((record[:, 2 : 2 + L] ** 2).sum(axis=1))
    record[3, 2 + 3 * L + 1] = np.inf  # last step: dense_2's weights
    layer_trace = Trace.from_record(record, spec, "keras")
    params = Trace.from_parameter_record(
        np.delete(record, 1, axis=1), framework="keras", layers=LAYERS,
        owner=np.arange(L), parameter_names=[f"{name}/w" for name in LAYERS], spec=spec,
    )
    assert params.equals(layer_trace)
    assert params.extra["first_nonfinite_parameter"] == "dense_2/w"


def test_parameter_record_sums_the_parameters_of_a_layer() -> None:
    # Two layers, three parameters: (n, 1 + 4 * 3) = loss, grad, clipped, max, weight.
    grad, clipped, big, weight = [3.0, 4.0, 2.0], [0.3, 0.4, 0.2], [1.0, 5.0, 2.0], [6.0, 8.0, 1.0]
    values = np.array([[0.5, *grad, *clipped, *big, *weight]])
    trace = Trace.from_parameter_record(
        values, framework="torch", layers=["a", "b"], owner=np.array([0, 0, 1]),
        parameter_names=["a.w", "a.b", "b.w"],
    )
    np.testing.assert_allclose(trace.grad_norms, [[5.0, 2.0]])
    np.testing.assert_allclose(trace.clipped_grad_norms, [[0.5, 0.2]])
    np.testing.assert_allclose(trace.grad_max_abs, [[5.0, 2.0]])
    np.testing.assert_allclose(trace.weight_norms, [[10.0, 1.0]])
    np.testing.assert_allclose(trace.grad_norm_total, [np.sqrt(29.0)])
    assert trace.extra["parameters"] == {"a": ["a.w", "a.b"], "b": ["b.w"]}
    with pytest.raises(ValueError, match=r"shape \(n, 13\) for 3 parameters"):
        Trace.from_parameter_record(
            values[:, :-1], framework="torch", layers=["a", "b"], owner=np.array([0, 0, 1]),
            parameter_names=["a.w", "a.b", "b.w"],
        )


# -- Trace.load checks what it reads -------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    """The raw .npy bytes of each member of a saved trace."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_declaring(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A .npy header declaring ``shape`` followed by a few bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + b"\0" * 16


def _saved(tmp_path: Path, **header_changes: object) -> Path:
    """A saved trace (non-finite at step 4, gradient, dense_2), header edited."""
    path = tmp_path / "run.npz"
    make_trace().save(path)
    members = _members(path)
    header = json.loads(str(np.load(io.BytesIO(members["header.npy"]))))
    for key, value in header_changes.items():
        if value is _DROP:
            del header[key]
        else:
            header[key] = value
    members["header.npy"] = _npy(np.array(json.dumps(header)))
    _write(path, members)
    return path


_DROP = object()


def _load_small(path: Path) -> None:
    """Trace.load, asserting that it allocated next to nothing."""
    tracemalloc.start()
    try:
        Trace.load(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 50 * 2**20, f"Trace.load allocated {peak / 2**20:.0f} MiB"


def test_load_refuses_a_huge_declared_array_before_reading_it(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    members = _members(path)
    members["grad_norms.npy"] = _npy_declaring((2**28, 2))  # 4 GiB in a few bytes
    _write(path, members)
    assert path.stat().st_size < 10_000
    with pytest.raises(ValueError, match=r"grad_norms.*4\.0 GiB"):
        _load_small(path)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("loss", (10**8,), r"loss has 100000000 steps, .* 5"),
        ("weight_norms", (5, 10**7), r"weight_norms has 10000000 columns for 3 layers"),
        ("grad_max_abs", (5, 3, 1), r"grad_max_abs must have 2 dimension"),
    ],
)
def test_load_checks_declared_shapes_before_reading(
    tmp_path: Path, name: str, shape: tuple[int, ...], message: str
) -> None:
    path = _saved(tmp_path)
    members = _members(path)
    members[f"{name}.npy"] = _npy_declaring(shape)
    _write(path, members)
    with pytest.raises(ValueError, match=message):
        _load_small(path)


@pytest.mark.parametrize(
    ("dtype", "kind"), [(np.complex128, "complex"), ("<U8", "str"), (bool, "bool")]
)
def test_load_refuses_arrays_that_are_not_real_numbers(
    tmp_path: Path, dtype: object, kind: str
) -> None:
    path = _saved(tmp_path)
    members = _members(path)
    members["loss.npy"] = _npy(np.ones(5).astype(dtype))
    _write(path, members)
    with pytest.raises(ValueError, match=rf"loss holds {kind}"):
        Trace.load(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"first_nonfinite_kind": "banana"}, r"first_nonfinite_kind='banana'"),
        ({"first_nonfinite_step": 3}, r"header says .*step 3.*arrays say .*step 4"),
        ({"first_nonfinite_step": None, "first_nonfinite_kind": None,
          "first_nonfinite_layer": None}, r"header says .*finite.*arrays say .*step 4"),
        ({"first_nonfinite_layer": "output"}, r"header says .*output.*arrays say .*dense_2"),
        ({"first_nonfinite_kind": "loss"}, r"header says .*loss.*arrays say .*gradient"),
        ({"first_nonfinite_step": "4"}, r"first_nonfinite_step='4'"),
    ],
)
def test_load_checks_the_header_against_the_arrays(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Trace.load(_saved(tmp_path, **changes))


def test_load_checks_a_finite_trace_claimed_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    trace = make_trace()
    trace.grad_norms[-1, 1] = 1.0  # now finite throughout
    trace.first_nonfinite_step = trace.first_nonfinite_kind = trace.first_nonfinite_layer = None
    trace.save(path)
    assert not Trace.load(path).diverged
    members = _members(path)
    header = json.loads(str(np.load(io.BytesIO(members["header.npy"]))))
    header.update(first_nonfinite_step=3, first_nonfinite_kind="gradient",
                  first_nonfinite_layer="dense_1")
    members["header.npy"] = _npy(np.array(json.dumps(header)))
    _write(path, members)
    with pytest.raises(ValueError, match=r"header says .*step 3.*arrays say .*finite"):
        Trace.load(path)


@pytest.mark.parametrize("key", ["framework", "layers", "first_nonfinite_kind", "spec"])
def test_load_names_a_missing_header_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match=rf"header has no '{key}'"):
        Trace.load(_saved(tmp_path, **{key: _DROP}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"wall_time": "0.25"}, r"wall_time is str '0\.25', not a number"),
        ({"extra": [1, 2]}, r"extra is list .*, not a dict"),
        ({"layers": "dense_1"}, r"layers are str 'dense_1', not a list"),
    ],
)
def test_load_checks_the_types_in_the_header(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Trace.load(_saved(tmp_path, **changes))


def test_load_refuses_a_huge_header(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    members = _members(path)
    members["header.npy"] = _npy_declaring((), dtype="<U200000000")  # 800 MB of text
    _write(path, members)
    with pytest.raises(ValueError, match=r"header declares shape \(\), 762\.9 MiB, more than"):
        _load_small(path)


def test_load_still_reads_what_save_writes(tmp_path: Path) -> None:
    path = _saved(tmp_path)  # unchanged header
    assert Trace.load(path).equals(make_trace(), ignore_time=False)


@pytest.mark.parametrize("damage", ["cut short", "bytes changed"])
def test_load_says_a_damaged_archive_is_damaged(tmp_path: Path, damage: str) -> None:
    # A file half-written by a process that died used to raise
    # zipfile.BadZipFile instead of ValueError; changed bytes were caught.
    path = _saved(tmp_path)
    data = path.read_bytes()
    if damage == "cut short":
        data = data[: len(data) // 2]
    else:  # flip bytes in the middle of the compressed arrays
        middle = len(data) // 2
        data = data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]
    path.write_bytes(data)
    with pytest.raises(ValueError, match="damaged trace file|is not a readable array"):
        Trace.load(path)
