"""The PyTorch monitor's record: each step's norms kept on the device, read once.

`StepRecord` keeps per step a few 0-d tensors (no synchronisation, no
``.item()``), stacks them every `CHUNK` steps into one tensor to keep
memory small, and hands them over as one ``(n, 1 + 4P)`` float64 array in
the layout of ``Trace.from_parameter_record``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explodebook.frameworks import import_torch

import_torch()

import torch  # noqa: E402

__all__ = ["CHUNK", "StepRecord", "as_loss"]

#: Steps kept as lists of small tensors before they are stacked into one.
CHUNK = 256


def as_loss(loss: torch.Tensor | float) -> torch.Tensor:
    """A step's loss as a 0-d tensor (not read from the device), or a clear error."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"the loss must be a single number, got a tensor of shape {tuple(loss.shape)}"
            )
        loss = loss.detach()  # cast to float64 in bulk, by `StepRecord.values`
        return loss if loss.dim() == 0 else loss.reshape(())
    try:
        return torch.tensor(float(loss), dtype=torch.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"the loss must be a tensor or a number, got {type(loss).__name__}"
        ) from None


class StepRecord:
    """The steps a monitor recorded, as tensors on the model's device.

    Per step, 0-d tensors kept apart by dtype (stacking tensors of mixed
    dtypes is several times slower): the loss; ``3P`` float64 L2 norms
    (gradients, weights, gradients after clipping); ``P`` largest gradient
    elements in the parameters' dtype.

    Args:
        n_params: ``P``, the number of parameters watched.
    """

    def __init__(self, n_params: int) -> None:
        self.n_params = n_params
        self.reset()

    def reset(self) -> None:
        """Forget every step."""
        self.steps: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = []
        self.chunks: list[torch.Tensor] = []  # (k, 1 + 4P) float64
        self.loss_missing: list[bool] = []

    def __len__(self) -> int:
        return len(self.loss_missing)

    def commit(self, loss: torch.Tensor | None, norms: list[torch.Tensor], clipped: Any) -> None:
        """Add a step: its loss (``None``: not seen), ``3P`` norms and ``P`` clipped norms."""
        if len(self.steps) >= CHUNK:
            self.chunks.append(self._stack(self.steps))
            self.steps = []
        self.loss_missing.append(loss is None)
        if loss is None:
            loss = torch.tensor(float("nan"), dtype=torch.float64)
        elif loss.device != norms[0].device:
            loss = loss.to(norms[0].device)
        P = self.n_params
        self.steps.append((loss, [*norms[: 2 * P], *clipped], norms[2 * P :]))

    def set_clipped(self, clipped: Any) -> None:
        """Replace the last step's ``P`` norms after clipping."""
        P = self.n_params
        self.steps[-1][1][2 * P :] = clipped

    def _stack(self, steps: list[tuple[Any, ...]]) -> torch.Tensor:
        # (k, 1 + 4P) float64 in the layout of `Trace.from_parameter_record`
        # (loss, gradient norms, clipped, largest elements, weight norms):
        # three stacks of many 0-d tensors each (stack promotes mixed dtypes).
        P, k = self.n_params, len(steps)
        loss = torch.stack([row[0] for row in steps]).to(torch.float64).reshape(k, 1)
        l2 = torch.stack([v for row in steps for v in row[1]]).to(torch.float64).reshape(k, 3 * P)
        largest = torch.stack([v for row in steps for v in row[2]]).to(torch.float64).reshape(k, P)
        grad, weight, clipped = l2[:, :P], l2[:, P : 2 * P], l2[:, 2 * P :]
        return torch.cat([loss, grad, clipped, largest, weight], dim=1)

    def values(self) -> np.ndarray:
        """Every step, read from the device once: ``(n, 1 + 4P)`` float64."""
        parts = self.chunks + ([self._stack(self.steps)] if self.steps else [])
        return torch.cat(parts).cpu().numpy().astype(np.float64)
