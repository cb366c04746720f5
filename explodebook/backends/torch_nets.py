"""The PyTorch network of a `RunSpec`: build it, load its initial weights, group them by layer.

``nn.Sequential`` blocks of ``nn.Linear`` layers, or an ``nn.RNN`` /
``nn.LSTM`` / ``nn.GRU`` read out by a linear head; the same names,
signatures and order as `explodebook.backends.keras_nets`.
"""

from __future__ import annotations

import numpy as np

from explodebook.frameworks import import_torch

import_torch()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from explodebook.spec import BATCH_NORM_MOMENTUM, NORM_EPSILON, RunSpec  # noqa: E402
from explodebook.weights import GATES, LayerWeights, initial_weights, input_size  # noqa: E402

__all__ = ["build", "load_weights", "layer_weights", "RecurrentRegressor"]


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


_CELLS: dict[str, type[nn.RNNBase]] = {"simple": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


# Keras orders GRU gates z, r, h; PyTorch r, z, n.
_GRU_TO_TORCH = [1, 0, 2]


def _make_norm(kind: str, width: int) -> nn.Module:
    """The normalization layer of ``RunSpec.normalization`` (``"batch"``/``"layer"``)."""
    if kind == "batch":
        # PyTorch weights the *new* batch by its momentum, Keras the old
        # value: Keras' 0.99 is PyTorch's 0.01.
        momentum = round(1.0 - BATCH_NORM_MOMENTUM, 12)
        return nn.BatchNorm1d(width, eps=NORM_EPSILON, momentum=momentum)
    if kind == "layer":
        return nn.LayerNorm(width, eps=NORM_EPSILON)
    raise ValueError(f"normalization={kind!r} is not allowed: choose 'batch' or 'layer'")


class _DenseBlock(nn.Module):
    """One hidden layer: Linear -> normalization (optional) -> activation.

    With ``residual=True`` the block adds its input to its output,
    ``x + act(norm(linear(x)))`` (the input must have ``out_features``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str,
        normalization: str = "none",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = (
            _make_norm(normalization, out_features) if normalization != "none" else nn.Identity()
        )
        self.act = _ACTIVATIONS[activation]()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.norm(self.linear(x)))
        return x + out if self.residual else out


class RecurrentRegressor(nn.Module):
    """A stack of recurrent layers read out by a linear layer at the last step.

    Input ``(batch, seq_len, features)``, output ``(batch, 1)``.
    ``truncation=k`` runs the first ``seq_len - k`` steps without building a
    graph, so gradients flow through the last ``k`` steps only (truncated
    backpropagation through time).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        nonlinearity: str = "tanh",
        truncation: int | None = None,
    ) -> None:
        super().__init__()
        kwargs = {"nonlinearity": nonlinearity} if cell == "simple" else {}
        self.rnn = _CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, **kwargs)
        self.head = nn.Linear(hidden_size, 1)
        self.truncation = truncation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None
        cut = x.shape[1] - (self.truncation or x.shape[1])
        if cut > 0:
            with torch.no_grad():  # the state carries over, its history does not
                _, state = self.rnn(x[:, :cut])
        out, _ = self.rnn(x[:, cut:], state)
        return self.head(out[:, -1])


def build(spec: RunSpec) -> nn.Module:
    """The network a spec describes, with its initial weights loaded.

    Returns:
        an ``nn.Sequential`` MLP mapping ``(batch, 20)`` to ``(batch, 1)``,
        or a `RecurrentRegressor` mapping ``(batch, seq_len, 2)`` to
        ``(batch, 1)``.
    """
    torch.manual_seed(spec.seed)
    if spec.model == "mlp" and (spec.normalization != "none" or spec.residual):
        blocks: list[nn.Module] = []
        fan_in = input_size(spec)
        for k in range(spec.depth):
            blocks.append(
                _DenseBlock(
                    fan_in, spec.width, spec.activation, spec.normalization, spec.residual and k > 0
                )
            )
            fan_in = spec.width
        model: nn.Module = nn.Sequential(*blocks, nn.Linear(fan_in, 1))
    elif spec.model == "mlp":
        act = _ACTIVATIONS[spec.activation]
        modules: list[nn.Module] = []
        fan_in = input_size(spec)
        for _ in range(spec.depth):
            modules += [nn.Linear(fan_in, spec.width), act()]
            fan_in = spec.width
        modules.append(nn.Linear(fan_in, 1))
        model = nn.Sequential(*modules)
    else:
        model = RecurrentRegressor(
            spec.cell,
            input_size(spec),
            spec.width,
            spec.depth,
            nonlinearity=spec.activation,
            truncation=spec.truncation,
        )
    load_weights(model, spec, initial_weights(spec))
    return model


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _norm_blocks(model: nn.Module) -> list[_DenseBlock]:
    # Hidden blocks with a normalization layer, input to output.
    return [
        m for m in model.modules() if isinstance(m, _DenseBlock) and not isinstance(m.norm, nn.Identity)
    ]


def load_weights(model: nn.Module, spec: RunSpec, weights: list[LayerWeights]) -> None:
    """Copy canonical (Keras-layout) weights into a model made by `build`.

    For simple and LSTM cells PyTorch has two redundant biases per layer
    (``bias_ih`` and ``bias_hh``, added together); Keras has one. The
    canonical bias goes into ``bias_ih`` and ``bias_hh`` is fixed at zero
    and frozen, so both frameworks train the same parameters.
    """
    with torch.no_grad():
        if spec.model == "mlp":
            for linear, w in zip(_linear_layers(model), weights, strict=True):
                linear.weight.copy_(torch.from_numpy(w["kernel"].T.copy()))
                linear.bias.copy_(torch.from_numpy(w["bias"]))
            for block, w in zip(_norm_blocks(model), weights, strict=False):
                block.norm.weight.copy_(torch.from_numpy(w["gamma"]))
                block.norm.bias.copy_(torch.from_numpy(w["beta"]))
                if isinstance(block.norm, nn.BatchNorm1d):
                    block.norm.reset_running_stats()
            return
        rnn = model.rnn
        gates = GATES[spec.cell]
        for k, w in enumerate(weights[:-1]):
            tensors = {
                "weight_ih": w["kernel"].T,
                "weight_hh": w["recurrent_kernel"].T,
                "bias_ih": w["bias"],
                "bias_hh": w.get("recurrent_bias", np.zeros_like(w["bias"])),
            }
            for name, value in tensors.items():
                if spec.cell == "gru":
                    value = _permute_gates(value, gates)
                getattr(rnn, f"{name}_l{k}").copy_(torch.from_numpy(np.ascontiguousarray(value)))
            if spec.cell != "gru":
                getattr(rnn, f"bias_hh_l{k}").requires_grad_(False)
        model.head.weight.copy_(torch.from_numpy(weights[-1]["kernel"].T.copy()))
        model.head.bias.copy_(torch.from_numpy(weights[-1]["bias"]))


def _permute_gates(value: np.ndarray, gates: int) -> np.ndarray:
    blocks = np.split(value, gates, axis=0)
    return np.concatenate([blocks[i] for i in _GRU_TO_TORCH], axis=0)


def layer_weights(model: nn.Module, spec: RunSpec) -> list[list[nn.Parameter]]:
    """Trainable parameters grouped by layer, in ``layer_names(spec)`` order."""
    if spec.model == "mlp":
        groups = [[m.weight, m.bias] for m in _linear_layers(model)]
        # A normalization layer's gamma and beta belong to its hidden layer.
        for group, block in zip(groups, _norm_blocks(model), strict=False):
            group += [block.norm.weight, block.norm.bias]
        return groups
    groups = [
        [p for name, p in model.rnn.named_parameters() if name.endswith(f"_l{k}") and p.requires_grad]
        for k in range(spec.depth)
    ]
    return groups + [[model.head.weight, model.head.bias]]
