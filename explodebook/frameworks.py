"""Import PyTorch and TensorFlow in the one order that is safe in one process.

The book runs both frameworks in one kernel, and two of their native
libraries do not mix in the other order: **triton**, the GPU compiler that
the CUDA build of PyTorch ships (what ``pip install torch`` gives on Linux,
and what Colab has) and that PyTorch imports lazily when the first
``torch.optim`` optimizer is created, crashes the process with a
segmentation fault when its native library loads after TensorFlow's
(triton 3.8 with TensorFlow 2.21: ``import tensorflow; import triton`` is
enough). Loaded before TensorFlow, it works. PyTorch's CPU wheels (this
project's pinned ``torch``) do not ship triton, which is why the crash was
never seen in the book's own environment.

So every module of the package that needs a framework imports it through
this module: `import_torch` loads torch and, when it is installed, triton;
`import_tensorflow` calls `import_torch` first (when torch is installed)
and only then loads TensorFlow and Keras. After the chapter set-up, a
reader's own PyTorch code is therefore safe too. If TensorFlow was loaded
first by someone else (``import tensorflow`` at the top of a notebook),
importing triton would crash, so `import_torch` hides it from PyTorch for
this process instead (PyTorch treats triton as not installed, which on a
CPU changes nothing) and warns once.

``import explodebook`` imports neither framework; this module imports one
only when a function is called.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType

__all__ = ["import_torch", "import_tensorflow", "guard_triton", "torch_threads", "TritonHiddenWarning"]


class TritonHiddenWarning(RuntimeWarning):
    """TensorFlow was loaded before triton, so triton is hidden from PyTorch."""


def _installed(name: str) -> bool:
    # find_spec only looks at the file system: it does not import the package.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def guard_triton() -> bool:
    """Make a later ``import triton`` safe in this process, without importing it.

    If TensorFlow is loaded and triton is installed but not yet loaded, the
    import PyTorch will attempt on its first optimizer would crash the
    process; mark triton as absent instead (``sys.modules["triton"] =
    None``, so ``import triton`` raises ``ImportError``, which PyTorch
    handles) and warn once.

    Returns:
        ``True`` if triton was hidden by this call.
    """
    if "tensorflow" not in sys.modules or "triton" in sys.modules:
        return False
    if not _installed("triton"):
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]
    warnings.warn(
        "TensorFlow was imported before PyTorch's triton compiler, and loading "
        "triton after TensorFlow crashes the process (segmentation fault). "
        "explodebook has hidden triton from PyTorch for this session, which "
        "is harmless on a CPU. To keep triton (torch.compile on a GPU), "
        "import explodebook.backends.keras (or call "
        "explodebook.frameworks.import_tensorflow()) instead of importing "
        "tensorflow yourself, at the top of the notebook.",
        TritonHiddenWarning,
        stacklevel=3,
    )
    return True


def import_torch() -> ModuleType:
    """Import PyTorch, and triton when it is installed, so TensorFlow may follow.

    Returns:
        the ``torch`` module.
    """
    import torch

    if not guard_triton() and "triton" not in sys.modules and _installed("triton"):
        # TensorFlow is not loaded yet: load triton now, before it is.
        try:
            import triton  # noqa: F401
        except ImportError:
            pass
    return torch


@contextlib.contextmanager
def torch_threads(count: int = 1) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``count`` inside the block, restored after.

    The book's networks are tiny: splitting a 25-unit matmul across cores
    costs more in synchronisation than it saves (much more when another
    process is busy), so runs and checks train on one thread. Without
    PyTorch installed, the block runs unchanged.
    """
    if "torch" not in sys.modules and not _installed("torch"):
        yield
        return
    torch = import_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def import_tensorflow() -> tuple[ModuleType, ModuleType]:
    """Import TensorFlow and Keras 3 (on TensorFlow), PyTorch first if installed.

    Keras picks its backend on its first import: ``KERAS_BACKEND`` is set
    to ``"tensorflow"`` unless the user chose one (the caller checks).

    Returns:
        ``(tensorflow, keras)``.
    """
    if "tensorflow" not in sys.modules and _installed("torch"):
        import_torch()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # TensorFlow's C++ log goes to stderr, where notebooks show it (and the
    # book's build fails on it): start-up banners, and "E"-level lines that
    # depend on the CPU and are no error of the reader's program (oneDNN's
    # float16 fallback without AVX-512 FP16, grappler's optimizer skipping a
    # loop). Level 3 keeps TensorFlow's fatal messages only; Python errors
    # still raise. TensorFlow reads the level once, on import: a user's own
    # choice, set before, is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    level = os.environ["TF_CPP_MIN_LOG_LEVEL"]
    quiet = "tensorflow" not in sys.modules and level.isdigit() and int(level) >= 2
    with _native_stderr_silenced() if quiet else contextlib.nullcontext():
        import keras
        import tensorflow as tf

    return tf, keras


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null, meanwhile.

    TensorFlow 2.21 writes two lines on import (absl's "All log messages
    before absl::InitializeLog() ..." and oneDNN's notice) whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says, and ipykernel 7 forwards descriptor-level
    output into the notebook, where the book's build turns it into
    warnings. Errors still surface: an import that fails raises.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a detached process): nothing to hide
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
