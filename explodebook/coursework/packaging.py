"""What the grading image installs: the package's wheel and the requirements of the autograder zip."""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from pathlib import Path

from explodebook.book.publish import TORCH_CPU_INDEX

__all__ = ["AUTOGRADER_SOURCE", "EXTRA_REQUIREMENTS", "package_wheel", "grading_requirements"]

#: Where otter's grading image (and Gradescope) unpacks the autograder zip.
AUTOGRADER_SOURCE = "/autograder/source"
#: What the notebooks import besides the package and its own dependencies.
EXTRA_REQUIREMENTS = ("pandas>=2.1",)


@functools.lru_cache(maxsize=None)
def package_wheel() -> Path | None:
    """The book's package as a wheel, built once from this checkout (or ``None``).

    ``None`` when the package is not installed from a source tree (a wheel
    install has no ``pyproject.toml`` to build from) or building fails.
    """
    import explodebook

    source = Path(explodebook.__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():
        return None
    out = Path(tempfile.mkdtemp(prefix="explodebook-wheel-"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(source)],
        capture_output=True, text=True,
    )
    wheels = sorted(out.glob("explodebook-*.whl"))
    return wheels[0] if done.returncode == 0 and wheels else None


def grading_requirements(wheel_name: str | None, install_spec: str) -> list[str]:
    """What the grading image installs: the package with both frameworks, and the rest.

    PyTorch comes from its index of CPU wheels (``TORCH_CPU_INDEX``): the
    grading image has no GPU, and PyPI's default build of torch is the
    multi-GB CUDA one. A ``+cpu`` wheel sorts above the same version on
    PyPI, so pip takes it.
    """
    extras = "[torch,keras,widgets]"
    if wheel_name is not None:
        package = f"explodebook{extras} @ file://{AUTOGRADER_SOURCE}/files/{wheel_name}"
    else:  # no wheel: the repository's package, as Colab installs it
        name, _, url = install_spec.partition(" @ ")
        package = f"{name}{extras} @ {url}" if url else f"{install_spec}{extras}"
    return [f"--extra-index-url {TORCH_CPU_INDEX}", package, *EXTRA_REQUIREMENTS]
