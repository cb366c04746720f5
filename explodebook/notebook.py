"""`setup`: the one set-up call at the top of every chapter notebook."""

from __future__ import annotations

from explodebook.frameworks import import_tensorflow, import_torch

__all__ = ["setup"]


def setup(*, threads: int | None = 1, style: bool = True) -> None:
    """Load both frameworks in the safe order, size PyTorch's threads, style plots.

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
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads={threads!r} is not allowed: give an integer >= 1 or None")
    torch = import_torch()
    import_tensorflow()
    if threads is not None:
        torch.set_num_threads(threads)
    if style:
        from explodebook import plots

        plots.use_style()
