"""`setup`: the one set-up call at the top of every chapter notebook (and `in_kernel`)."""

from __future__ import annotations

from explodebook.frameworks import import_tensorflow, import_torch

__all__ = ["setup", "in_kernel"]


def setup(*, threads: int | None = 1, style: bool = True, status: bool | None = None) -> None:
    """Load both frameworks in the safe order, size PyTorch's threads, style plots.

    Loading PyTorch and TensorFlow takes 5-15 s on a laptop, during which
    Run All shows nothing but ``[*]``: in a notebook, one status line says
    what is loading, and then which versions run the chapter (the line the
    book's pages show).

    - PyTorch (and triton, which its CUDA build ships) loads before
      TensorFlow: triton loaded after TensorFlow crashes the process
      (`explodebook.frameworks`), so a reader's own PyTorch code after this
      call is safe.
    - PyTorch gets ``threads`` intra-op threads. The book's networks are
      tiny: a second thread gains little, and on a machine whose other
      core is busy (another process, or TensorFlow's own thread pools in
      the same kernel) PyTorch's OpenMP threads wait for each other at
      every operation, which made an ordinary training loop run up to 50
      times slower in our measurements. One thread is steady.
    - ``style``: apply the book's matplotlib style (`plots.style.use_style`).

    Args:
        threads: PyTorch intra-op threads (``torch.set_num_threads``), or
            ``None`` to leave PyTorch's default (one per core).
        style: apply the book's plot style.
        status: show the status line; default: in a Jupyter kernel.
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads={threads!r} is not allowed: give an integer >= 1 or None")
    say = _status_line() if (in_kernel() if status is None else status) else (lambda text: None)
    say("Loading PyTorch\u2026")
    torch = import_torch()
    say("Loading TensorFlow and Keras\u2026")
    tf, keras = import_tensorflow()
    say(f"PyTorch {torch.__version__}, Keras {keras.__version__} on TensorFlow {tf.__version__}: ready.")
    if threads is not None:
        torch.set_num_threads(threads)
    if style:
        from explodebook import plots

        plots.use_style()


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (where widgets' events arrive as messages)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _status_line():
    """A function that shows its text on one output line, replacing the last."""
    from IPython.display import Pretty, display

    handle = None

    def say(text: str) -> None:
        nonlocal handle
        if handle is None:
            handle = display(Pretty(text), display_id=True)
        else:
            handle.update(Pretty(text))

    return say
