"""One flat float32 vector per training step, reduced to a trace's rows later.

Both backends record a step the same cheap way: they copy the loss, every
gradient element and every weight element (and, when the spec clips, every
gradient element after clipping) into one flat float32 vector, and do no
arithmetic on it in the training loop. `FlatLayout.rows` then turns a block
of such vectors into the per-layer norms of `Trace.from_record`, vectorised
over the block's steps.

Why: the networks are tiny, so a step's cost is mostly the fixed cost of
each operation the framework dispatches, not arithmetic. Computing norms
per step took about a dozen extra small operations per step in PyTorch and
some thirty graph ops in Keras; one copy takes a single operation in PyTorch
and one concatenation in Keras (``benchmarks/run.py`` measures both).

Norms are computed in float64, so a norm is finite exactly when every
element it covers is: float64 squares of float32 values cannot overflow.

Layout of one step's vector, ``P`` gradient (= weight) elements in all::

    [loss | gradients (P) | weights (P) | clipped gradients (P, if clipping)]

Gradients and weights are in layer order, input to output, each parameter
flattened in its framework's own element order (the norms do not depend on
it). Each layer's elements are therefore one contiguous range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explodebook.trace import locate_nonfinite

__all__ = ["FlatLayout", "FLUSH_BYTES", "first_nonfinite_row"]

#: Backends reduce their pending step vectors to rows once they hold about
#: this many bytes (and at least every 32 steps), bounding the memory a run
#: needs for recording, however large the network.
FLUSH_BYTES = 8_000_000


@dataclass(frozen=True)
class FlatLayout:
    """Where each layer's values lie in a step's flat vector.

    Args:
        layer_sizes: number of gradient elements of each of the ``L``
            layers (all its parameters together), input to output.
        clipping: whether the vector ends with the clipped gradients.
    """

    layer_sizes: tuple[int, ...]
    clipping: bool = False

    @classmethod
    def of(cls, groups: Sequence[Sequence[Sequence[int]]], clipping: bool = False) -> FlatLayout:
        """The layout for parameter shapes grouped by layer (``groups[layer][param]``)."""
        return cls(tuple(int(sum(np.prod(s, dtype=np.int64) for s in g)) for g in groups), clipping)

    @property
    def n_elements(self) -> int:
        """The number ``P`` of gradient elements in all layers (also of weight elements)."""
        return sum(self.layer_sizes)

    @property
    def width(self) -> int:
        """The length of one step's vector, ``1 + 2P`` (``1 + 3P`` when clipping)."""
        return 1 + (3 if self.clipping else 2) * self.n_elements

    def steps_per_flush(self, limit: int = 32) -> int:
        """How many pending step vectors fit in `FLUSH_BYTES` (1 to ``limit``)."""
        return max(1, min(limit, FLUSH_BYTES // (4 * self.width)))

    def rows(self, flat: np.ndarray) -> np.ndarray:
        """Reduce step vectors to the rows `Trace.from_record` reads.

        Args:
            flat: ``(n, width)`` float32 step vectors.

        Returns:
            ``(n, 2 + 4 * L)`` float64: loss, global gradient norm, then per
            layer the gradient norm, the clipped gradient norm, the largest
            absolute gradient element and the weight norm.

        A NaN anywhere in a layer makes its norms and its largest element
        NaN (``np.maximum`` propagates NaN); an infinity makes them infinite.
        """
        if flat.ndim != 2 or flat.shape[1] != self.width:
            raise ValueError(f"flat must have shape (n, {self.width}), got {flat.shape}")
        P, L = self.n_elements, len(self.layer_sizes)
        starts = np.cumsum((0, *self.layer_sizes[:-1]))
        blocks = 3 if self.clipping else 2
        # Squares of every gradient, weight and clipped-gradient element in
        # one float64 copy, then one sum per layer and block: each layer's
        # elements are contiguous, so np.add.reduceat sums them without
        # mixing layers (a NaN or inf stays in its own layer).
        squares = flat[:, 1:].astype(np.float64)
        np.square(squares, out=squares)
        sums = np.add.reduceat(squares, np.concatenate([starts + k * P for k in range(blocks)]), axis=1)
        grad_sq, weight_sq = sums[:, :L], sums[:, L : 2 * L]
        clipped_sq = sums[:, 2 * L :] if self.clipping else grad_sq
        largest = np.maximum.reduceat(np.abs(flat[:, 1 : 1 + P]), starts, axis=1).astype(np.float64)
        return np.column_stack(
            [
                flat[:, 0].astype(np.float64),
                np.sqrt(grad_sq.sum(axis=1)),
                np.sqrt(grad_sq),
                np.sqrt(clipped_sq),
                largest,
                np.sqrt(weight_sq),
            ]
        )


def first_nonfinite_row(rows: np.ndarray) -> int | None:
    """Index of the first row (as made by `FlatLayout.rows`) with a non-finite
    loss, gradient norm or weight norm; None if there is none.

    The trace's own rule, `explodebook.trace.locate_nonfinite`: a clipped
    norm alone does not count.
    """
    L = (rows.shape[1] - 2) // 4
    return locate_nonfinite(rows[:, 0], rows[:, 2 : 2 + L], rows[:, 2 + 3 * L :], [""] * L)[0]
