"""Answer values as plain JSON, from a student's notebook to the grader.

A submission runs in a sandboxed process (`explodebook.coursework.sandbox`)
and the checks run in the grader's own process. What crosses between them
is data only: `encode` turns each answer into JSON made of numbers,
strings, lists and a few tagged objects (tuples, dicts with any plain keys,
numpy arrays, `explodebook.trace.Trace`, `explodebook.spec.RunSpec`, ``...``), and
`decode` rebuilds those values in the grader. Never pickle: unpickling runs
code of the sender's choosing, and the sender is the student's process.

The encoder runs in the student's process, so its output is whatever the
student wants: `decode` trusts nothing. It reads at most `MAX_BYTES`,
accepts only the tags below, rebuilds arrays of plain numeric dtypes only,
and builds traces and specs through their own validating constructors.
Anything else arrives as an `Unreadable` placeholder that every check
refuses with a sentence (``expect.number`` says "should be a number, got
<unreadable ...>").

Tags (a JSON object always carries ``"$"``; plain objects never appear):

=============== ==========================================================
``tuple``       ``{"$": "tuple", "items": [...]}``
``dict``        ``{"$": "dict", "items": [[key, value], ...]}``
``set``         ``{"$": "set", "items": [...]}``
``ndarray``     ``{"$": "ndarray", "dtype": "float64", "shape": [...], "data": [...]}``
``Trace``       ``{"$": "Trace", "header": {...}, "arrays": {name: ndarray}}``
``RunSpec``     ``{"$": "RunSpec", "fields": {...}}``
``ellipsis``    ``{"$": "ellipsis"}`` (an answer still left at ``...``)
``unsupported`` ``{"$": "unsupported", "type": "module.Class", "reason": "..."}``
=============== ==========================================================
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["encode", "decode", "dumps", "loads", "Unreadable", "DecodeError", "MAX_BYTES", "MAX_ITEMS"]

#: The most JSON text `loads` reads (larger answers are refused whole).
MAX_BYTES = 32 * 2**20
#: The most numbers and containers one answer may hold.
MAX_ITEMS = 2_000_000
#: The deepest nesting of containers accepted.
MAX_DEPTH = 32
#: Array dtypes that cross over (by numpy's name).
DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"]
)
_TRACE_ARRAYS = (
    "loss", "grad_norm_total", "grad_norms", "clipped_grad_norms", "grad_max_abs", "weight_norms"
)
_TRACE_HEADER = (
    "framework", "layers", "first_nonfinite_step", "first_nonfinite_kind",
    "first_nonfinite_layer", "wall_time",
)


class Unreadable:
    """An answer the grader could not, or would not, rebuild.

    Checks treat it as a wrong answer: it is not a number, not a sequence,
    not a `Trace`; its ``repr`` says what it was and why it was refused.
    """

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name = str(type_name)[:80]
        self.reason = str(reason)[:200]

    def __repr__(self) -> str:
        return f"<{self.type_name} that grading cannot read: {self.reason}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Unreadable)
            and (self.type_name, self.reason) == (other.type_name, other.reason)
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.reason))


class _Budget:
    def __init__(self, items: int) -> None:
        self.left = items

    def take(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise OverflowError("too large")


def _type_name(value: Any) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    name = getattr(kind, "__qualname__", None) or getattr(kind, "__name__", "object")
    return f"{module}.{name}" if module not in ("", "builtins") else str(name)


def _unsupported(value: Any, reason: str) -> dict[str, Any]:
    return {"$": "unsupported", "type": _type_name(value), "reason": reason}


def _ndarray(array: Any, budget: _Budget) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(array)
    if array.dtype.name not in DTYPES:
        return _unsupported(array, f"an array of dtype {array.dtype.name}")
    budget.take(int(array.size))
    data = array.ravel().tolist()
    return {"$": "ndarray", "dtype": array.dtype.name, "shape": list(array.shape), "data": data}


def _encode(value: Any, depth: int, budget: _Budget) -> Any:
    budget.take()
    if depth > MAX_DEPTH:
        raise OverflowError("too deeply nested")
    # exact types first: a subclass of a plain type goes through the
    # generic branches below (its value, not its methods)
    if value is None or type(value) in (bool, str):
        if type(value) is str:
            budget.take(len(value) // 64)
        return value
    if type(value) is int:
        return value if abs(value) < 2**63 else float(value)
    if type(value) is float:
        return value
    if value is Ellipsis:
        return {"$": "ellipsis"}
    module = type(value).__module__ or ""
    if module == "numpy" or module.startswith("numpy."):
        import numpy as np

        if isinstance(value, np.ndarray):
            return _ndarray(value, budget)
        if isinstance(value, np.generic):
            if value.dtype.name not in DTYPES:
                return _unsupported(value, f"a numpy {value.dtype.name}")
            return _encode(value.item(), depth, budget)
    if module == "torch" or module.startswith("torch."):
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            return _ndarray(value.detach().cpu().numpy(), budget)
    if module.startswith("explodebook."):
        from explodebook.spec import RunSpec
        from explodebook.trace import Trace

        if type(value) is RunSpec:
            return {"$": "RunSpec", "fields": _encode(value.to_dict(), depth + 1, budget)}
        if type(value) is Trace:
            header = {name: getattr(value, name) for name in _TRACE_HEADER}
            header["spec"] = None if value.spec is None else value.spec.to_dict()
            return {
                "$": "Trace",
                "header": _encode(header, depth + 1, budget),
                "arrays": {name: _ndarray(getattr(value, name), budget) for name in _TRACE_ARRAYS},
            }
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _encode(int(value), depth, budget)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _encode(str(value), depth, budget)
    if isinstance(value, list):
        return [_encode(item, depth + 1, budget) for item in list(value)[: budget.left + 1]]
    if isinstance(value, tuple):
        items = list(value)[: budget.left + 1]
        return {"$": "tuple", "items": [_encode(item, depth + 1, budget) for item in items]}
    if isinstance(value, (set, frozenset)):
        items = list(value)[: budget.left + 1]
        return {"$": "set", "items": [_encode(item, depth + 1, budget) for item in items]}
    if isinstance(value, dict):
        pairs = list(value.items())[: budget.left + 1]
        return {
            "$": "dict",
            "items": [
                [_encode(k, depth + 1, budget), _encode(v, depth + 1, budget)] for k, v in pairs
            ],
        }
    return _unsupported(value, "not a value grading reads (numbers, text, lists, dicts, "
                               "arrays, traces and specs are)")


def encode(value: Any) -> Any:
    """One answer as JSON-ready data (see the module's table of tags).

    Never raises: a value that cannot be encoded becomes an ``unsupported``
    tag saying why (too large, too deep, a type grading does not read).
    """
    try:
        return _encode(value, 0, _Budget(MAX_ITEMS))
    except OverflowError as error:
        return _unsupported(value, str(error))
    except RecursionError:
        return _unsupported(value, "too deeply nested")
    except Exception as error:  # a student's object that fails to be read
        return _unsupported(value, f"reading it raised {type(error).__name__}")


def dumps(answers: dict[str, Any]) -> str:
    """Answers by name as JSON text (NaN and infinities as JSON's extensions)."""
    return json.dumps({str(k): encode(v) for k, v in answers.items()}, allow_nan=True)


# -- decoding: runs in the grader, on text the student controls -----------


class DecodeError(ValueError):
    """The text is not answers as `dumps` writes them."""


def _int(value: Any) -> int:
    if type(value) is not int:
        raise DecodeError("expected an integer")
    return value


def _decode_array(data: Any, budget: _Budget) -> Any:
    import numpy as np

    if not isinstance(data, dict) or data.get("$") != "ndarray":
        raise DecodeError("expected an array")
    dtype = data.get("dtype")
    if dtype not in DTYPES:
        raise DecodeError(f"arrays of dtype {str(dtype)[:20]!r} are not read")
    shape = data.get("shape")
    values = data.get("data")
    if not isinstance(shape, list) or len(shape) > 8 or not isinstance(values, list):
        raise DecodeError("a malformed array")
    shape = [_int(n) for n in shape]
    if any(n < 0 for n in shape) or math.prod(shape) != len(values):
        raise DecodeError("an array whose shape does not match its data")
    budget.take(len(values))
    if not all(type(v) in (int, float, bool) for v in values):
        raise DecodeError("an array holding something other than numbers")
    try:
        return np.asarray(values, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError) as error:
        raise DecodeError(f"an array numpy refuses ({error})") from None


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise DecodeError("a list as a dict key")
    hash(key)
    return key


def _decode(data: Any, depth: int, budget: _Budget) -> Any:
    budget.take()
    if depth > MAX_DEPTH:
        raise DecodeError("too deeply nested")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if isinstance(data, list):
        return [_decode(item, depth + 1, budget) for item in data]
    if not isinstance(data, dict):
        raise DecodeError("an unexpected JSON value")
    tag = data.get("$")
    if tag == "ellipsis":
        return Ellipsis
    if tag in ("tuple", "set"):
        items = data.get("items")
        if not isinstance(items, list):
            raise DecodeError(f"a malformed {tag}")
        decoded = [_decode(item, depth + 1, budget) for item in items]
        if tag == "tuple":
            return tuple(decoded)
        try:
            return {_hashable(item) for item in decoded}
        except TypeError:
            raise DecodeError("a set of unhashable items") from None
    if tag == "dict":
        items = data.get("items")
        if not isinstance(items, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in items
        ):
            raise DecodeError("a malformed dict")
        out = {}
        for key, value in items:
            try:
                out[_hashable(_decode(key, depth + 1, budget))] = _decode(value, depth + 1, budget)
            except TypeError:
                raise DecodeError("a dict with an unhashable key") from None
        return out
    if tag == "ndarray":
        return _decode_array(data, budget)
    if tag == "RunSpec":
        from explodebook.spec import RunSpec

        fields = _decode(data.get("fields"), depth + 1, budget)
        if not isinstance(fields, dict):
            raise DecodeError("a RunSpec without its fields")
        try:
            return RunSpec.from_dict(fields)
        except (TypeError, ValueError) as error:
            return Unreadable("RunSpec", f"its fields are not a valid spec ({error})")
    if tag == "Trace":
        return _decode_trace(data, depth, budget)
    if tag == "unsupported":
        return Unreadable(str(data.get("type", "object")), str(data.get("reason", "")))
    raise DecodeError(f"an unknown tag {str(tag)[:20]!r}")


def _decode_trace(data: dict[str, Any], depth: int, budget: _Budget) -> Any:
    from explodebook.spec import RunSpec
    from explodebook.trace import Trace

    header = _decode(data.get("header"), depth + 1, budget)
    arrays = data.get("arrays")
    if not isinstance(header, dict) or not isinstance(arrays, dict):
        raise DecodeError("a malformed Trace")
    try:
        spec = header.get("spec")
        return Trace(
            spec=None if spec is None else RunSpec.from_dict(spec),
            framework=header["framework"],
            layers=header["layers"],
            first_nonfinite_step=header["first_nonfinite_step"],
            first_nonfinite_kind=header["first_nonfinite_kind"],
            first_nonfinite_layer=header["first_nonfinite_layer"],
            wall_time=float(header["wall_time"]),
            **{name: _decode_array(arrays.get(name), budget) for name in _TRACE_ARRAYS},
        )
    except (KeyError, TypeError, ValueError) as error:
        return Unreadable("Trace", f"it does not hold together ({str(error)[:120]})")


def decode(data: Any) -> Any:
    """One answer rebuilt from `encode`'s data; `Unreadable` if malformed."""
    try:
        return _decode(data, 0, _Budget(MAX_ITEMS))
    except DecodeError as error:
        return Unreadable("answer", str(error))
    except OverflowError:
        return Unreadable("answer", "too large")
    except RecursionError:
        return Unreadable("answer", "too deeply nested")


def loads(text: str | bytes) -> dict[str, Any]:
    """Answers by name from `dumps`'s text.

    Raises:
        DecodeError: the text is too long, not JSON, or not an object of
            answers by name. A single malformed answer does not raise: it
            becomes `Unreadable`.
    """
    if len(text) > MAX_BYTES:
        raise DecodeError(f"the answers are larger than {MAX_BYTES // 2**20} MB")
    try:
        data = json.loads(text)
    except RecursionError:
        raise DecodeError("the answers are nested too deeply") from None
    except ValueError as error:
        raise DecodeError(f"the answers are not JSON ({str(error)[:80]})") from None
    if not isinstance(data, dict):
        raise DecodeError("the answers are not an object of values by name")
    return {str(name): decode(value) for name, value in data.items()}
