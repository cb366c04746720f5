"""Saving and loading a `Trace`: one ``.npz`` of arrays and a JSON header, no pickle.

`load` checks what it reads before it reads it: each array's shape and
type from its own ``.npy`` header (a small file can declare a huge array),
the header's keys and types, and the header's first non-finite step, kind
and layer against what `explodebook.trace.locate_nonfinite` finds in the
arrays.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from explodebook.checks import describe, expect_path
from explodebook.spec import RunSpec
from explodebook.trace import _ARRAYS, Trace, locate_nonfinite

__all__ = ["save", "load"]

# What Trace.save writes, for the messages of Trace.load, and the first
# bytes that tell a .npz (a zip archive) from a .npy file.
_SAVED_AS = "Trace.save writes a .npz archive of arrays with a JSON header"
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"

# What Trace.load reads at most: the arrays of one trace together, as
# float64, and its JSON header.
_MAX_BYTES = 2**30
_MAX_HEADER_BYTES = 2**24
# The keys of the header Trace.save writes (besides "format").
_HEADER_KEYS = (
    "spec",
    "framework",
    "layers",
    "first_nonfinite_step",
    "first_nonfinite_kind",
    "first_nonfinite_layer",
    "wall_time",
    "extra",
)
# What locate_nonfinite may find non-finite.
_KINDS = ("weight", "gradient", "loss")
# What an array of another dtype kind than float or integer holds.
_NOT_REAL = {
    "c": "complex numbers",
    "b": "bool",
    "U": "str",
    "S": "bytes",
    "O": "Python objects",
    "M": "datetimes",
    "m": "timedeltas",
    "V": "records",
}


def save(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write the trace to one ``.npz`` file (arrays + a JSON header).

    Raises:
        TypeError: ``path`` is not a file path.
    """
    expect_path(path, "Trace.save()")
    header = {
        "format": "explodebook.Trace/1",
        "spec": None if trace.spec is None else trace.spec.to_dict(),
        "framework": trace.framework,
        "layers": trace.layers,
        "first_nonfinite_step": trace.first_nonfinite_step,
        "first_nonfinite_kind": trace.first_nonfinite_kind,
        "first_nonfinite_layer": trace.first_nonfinite_layer,
        "wall_time": trace.wall_time,
        "extra": trace.extra,
    }
    arrays = {name: getattr(trace, name) for name in _ARRAYS}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, header=np.array(json.dumps(header)), **arrays)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def load(path: str | os.PathLike[str]) -> Trace:
    """Read a trace written by `save`.

    Raises:
        TypeError: ``path`` is not a file path.
        FileNotFoundError: there is no such file.
        ValueError: the file is not a trace file; the message says what
            it is instead (a ``.npy`` array, not a ``.npz`` archive at
            all, an archive without a trace header). Or it is not a
            trace file ``save`` could have written: a header key or an
            array is missing; an array holds something other than real
            numbers (complex, text, ...), has the wrong shape, or is
            larger than a trace may be (its size is read from the
            file's own description of the array, before the array is);
            or the header's first non-finite step, kind and layer are
            not what `locate_nonfinite` finds in the arrays. Or the
            archive is damaged: cut short, or its bytes changed.
    """
    expect_path(path, "Trace.load()")
    # np.load alone would answer a .npy file with an array (and a
    # confusing error later) and a text file with "Cannot load file
    # containing pickled data": look at the first bytes first.
    with open(path, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if not magic.startswith(_ZIP_MAGIC):
        what = (
            "a single numpy array (.npy)" if magic == _NPY_MAGIC else "not a .npz archive"
        )
        raise ValueError(
            f"{path!s} is not an explodebook trace file: {_SAVED_AS}; this is {what}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "header" not in npz.files:
                raise ValueError(
                    f"{path!s} is not an explodebook trace file: {_SAVED_AS}; this .npz "
                    f"archive has no trace header (it holds {npz.files})"
                )
            # Every member's size is read from its .npy header and checked
            # before its data is: a small file can declare a huge array.
            shape, dtype, data = _declared(npz, "header", path)
            if dtype.kind != "U" or shape != ():
                raise ValueError(f"{path!s} is not an explodebook trace file")
            _check_size(path, "header", shape, dtype.itemsize, _MAX_HEADER_BYTES)
            _check_data(path, "header", shape, dtype, data)
            try:
                header = json.loads(str(npz["header"]))
            except ValueError:
                header = None
            if not isinstance(header, dict) or header.get("format") != "explodebook.Trace/1":
                raise ValueError(f"{path!s} is not an explodebook trace file")
            missing = [repr(key) for key in _HEADER_KEYS if key not in header]
            if missing:
                raise ValueError(
                    f"{path!s} is not a complete trace file: its header has no "
                    f"{', '.join(missing)}"
                )
            missing = [name for name in _ARRAYS if name not in npz.files]
            if missing:
                raise ValueError(f"{path!s} is not a complete trace file: it has no {missing}")
            wall_time, extra = header["wall_time"], header["extra"]
            if isinstance(wall_time, bool) or not isinstance(wall_time, (int, float)):
                raise ValueError(
                    f"{path!s} is not a valid trace file: its header's wall_time is "
                    f"{describe(wall_time)}, not a number of seconds"
                )
            if not isinstance(extra, dict):
                raise ValueError(
                    f"{path!s} is not a valid trace file: its header's extra is "
                    f"{describe(extra)}, not a dict"
                )
            layers = header["layers"]
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise ValueError(
                    f"{path!s} is not a valid trace file: its header's layers are "
                    f"{describe(layers)}, not a list of layer names"
                )
            _check_arrays(path, {name: _declared(npz, name, path) for name in _ARRAYS}, layers)
            arrays = {name: npz[name] for name in _ARRAYS}
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # cut short, or bytes changed
        raise ValueError(
            f"{path!s} is a damaged trace file: its .npz archive cannot be read ({error})"
        ) from error
    try:
        trace = Trace(
            spec=None if header["spec"] is None else RunSpec.from_dict(header["spec"]),
            framework=header["framework"],
            layers=layers,
            first_nonfinite_step=header["first_nonfinite_step"],
            first_nonfinite_kind=header["first_nonfinite_kind"],
            first_nonfinite_layer=header["first_nonfinite_layer"],
            wall_time=float(wall_time),
            extra=extra,
            **arrays,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path!s} is not a valid trace file: {error}") from error
    _check_nonfinite(path, trace)
    return trace


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _declared(npz: Any, name: str, path: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape and dtype of an ``.npz`` member, from its ``.npy`` header alone.

    Returns:
        ``(shape, dtype, data)``, ``data`` the number of bytes that follow
        the header in the member (``_check_data`` compares them).
    """
    member = f"{name}.npy" if f"{name}.npy" in npz.zip.namelist() else name
    try:
        with npz.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version}, which Trace.save does not write")
            offset = f.tell()
        data = npz.zip.getinfo(member).file_size - offset
    except Exception as error:  # zipfile and numpy raise many kinds
        raise ValueError(
            f"{path!s} is not a valid trace file: its {name} is not a readable array ({error})"
        ) from error
    return shape, dtype, data


def _check_data(path: Any, name: str, shape: tuple[int, ...], dtype: np.dtype, data: int) -> None:
    """The member holds as many bytes as its header declares (no more is read)."""
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes != data:
        raise ValueError(
            f"{path!s} is not a valid trace file: its {name} declares shape {shape} of "
            f"{dtype} ({nbytes} bytes) but holds {data} bytes"
        )


def _check_size(path: Any, name: str, shape: tuple[int, ...], itemsize: int, cap: int) -> None:
    nbytes = int(np.prod(shape, dtype=object)) * itemsize
    if nbytes > cap:
        raise ValueError(
            f"{path!s} is not a valid trace file: its {name} declares shape {shape}, "
            f"{_size(nbytes)}, more than the {_size(cap)} a trace file may hold"
        )


def _check_arrays(
    path: Any, declared: dict[str, tuple[tuple[int, ...], np.dtype, int]], layers: list[str]
) -> None:
    """Dtypes, shapes and total size of the arrays, before any is read."""
    total = 0
    for name, (shape, dtype, _) in declared.items():
        if dtype.kind not in "fiu":
            what = _NOT_REAL.get(dtype.kind, "not numbers")
            raise ValueError(
                f"{path!s} is not a valid trace file: its {name} holds {what} "
                f"({dtype}), not real numbers"
            )
        if len(shape) != _ARRAYS[name]:
            raise ValueError(
                f"{path!s} is not a valid trace file: its {name} must have "
                f"{_ARRAYS[name]} dimension(s), got shape {shape}"
            )
        # As float64, which Trace converts every array to.
        _check_size(path, name, shape, 8, _MAX_BYTES)
        total += int(np.prod(shape, dtype=object)) * 8
        if len(shape) == 2 and shape[1] != len(layers):
            raise ValueError(
                f"{path!s} is not a valid trace file: its {name} has {shape[1]} columns "
                f"for {len(layers)} layers"
            )
    steps = {name: shape[0] for name, (shape, _, _) in declared.items()}
    if len(set(steps.values())) > 1:
        counts = ", ".join(f"{name} has {n} steps" for name, n in steps.items())
        raise ValueError(
            f"{path!s} is not a valid trace file: its arrays disagree on the number "
            f"of steps: {counts}"
        )
    if total > _MAX_BYTES:
        raise ValueError(
            f"{path!s} is not a valid trace file: its arrays declare {_size(total)} "
            f"together, more than the {_size(_MAX_BYTES)} a trace file may hold"
        )
    for name, (shape, dtype, data) in declared.items():
        _check_data(path, name, shape, dtype, data)


def _check_nonfinite(path: Any, trace: Trace) -> None:
    """The header's first non-finite step, kind and layer against the arrays."""
    step, kind = trace.first_nonfinite_step, trace.first_nonfinite_kind
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError(
            f"{path!s} is not a valid trace file: its header has "
            f"first_nonfinite_step={step!r}, not a step number or null"
        )
    if kind is not None and kind not in _KINDS:
        raise ValueError(
            f"{path!s} is not a valid trace file: its header has "
            f"first_nonfinite_kind={kind!r}, not one of {', '.join(map(repr, _KINDS))} or null"
        )
    claimed = (step, kind, trace.first_nonfinite_layer)
    found = locate_nonfinite(trace.loss, trace.grad_norms, trace.weight_norms, trace.layers)
    if claimed != found:

        def say(where: tuple[Any, Any, Any]) -> str:
            if where == (None, None, None):
                return "finite throughout"
            return f"first non-finite at step {where[0]!r} ({where[1]}, {where[2]})"

        raise ValueError(
            f"{path!s} is not a valid trace file: its header says {say(claimed)}, "
            f"but its arrays say {say(found)}"
        )
