"""One module per framework, with the same public names.

``explodebook.backends.torch`` and ``explodebook.backends.keras`` each offer
``build(spec)`` and ``run(spec) -> Trace``. Neither is imported by
``import explodebook``; `get` imports one on demand.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from explodebook.checks import check_framework

__all__ = ["get", "PUBLIC_NAMES"]

#: The public names of each backend module, in order; both export exactly
#: these, with the same signatures (tests/test_backend_symmetry.py).
PUBLIC_NAMES = (
    "build",
    "load_weights",
    "layer_weights",
    "make_optimizer",
    "RecurrentRegressor",
    "run",
    "clear_cache",
)


def get(framework: str) -> ModuleType:
    """Import and return the backend module for ``"torch"`` or ``"keras"``.

    Both backends import their framework through `explodebook.frameworks`,
    which loads PyTorch (and triton, which the CUDA build ships) before
    TensorFlow: triton loaded after TensorFlow crashes the process.
    """
    framework = check_framework(framework)
    return importlib.import_module(f"explodebook.backends.{framework}")
