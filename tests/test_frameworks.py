"""PyTorch and TensorFlow in one process: triton's import order, and threads.

The CUDA build of PyTorch ships triton, and triton's native library crashes
the process (segmentation fault) when it loads after TensorFlow's. The
project's own environment has PyTorch's CPU wheel, without triton, so these
tests put a stand-in `triton` package on the path that crashes the same
way (``os._exit(139)`` when first loaded after TensorFlow) and is otherwise
absent (an ImportError, which PyTorch handles). `make test-cuda` runs the
same scenarios with the real CUDA build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

FAKE_TRITON = '''
import os
import sys

if not getattr(sys, "_fake_triton_native_loaded", False):
    if "tensorflow" in sys.modules:
        sys.stderr.write("fake triton: native library loaded after TensorFlow\\n")
        sys.stderr.flush()
        os._exit(139)
    sys._fake_triton_native_loaded = True
raise ImportError("fake triton: no Python API")
'''

OPTIMIZER = "import torch; torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1)\n"


@pytest.fixture(scope="module")
def fake_triton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake_triton")
    (root / "triton").mkdir()
    (root / "triton" / "__init__.py").write_text(FAKE_TRITON)
    return root


def run_python(code: str, fake_triton: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join([str(fake_triton), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + "print('survived')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_stand_in_crashes_like_triton(fake_triton: Path) -> None:
    # Without the package: the reader's order, then an optimizer, crashes.
    result = run_python("import torch, tensorflow\n" + OPTIMIZER, fake_triton)
    assert result.returncode == 139, result.stderr[-2000:]


def test_torch_run_after_the_reader_imported_tensorflow(fake_triton: Path) -> None:
    # The reproduction: import torch; import tensorflow; run(...).
    result = run_python(
        """
        import torch
        import tensorflow
        from explodebook import RunSpec, run
        run(RunSpec(global_clipnorm=1.0, steps=20), "torch")
        """ + OPTIMIZER,
        fake_triton,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout
    assert "TritonHiddenWarning" in result.stderr


def test_import_explodebook_protects_the_readers_own_optimizer(fake_triton: Path) -> None:
    result = run_python("import tensorflow\nimport explodebook\n" + OPTIMIZER, fake_triton)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    "first",
    [
        "from explodebook.notebook import setup; setup()",
        "import explodebook.backends.torch",
        "import explodebook.backends.keras",
        "import explodebook.monitor.torch",
        "import explodebook.monitor.keras",
    ],
)
def test_after_the_packages_imports_tensorflow_then_an_optimizer_is_safe(
    fake_triton: Path, first: str
) -> None:
    result = run_python(
        first + "\nimport sys\nimport tensorflow\n" + OPTIMIZER
        + "assert sys._fake_triton_native_loaded\n",
        fake_triton,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TritonHiddenWarning" not in result.stderr


def test_setup_gives_torch_one_thread_and_checks_its_argument() -> None:
    from explodebook.notebook import setup

    before = torch.get_num_threads()
    try:
        setup(threads=1, style=False)
        assert torch.get_num_threads() == 1
        setup(threads=None, style=False)
        assert torch.get_num_threads() == 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="threads=.* is not allowed"):
                setup(threads=bad, style=False)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)


def test_monitor_uses_one_thread_for_a_small_model_and_restores() -> None:
    from explodebook.monitor.torch import SMALL_MODEL_PARAMETERS, GradientMonitor

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = torch.nn.Linear(10, 1)
        optimizer = torch.optim.SGD(small.parameters(), lr=0.1)
        with GradientMonitor(small, optimizer):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2

        with GradientMonitor(small, optimizer, threads=None):
            assert torch.get_num_threads() == 2

        big = torch.nn.Linear(SMALL_MODEL_PARAMETERS, 1)
        with GradientMonitor(big, torch.optim.SGD(big.parameters(), lr=0.1)):
            assert torch.get_num_threads() == 2

        monitor = GradientMonitor(small, optimizer, threads=3)
        assert torch.get_num_threads() == 3
        monitor.close()
        monitor.close()  # idempotent: restores once
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads=-1 is not allowed"):
            GradientMonitor(small, optimizer, threads=-1)
    finally:
        torch.set_num_threads(before)


def test_tensorflow_writes_nothing_to_stderr_at_run_time() -> None:
    # On CPUs without AVX-512 FP16, TensorFlow 2.21 logs an "E"-level line
    # (oneDNN's float16 fallback) on the first float16 op; a notebook shows it
    # as stderr and the book's -W build fails on it. Not an error of the
    # reader's program: the package keeps TensorFlow's C++ log quiet unless
    # the user set TF_CPP_MIN_LOG_LEVEL.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = textwrap.dedent(
        """
        from explodebook.frameworks import import_tensorflow
        tf, keras = import_tensorflow()
        x = keras.ops.convert_to_tensor(60000.0, "float16") * 2
        print(float(x))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["inf"]
    assert done.stderr == ""


def test_setup_says_what_it_loads_then_which_versions_run(monkeypatch) -> None:
    # Run All waits 5-15 s on the first cell while both frameworks load: the
    # status line says so, then names the versions (what the page shows).
    import IPython.display

    import keras
    import tensorflow as tf

    from explodebook.notebook import setup

    shown: list[str] = []

    class Handle:
        def update(self, obj) -> None:
            shown.append(obj.data)

    def display(obj, display_id=None):
        assert display_id is True
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    threads = torch.get_num_threads()
    try:
        setup(status=True, style=False)
    finally:
        torch.set_num_threads(threads)
    assert shown == [
        "Loading PyTorch\u2026",
        "Loading TensorFlow and Keras\u2026",
        f"PyTorch {torch.__version__}, Keras {keras.__version__} on TensorFlow {tf.__version__}: ready.",
    ]
    shown.clear()
    setup(status=False, style=False, threads=None)
    assert shown == []  # outside a kernel (the default there), nothing is shown
