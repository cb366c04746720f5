"""The Keras monitor's in-graph reductions: a step's per-layer norms in a few fused ops."""

from __future__ import annotations

import numpy as np

from explodebook.frameworks import import_tensorflow

tf, keras = import_tensorflow()

__all__ = ["LayerReducer"]


class LayerReducer:
    """Per-layer norms of the gradients and weights in a handful of fused ops.

    One op per variable per quantity (cast, square, sum) would put dozens of
    tiny ops into every step, and the compiled loop's cost is mostly per op,
    not per element. Instead all gradients and weights are flattened into
    one vector and reduced per layer with ``unsorted_segment_sum`` /
    ``_max``. Values are cast to float64 first, so a norm is finite exactly
    when every element is (a float32 sum of squares could overflow).

    Args:
        groups: the variables of each layer (``L`` groups).
    """

    def __init__(self, groups: list[list[keras.Variable]]) -> None:
        ids = np.concatenate(
            [
                np.full(int(np.prod(v.shape)), layer, np.int32)
                for layer, group in enumerate(groups)
                for v in group
            ]
        )
        self.n_layers = n_layers = len(groups)
        self.n_grad = len(ids)
        self.grad_segments = tf.constant(ids)
        # Gradients to segments 0..L-1, weights to L..2L-1.
        self.segments = tf.constant(np.concatenate([ids, ids + n_layers]))

    @staticmethod
    def _flat(values: list[tf.Tensor]) -> tf.Tensor:
        return tf.cast(tf.concat([tf.reshape(v, [-1]) for v in values], axis=0), tf.float64)

    def l2(self, grads: list[tf.Tensor]) -> tf.Tensor:
        """``(L,)`` float64 L2 norm per layer of gradients (all layers, in order)."""
        squares = tf.square(self._flat(grads))
        return tf.sqrt(tf.math.unsorted_segment_sum(squares, self.grad_segments, self.n_layers))

    def record(
        self, grads: list[tf.Tensor], weights: list[tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-layer gradient L2 norms, largest ``|gradient|`` and weight norms.

        Returns:
            three ``(L,)`` float64 tensors.
        """
        L = self.n_layers
        flat = self._flat(grads + weights)
        norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(flat), self.segments, 2 * L))
        grad_norms = norms[:L]
        largest = tf.math.unsorted_segment_max(
            tf.abs(flat[: self.n_grad]), self.grad_segments, L
        )
        # segment_max skips NaN (comparisons with NaN are false); a layer
        # with a NaN has a NaN norm, so put it back from there.
        largest = tf.where(tf.math.is_nan(grad_norms), grad_norms, largest)
        return grad_norms, largest, norms[L:]
