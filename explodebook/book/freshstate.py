"""Inside a kept kernel: put back, between two pages, the state a fresh kernel starts a page in.

`explodebook.book.keptkernel` executes several pages one after another in
one kernel, so that PyTorch and TensorFlow are imported once per worker
instead of once per page. Before the first page the kernel runs
`snapshot` (which imports what every page's ``setup()`` imports, then
records the state a page starts from); before every page it runs
`restore`, which puts back what a page may have changed:

- IPython: the user namespace, the output history and the execution
  counter (``%reset``), open figures and widgets;
- matplotlib's ``rcParams`` (a page's style, or the inline backend's);
- the random generators of Python, NumPy and PyTorch; TensorFlow's global
  seed; Keras' global state (``clear_session``: layer names, seed
  generator, dtype policy) and its ``floatx``/``epsilon``/image format;
- PyTorch's threads, default dtype, grad mode, anomaly detection and
  deterministic-algorithms flag;
- the environment variables, ``sys.path``, the warnings filters and the
  record of warnings already shown (so a warning shows again, as in a
  fresh kernel), and the working directory (the page's folder).

Kept on purpose: imported modules, and the package's caches of immutable
results (`explodebook.cache`'s traces, with read-only arrays, the data sets
of `explodebook.data`, `explodebook.digits.train`'s traces): a page gets the
same values from them as from a fresh run, without the run.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import warnings
from typing import Any

__all__ = ["restore", "snapshot"]

_saved: dict[str, Any] = {}


def snapshot() -> None:
    """Import both frameworks and pyplot as ``setup()`` does, load the plot backend, record the starting state."""
    from explodebook.frameworks import import_tensorflow, import_torch

    torch = import_torch()
    tf, keras = import_tensorflow()
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    # Load the backend now, as a page's first figure would: ipykernel's
    # inline backend then turns on interactive mode (an rcParam), without
    # which a figure a cell draws, but does not return, is never shown.
    plt._get_backend_mod()

    _saved.update(
        environ=dict(os.environ),
        path=list(sys.path),
        filters=list(warnings.filters),
        rc=dict(matplotlib.rcParams),
        random=random.getstate(),
        numpy=np.random.get_state(),
        torch_rng=torch.get_rng_state(),
        torch_threads=torch.get_num_threads(),
        torch_dtype=torch.get_default_dtype(),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        floatx=keras.config.floatx(),
        epsilon=keras.config.epsilon(),
        image_format=keras.config.image_data_format(),
        eager=tf.config.functions_run_eagerly(),
    )


def restore(cwd: str) -> None:
    """Put back the state `snapshot` recorded, and make ``cwd`` the working directory."""
    if not _saved:
        raise RuntimeError("restore() before snapshot(): nothing to restore")
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np
    from IPython import get_ipython

    from explodebook.frameworks import import_tensorflow, import_torch

    torch = import_torch()
    tf, keras = import_tensorflow()

    plt.close("all")
    if "ipywidgets" in sys.modules:  # a page's widgets would stay alive
        sys.modules["ipywidgets"].Widget.close_all()
    shell = get_ipython()
    if shell is not None:
        shell.reset(new_session=True)  # history line numbers start again
        shell.execution_count = 1
    with warnings.catch_warnings():  # deprecated keys warn when set
        warnings.simplefilter("ignore")
        matplotlib.rcParams.update(_saved["rc"])

    keras.backend.clear_session()
    keras.config.set_floatx(_saved["floatx"])
    keras.config.set_epsilon(_saved["epsilon"])
    keras.config.set_image_data_format(_saved["image_format"])
    tf.random.set_seed(None)
    tf.config.run_functions_eagerly(_saved["eager"])

    torch.set_num_threads(_saved["torch_threads"])
    torch.set_default_dtype(_saved["torch_dtype"])
    torch.use_deterministic_algorithms(_saved["deterministic"])
    torch.set_grad_enabled(True)
    torch.autograd.set_detect_anomaly(False)
    torch.set_rng_state(_saved["torch_rng"])
    np.random.set_state(_saved["numpy"])
    random.setstate(_saved["random"])

    os.environ.clear()
    os.environ.update(_saved["environ"])
    sys.path[:] = _saved["path"]
    warnings.filters[:] = _saved["filters"]
    # Forget the warnings already shown ("default"/"once" show a warning
    # once per place): every module's registry is cleared on its next warning.
    warnings._filters_mutated()  # type: ignore[attr-defined]
    os.chdir(cwd)
    gc.collect()
