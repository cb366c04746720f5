"""`explodebook.book.keptkernel`: pages executed in one kept kernel give a fresh kernel's outputs.

Two checks. A page written to leave every kind of state behind (variables,
rcParams, random state, Keras names and dtype policy, PyTorch settings,
warnings already shown, environment, working directory) is followed by a
page that shows all of it: the second page's outputs after the first, in a
kept kernel, must be those of the second page alone in a fresh kernel
(without `explodebook.book.freshstate.restore` they are not). Then two
of the book's pages are executed both ways, one after another in the same
kept kernel, and compared.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from explodebook.book.expressions import ExpressionClient
from explodebook.book.keptkernel import KeptKernel, comparable
from explodebook.book.sources import read_config, read_notebook

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# Every page starts with setup(), as the book's pages do.
SETUP = "from explodebook.notebook import setup\nsetup(status=False)"

MESS = [
    SETUP,
    """
import os, warnings, random
import numpy as np, torch, keras, matplotlib
left_behind = 1
import matplotlib.pyplot as plt
plt.plot([1, 2])  # loads the inline backend
matplotlib.rcParams["lines.linewidth"] = 7.0
np.random.seed(5); random.seed(5); torch.manual_seed(5)
keras.config.set_floatx("float64")
keras.mixed_precision.set_global_policy("mixed_float16")
keras.layers.Dense(1); keras.layers.Dense(1)
torch.set_default_dtype(torch.float64)
torch.set_grad_enabled(False)
os.environ["EXPLODEBOOK_LEFT_BEHIND"] = "yes"
warnings.warn("shown once per place", UserWarning)
os.chdir("/")
""",
]

SHOW = [
    SETUP,
    """
import os, sys, warnings, random
import numpy as np, torch, keras, matplotlib
import matplotlib.pyplot as plt
print("left_behind" in globals(), matplotlib.rcParams["lines.linewidth"])
print(keras.config.floatx(), keras.config.dtype_policy().name, keras.layers.Dense(1).name)
print(torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads())
print(os.environ.get("EXPLODEBOOK_LEFT_BEHIND"), os.path.basename(os.getcwd()))
print(np.random.seed(3) or np.random.rand(), random.seed(3) or random.random(), torch.manual_seed(3) and torch.rand(1).item())
""",
    """
import warnings
warnings.warn("shown once per place", UserWarning)  # in a fresh kernel: shown
""",
    # drawn, not returned: shown by the inline backend after the cell
    "fig, ax = plt.subplots()\nfor y in ([0, 1], [1, 0]):\n    ax.plot(y)\nprint(plt.get_fignums())",
]


def notebook(cells: list[str]) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source.strip()) for source in cells]
    return nb


def fresh(nb: Any, path: Path) -> Any:
    """``nb`` executed as the prebuild did: a kernel of its own."""
    nb = copy.deepcopy(nb)
    ExpressionClient(nb, resources={"metadata": {"path": str(path.parent)}}, timeout=600).execute()
    return nb


@pytest.fixture(autouse=True)
def inline_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels draw figures inline, as in the prebuild (``make test`` sets ``MPLBACKEND=agg``)."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


@pytest.fixture(scope="module")
def kernel():
    kept = KeptKernel()
    yield kept
    kept.shutdown()


def test_a_page_after_another_in_a_kept_kernel_shows_what_it_shows_alone(kernel: KeptKernel, tmp_path: Path) -> None:
    page = tmp_path / "page.ipynb"
    expected = fresh(notebook(SHOW), page)
    assert "stderr" in json.dumps(expected.cells[2].outputs)  # the warning, shown
    assert "image/png" in json.dumps(expected.cells[3].outputs)  # the figure, shown
    kernel.execute(ExpressionClient, notebook(MESS), page, timeout=600)
    after = notebook(SHOW)
    cpu = kernel.execute(ExpressionClient, after, page, timeout=600)
    assert comparable(after) == comparable(expected)
    assert cpu > 0


def test_an_error_in_a_page_leaves_the_next_page_fresh(kernel: KeptKernel, tmp_path: Path) -> None:
    from nbclient.exceptions import CellExecutionError

    page = tmp_path / "page.ipynb"
    with pytest.raises(CellExecutionError):
        kernel.execute(ExpressionClient, notebook(["x_left = 1", "1 / 0"]), page, timeout=600)
    after = notebook(["print('x_left' in globals())"])
    kernel.execute(ExpressionClient, after, page, timeout=600)
    assert after.cells[0].outputs[0]["text"] == "False\n"


def test_a_dead_kernel_is_replaced(kernel: KeptKernel, tmp_path: Path) -> None:
    page = tmp_path / "page.ipynb"
    kernel.execute(ExpressionClient, notebook(["import os", "print(os.getpid())"]), page, timeout=600)
    from jupyter_core.utils import run_sync

    run_sync(kernel.km.shutdown_kernel)(now=True)
    nb = notebook(["print(6 * 7)"])
    kernel.execute(ExpressionClient, nb, page, timeout=600)
    assert nb.cells[0].outputs[0]["text"] == "42\n"


# 10c sets Keras' mixed precision policy and trains in 16 bits; 08 trains
# Keras models after it and draws a figure it does not return (shown only
# if the inline backend's interactive mode survives the restore). Not 09 or
# 11a: they show times measured as they run, different in any two kernels.
# benchmarks/book_build.py compares every page the same way.
BOOK_PAGES = ["chapters/10c_mixed_precision.md", "chapters/08_weight_regularization.md"]


def test_book_pages_in_a_kept_kernel_give_a_fresh_kernels_outputs(kernel: KeptKernel) -> None:
    config = read_config(ROOT)
    for name in BOOK_PAGES:
        read = read_notebook(ROOT / name, config)
        assert read is not None
        nb = read[0]
        alone = fresh(nb, ROOT / name)
        kept = copy.deepcopy(nb)
        kernel.execute(ExpressionClient, kept, ROOT / name, timeout=600)
        got, expected = comparable(kept), comparable(alone)
        differ = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
        assert len(got) == len(expected) and not differ, f"{name}: cells {differ} differ, first:\n{got[differ[0]]}\n{expected[differ[0]]}"
