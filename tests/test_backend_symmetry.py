"""The two backends mirror each other, as d2l's framework modules do.

Same public names in the same order, and the same signatures (parameter
names, kinds and defaults; annotations name each framework's own types),
so a reader can read `explodebook.backends.torch` and
`explodebook.backends.keras` side by side.
"""

from __future__ import annotations

import inspect

from explodebook.backends import keras as keras_backend
from explodebook.backends import torch as torch_backend


def parameters(obj: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(obj)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_same_public_names_in_the_same_order() -> None:
    assert torch_backend.__all__ == keras_backend.__all__


def test_shared_functions_have_the_same_signatures() -> None:
    for name in torch_backend.__all__:
        torch_obj, keras_obj = getattr(torch_backend, name), getattr(keras_backend, name)
        if inspect.isclass(torch_obj):
            assert inspect.isclass(keras_obj), name
            continue  # each framework's own base class and constructor
        assert parameters(torch_obj) == parameters(keras_obj), name


def test_constants_of_the_spec_are_not_redefined_by_a_backend() -> None:
    for backend in (torch_backend, keras_backend):
        own = vars(backend)
        for name in ("NORM_EPSILON", "BATCH_NORM_MOMENTUM"):
            # imported from explodebook.spec, not defined again
            assert own.get(name) is None or own[name] is getattr(
                __import__("explodebook.spec", fromlist=[name]), name
            ), (backend.__name__, name)
