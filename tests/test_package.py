"""Package-level promises: light import, public API, framework import order."""

from __future__ import annotations

import subprocess
import sys

import pytest

import explodebook


def python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_explodebook_imports_no_framework() -> None:
    loaded = python(
        "import sys, explodebook; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'matplotlib', 'ipywidgets') "
        "if m in sys.modules))"
    )
    assert loaded == "[]"


def test_keras_backend_imports_torch_before_tensorflow() -> None:
    order = python(
        "import sys, explodebook.backends.keras; "
        "names = list(sys.modules); "
        "print(names.index('torch') < names.index('tensorflow'))"
    )
    assert order == "True"


def test_public_api_is_exported() -> None:
    for name in explodebook.__all__:
        assert getattr(explodebook, name) is not None
    assert explodebook.run(explodebook.RunSpec(steps=3), cache=False).steps_run == 3


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nonexistent"):
        explodebook.nonexistent  # noqa: B018
