"""Initial weights, drawn once in numpy and loaded into either framework.

Drawing the weights here (not with ``torch.nn.init`` or a Keras
initializer) is what makes a PyTorch run and a Keras run of the same
`RunSpec` start from *identical* weights, so their traces can be compared
step by step. The distributions are the frameworks' own: ``"he"`` is
``torch.nn.init.kaiming_uniform_(nonlinearity="relu")`` and Keras
``"he_uniform"``; ``"xavier"`` is ``xavier_uniform_`` and
``"glorot_uniform"``.

Weights are stored in one canonical layout, Keras', for every layer:

* dense layer: ``kernel`` ``(fan_in, units)``, ``bias`` ``(units,)``; a
  hidden dense layer followed by a normalization layer
  (``RunSpec.normalization``) also has that layer's ``gamma`` (scale,
  starts at 1) and ``beta`` (shift, starts at 0), ``(units,)`` each;
* recurrent layer with ``G`` gates (simple 1, LSTM 4, GRU 3):
  ``kernel`` ``(fan_in, G * units)``, ``recurrent_kernel``
  ``(units, G * units)``, ``bias`` ``(G * units,)``; a GRU also has
  ``recurrent_bias`` ``(G * units,)`` (the ``reset_after`` form that Keras 3
  and PyTorch share). Gate order is Keras': LSTM ``i, f, c, o`` (PyTorch's
  ``i, f, g, o`` is the same), GRU ``z, r, h`` (PyTorch's is ``r, z, n``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from explodebook.spec import check_choice

if TYPE_CHECKING:
    from explodebook.spec import RunSpec

__all__ = ["LayerWeights", "GATES", "layer_names", "input_size", "initial_weights", "init_matrix"]

#: A layer's parameters by canonical name (see module docstring).
LayerWeights = dict[str, np.ndarray]

#: Gate blocks per recurrent cell.
GATES = {"simple": 1, "lstm": 4, "gru": 3}


def input_size(spec: RunSpec) -> int:
    """Features per sample (MLP) or per time step (RNN)."""
    return 2 if spec.task == "adding" else 20


def layer_names(spec: RunSpec) -> list[str]:
    """Names of the layers, input to output, as used in every `Trace`.

    ``["dense_1", ..., "dense_D", "output"]`` for an MLP and
    ``["<cell>_1", ..., "<cell>_D", "output"]`` for an RNN.
    """
    stem = "dense" if spec.model == "mlp" else spec.cell
    return [f"{stem}_{i}" for i in range(1, spec.depth + 1)] + ["output"]


def init_matrix(
    kind: str, fan_in: int, fan_out: int, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """One ``(fan_in, fan_out)`` weight matrix drawn from ``kind``, times ``scale``.

    Args:
        kind: ``"he"``, ``"xavier"``, ``"normal"`` or ``"orthogonal"``.
        fan_in, fan_out: the matrix shape.
        scale: multiplies the matrix (the gain, for ``"orthogonal"``).
        rng: the generator to draw from.

    Returns:
        float32 array of shape ``(fan_in, fan_out)``.
    """
    kind = check_choice("init", kind)
    if kind == "he":
        limit = np.sqrt(6.0 / fan_in)
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
    elif kind == "xavier":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
    elif kind == "normal":
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, fan_out))
    else:  # "orthogonal"
        # QR of a Gaussian matrix, with the sign fix that makes Q uniformly
        # distributed (Mezzadri 2007), as torch and Keras both do.
        a = rng.normal(size=(max(fan_in, fan_out), min(fan_in, fan_out)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        w = q if fan_in >= fan_out else q.T
    return (scale * w).astype(np.float32)


def _gated(
    kind: str, fan_in: int, units: int, gates: int, scale: float, rng: np.random.Generator
) -> np.ndarray:
    # One block per gate, so that each gate's matrix has the distribution
    # (and, for orthogonal, the singular values) the spec asks for.
    return np.concatenate(
        [init_matrix(kind, fan_in, units, scale, rng) for _ in range(gates)], axis=1
    )


def initial_weights(spec: RunSpec) -> list[LayerWeights]:
    """The initial weights of the network a spec describes.

    Biases start at zero, except an LSTM's forget-gate bias, which starts at
    1 (Keras' ``unit_forget_bias=True`` default, after Jozefowicz et al.
    2015). The output layer is a dense layer with one unit, initialized
    Glorot uniform with scale 1 whatever the spec says.

    Returns:
        one `LayerWeights` per name in ``layer_names(spec)``, in that order.
    """
    rng = np.random.default_rng([spec.seed, 1])
    fan_in = input_size(spec)
    layers: list[LayerWeights] = []
    for _ in range(spec.depth):
        if spec.model == "mlp":
            layer = {
                "kernel": init_matrix(spec.init, fan_in, spec.width, spec.init_scale, rng),
                "bias": np.zeros(spec.width, np.float32),
            }
            if spec.normalization != "none":
                layer["gamma"] = np.ones(spec.width, np.float32)
                layer["beta"] = np.zeros(spec.width, np.float32)
            layers.append(layer)
        else:
            gates = GATES[spec.cell]
            layer = {
                "kernel": _gated(spec.init, fan_in, spec.width, gates, spec.init_scale, rng),
                "recurrent_kernel": _gated(
                    spec.init, spec.width, spec.width, gates, spec.init_scale, rng
                ),
                "bias": np.zeros(gates * spec.width, np.float32),
            }
            if spec.cell == "lstm":
                layer["bias"][spec.width : 2 * spec.width] = 1.0
            if spec.cell == "gru":
                layer["recurrent_bias"] = np.zeros(gates * spec.width, np.float32)
            layers.append(layer)
        fan_in = spec.width
    # The output head is fixed (Glorot uniform, scale 1: Keras' Dense
    # default, as in the classic example); the spec's init and scale are
    # about the hidden stack, the part that repeats.
    layers.append(
        {
            "kernel": init_matrix("xavier", fan_in, 1, 1.0, rng),
            "bias": np.zeros(1, np.float32),
        }
    )
    return layers
