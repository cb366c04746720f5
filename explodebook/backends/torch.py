"""PyTorch backend: ``run(spec)`` trains the network of a spec and records it into a `Trace`.

Written the PyTorch way: ``nn.Sequential`` / ``nn.RNN``-family modules, a
plain training loop, ``torch.nn.utils.clip_grad_norm_`` and
``clip_grad_value_`` for clipping, and an explicit L1/L2 penalty added to
the loss. The Keras backend (`explodebook.backends.keras`) has the same
public names and produces the same trace for the same spec. The networks
themselves (``build``, ``load_weights``, ``layer_weights``,
``RecurrentRegressor``) are built in `explodebook.backends.torch_nets` and
importable from here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explodebook.frameworks import import_torch, torch_threads

# torch, and triton when installed, before TensorFlow can be (see
# explodebook.frameworks): this makes a reader's later TensorFlow import safe.
import_torch()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from explodebook import budget
from explodebook.backends import PUBLIC_NAMES
from explodebook.backends.common import TrainingLoop, run_within_budget
from explodebook.backends.torch_nets import RecurrentRegressor, build, layer_weights, load_weights
from explodebook.data import batch_indices, dataset_for
from explodebook.spec import RunSpec
from explodebook.flat import FlatLayout, first_nonfinite_row
from explodebook.trace import Trace

__all__ = list(PUBLIC_NAMES)  # the same names, in the same order, in both


#: `run` gathers the batches of this many steps from the data set at once,
#: fewer if they would take more than `GATHER_BYTES`.
GATHER_STEPS = 200
GATHER_BYTES = 8_000_000


def _warmup_factor(warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of step ``t`` (from 0) for ``LambdaLR``: linear warm-up."""

    def factor(t: int) -> float:
        return min(1.0, (t + 1) / warmup_steps)

    return factor


def make_optimizer(spec: RunSpec, weights: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The spec's optimizer over ``weights`` (clipping is a separate call in PyTorch).

    The warm-up, if any, is a ``LambdaLR`` scheduler on top of it (`run`).
    """
    # foreach=False: with a handful of small parameters, the plain
    # per-tensor update is faster than the batched one (fewer temporary
    # lists and ops per step) and gives bit-identical weights.
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            weights, lr=spec.learning_rate, momentum=spec.momentum, foreach=False
        )
    # eps: PyTorch's default 1e-8, which the Keras backend uses too.
    return torch.optim.Adam(
        weights, lr=spec.learning_rate, betas=(spec.momentum, 0.999), foreach=False
    )


def _penalized(model: nn.Module, spec: RunSpec) -> list[torch.Tensor]:
    # Kernels and recurrent kernels, not biases: what Keras'
    # kernel_regularizer and recurrent_regularizer cover (a normalization
    # layer's gamma, also called "weight" in PyTorch, is not one).
    return [
        p
        for name, p in model.named_parameters()
        if "weight" in name and "norm" not in name.split(".")
    ]


def _clip(params: list[nn.Parameter], spec: RunSpec) -> None:
    clipping = spec.clipping
    if clipping is None:
        return
    mode, threshold = clipping
    if mode == "global_clipnorm":
        nn.utils.clip_grad_norm_(params, threshold)
    elif mode == "clipvalue":
        nn.utils.clip_grad_value_(params, threshold)
    else:
        # Keras' clipnorm rescales each variable's gradient by its own norm:
        # clip_grad_norm_(p, threshold) for every p, fused into three calls
        # (bit-identical, several times faster than a Python loop of them).
        grads = [p.grad for p in params if p.grad is not None]
        norms = torch.stack(torch._foreach_norm(grads))
        # The same coefficient as clip_grad_norm_: threshold / (norm + 1e-6), at most 1.
        coefs = (threshold / (norms + 1e-6)).clamp_(max=1.0)
        torch._foreach_mul_(grads, coefs.unbind())


class LayerRecorder:
    """Per-layer gradient and weight norms of every step.

    The hot path does as little as possible: per step, one copy of the
    loss, every gradient and every weight into a flat float32 vector
    (`explodebook.flat`), and after clipping one copy of the gradients.
    The norms are computed from those vectors in blocks, vectorised over
    the block's steps, every `FlatLayout.steps_per_flush` steps.

    Args:
        groups: trainable parameters grouped by layer (``L`` groups).
        clipping: whether ``after_clipping()`` is called every step.
    """

    def __init__(self, groups: list[list[nn.Parameter]], clipping: bool = False) -> None:
        self.params = [p for group in groups for p in group]
        self.layout = FlatLayout.of([[p.shape for p in group] for group in groups], clipping)
        self.flush_every = self.layout.steps_per_flush()
        self._pending: list[torch.Tensor] = []  # per step: (1 + 2P,)
        self._clipped: list[torch.Tensor] = []  # per step: (P,), if clipping
        self._rows: list[np.ndarray] = []
        self._finite = True

    def before_clipping(self, loss: torch.Tensor) -> None:
        """Record the loss, gradients and weights of the next step."""
        with torch.no_grad():  # the copy of the weights is not part of the graph
            self._pending.append(_flatten([loss, *(p.grad for p in self.params), *self.params]))

    def after_clipping(self) -> None:
        """Record the gradients of the current step after clipping."""
        self._clipped.append(_flatten([p.grad for p in self.params]))

    def end_step(self) -> bool:
        """Close the step; False once a step had a non-finite loss, gradient or weight.

        Every ``flush_every`` steps the pending vectors are reduced to rows
        and checked, so the answer can come up to that many steps late:
        the loop stops then, and ``rows()`` cuts the record at the exact step.
        """
        if len(self._pending) >= self.flush_every:
            self._flush()
        return self._finite

    def _flush(self) -> None:
        if not self._pending:
            return
        block = torch.stack(self._pending)
        if self._clipped:
            block = torch.cat([block, torch.stack(self._clipped)], dim=1)
        rows = self.layout.rows(block.numpy())
        self._pending, self._clipped = [], []
        self._rows.append(rows)
        self._finite = self._finite and first_nonfinite_row(rows) is None

    def rows_so_far(self) -> np.ndarray:
        """The rows of the steps recorded so far (`rows` without the cut), ``(n, 2 + 4 * L)``.

        Flushing early changes no value: each row is reduced from its own
        step's vector, whatever block it is in.
        """
        self._flush()
        if not self._rows:
            return np.empty((0, 2 + 4 * len(self.layout.layer_sizes)))
        return np.concatenate(self._rows)

    def rows(self, stop_on_nonfinite: bool = True) -> np.ndarray:
        """The recorded rows, ending at the first non-finite one if asked.

        Returns:
            float64 array of shape ``(n, 2 + 4 * L)``.
        """
        self._flush()
        n_cols = 2 + 4 * len(self.layout.layer_sizes)
        rows = np.concatenate(self._rows) if self._rows else np.empty((0, n_cols))
        if stop_on_nonfinite:
            step = first_nonfinite_row(rows)
            if step is not None:
                rows = rows[: step + 1]
        return rows


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    # One concatenated copy in a single call (the helper DistributedDataParallel
    # uses for its buckets): about 3x cheaper than torch.cat of .view(-1)s.
    return torch._utils._flatten_dense_tensors(tensors)


def run(
    spec: RunSpec, *, max_seconds: float | None = budget.DEFAULT, progress: bool | None = None
) -> Trace:
    """Train the PyTorch network of ``spec``, one step at a time, into a `Trace`.

    `explodebook.run` without its cache (``max_seconds`` and ``progress``
    as there). The trace ends at the first non-finite loss, gradient or
    weight when ``spec.stop_on_nonfinite``. The first Ctrl-C stops after
    the block of steps under way and raises ``RunInterrupted`` with the
    steps done; a second one stops at once, without a trace, and gives the
    caller back its number of PyTorch threads.
    """
    threads = torch.get_num_threads()
    # Whatever a Ctrl-C interrupted, the thread count is the caller's again.
    return run_within_budget(
        spec, "torch", _train, max_seconds, progress, lambda: torch.set_num_threads(threads)
    )


def clear_cache() -> None:
    """Nothing to clear: the PyTorch backend keeps nothing between runs.

    It exists so that both backends offer the same functions (the Keras
    backend keeps compiled training loops for reuse).
    """


def _train(spec: RunSpec, plan: budget.Plan) -> Trace:
    model = build(spec)
    groups = layer_weights(model, spec)
    params = [p for group in groups for p in group]
    penalized = _penalized(model, spec)
    optimizer = make_optimizer(spec, params)
    scheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_factor(spec.warmup_steps))
        if spec.warmup_steps
        else None
    )
    loss_fn = nn.MSELoss()

    X_np, y_np = dataset_for(spec)
    X, y = torch.from_numpy(X_np.copy()), torch.from_numpy(y_np.copy())
    batches = torch.from_numpy(
        batch_indices(len(X_np), spec.batch_size, spec.steps, seed=spec.seed)
    )
    clipping = spec.clipping is not None
    recorder = LayerRecorder(groups, clipping)

    # One gather per block of steps instead of two per step. Between blocks
    # (every CHECK_SECONDS or so of training), the loop checks for Ctrl-C
    # and moves the progress bar; the steps themselves do nothing extra.
    check_every = max(1, int(budget.CHECK_SECONDS / budget.step_seconds(spec, "torch")))
    block = max(1, min(GATHER_STEPS, GATHER_BYTES // (X[0].nbytes * spec.batch_size), check_every))
    loop = TrainingLoop(spec, "torch", plan)
    if loop.observed:  # a quarter of the blocks' time: a widget's first frame sooner
        block = max(1, block // 4)
    with torch_threads(1), loop.running() as stop:
        for step in range(spec.steps):
            if step % block == 0:
                if stop.requested:
                    break
                loop.bar.to(step)
                if step:
                    loop.report(recorder.rows_so_far)
                idx = batches[step : step + block]
                X_block, y_block = X[idx], y[idx]
            xb, yb = X_block[step % block], y_block[step % block]
            # What optimizer.zero_grad() does (set_to_none), without its
            # profiler bookkeeping: a sizeable share of a step this small.
            for p in params:
                p.grad = None
            loss = loss_fn(model(xb), yb)
            objective = loss
            if spec.l1:
                objective = objective + spec.l1 * sum(p.abs().sum() for p in penalized)
            if spec.l2:
                objective = objective + spec.l2 * sum(p.square().sum() for p in penalized)
            objective.backward()
            recorder.before_clipping(loss)
            if clipping:
                _clip(params, spec)
                recorder.after_clipping()
            if not recorder.end_step() and spec.stop_on_nonfinite:
                break
            optimizer.step()
            if scheduler is not None:
                scheduler.step()

    trace = Trace.from_record(
        recorder.rows(stop_on_nonfinite=spec.stop_on_nonfinite), spec, "torch", loop.wall_time
    )
    return loop.finish(trace)  # after a first Ctrl-C: the steps done, as a trace
