"""The mechanism of exploding and vanishing gradients, in plain numpy.

Backpropagation multiplies one Jacobian per layer (or per time step). The
norm of that product can grow or shrink exponentially with its length: this
module computes such products without overflowing, the bound that links
them to the largest singular value of a weight matrix, the sufficient and
necessary conditions of Pascanu, Mikolov & Bengio (2013), per-step gradient
norms of a tiny RNN and per-layer gradient norms of a deep MLP at
initialization, and how many multiplications it takes to overflow a
floating-point format.

No deep-learning framework is imported here, so chapters can show the
mechanism before they show a framework.

References:
    Bengio, Simard & Frasconi (1994), "Learning long-term dependencies with
    gradient descent is difficult", IEEE Trans. Neural Networks 5(2).
    Pascanu, Mikolov & Bengio (2013), "On the difficulty of training
    recurrent neural networks", ICML, section 2.1.
    Goodfellow, Bengio & Courville (2016), "Deep Learning", sections 8.2.5
    (cliffs and exploding gradients) and 10.7 (long-term dependencies).
    Zhang, Lipton, Li & Smola, "Dive into Deep Learning", section 5.4
    (numerical stability and initialization).
"""

from __future__ import annotations

from explodebook.theory.networks import MLPGradients, mlp_backprop_norms, rnn_backprop_norms
from explodebook.theory.overflow import FLOAT_LIMITS, overflow_steps
from explodebook.theory.products import (
    ACTIVATION_DERIVATIVE_BOUND,
    PascanuCondition,
    RandomProduct,
    gradient_bound,
    largest_singular_value,
    matrix_product_norms,
    pascanu_condition,
    random_matrix_product,
    spectral_radius,
)

__all__ = [
    "ACTIVATION_DERIVATIVE_BOUND",
    "FLOAT_LIMITS",
    "MLPGradients",
    "PascanuCondition",
    "RandomProduct",
    "gradient_bound",
    "largest_singular_value",
    "matrix_product_norms",
    "mlp_backprop_norms",
    "overflow_steps",
    "pascanu_condition",
    "random_matrix_product",
    "rnn_backprop_norms",
    "spectral_radius",
]
