"""`GradientMonitor`: per-layer gradient and weight norms of any PyTorch model.

Attach it to the ``nn.Module`` you already have and to its optimizer, and
keep your training loop as it is::

    monitor = GradientMonitor(model, optimizer, loss_fn=loss_fn)
    for x, y in loader:                       # your loop, unchanged
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # if you clip
        optimizer.step()
    monitor.close()
    trace = monitor.trace()                   # an explodebook.Trace
    explodebook.diagnose(trace)

How it sees each step without changing the loop:

- at the end of every ``backward()`` (a ``register_post_accumulate_grad_hook``
  on every parameter; the first one to fire queues one callback that runs
  when the backward pass ends) it takes the gradient norms *before*
  clipping and the weight norms;
- just before ``optimizer.step()`` (``register_step_pre_hook``) it commits
  the step; if a gradient changed in between (clipping works in place, which
  bumps the tensor's version counter) it also takes the norms *after*
  clipping: what the optimizer actually applies;
- the loss comes from a forward hook on ``loss_fn`` (an ``nn.Module`` such
  as ``nn.MSELoss()``; only calls whose output requires a gradient count, so
  validation losses under ``torch.no_grad()`` are ignored), or from
  ``monitor.log_loss(loss)`` anywhere in the step.

Without an optimizer the monitor is manual: call ``monitor.record(loss)``
after ``loss.backward()`` and before clipping, and, if you clip,
``monitor.record_clipped()`` after clipping.

One step is one ``optimizer.step()``. With gradient accumulation (several
``backward()`` calls per step) the norms are those of the accumulated
gradients the optimizer applies, and the loss is the last one seen (log the
step's loss with `log_loss` if you want another). With a ``GradScaler``
(mixed precision) the monitor sees scaled gradients before ``unscale_``,
and steps the scaler skips are not recorded; it is not meant for that case.
All parameters must be on one device.

Cost: per step, three fused ``torch._foreach_norm`` calls (float64 L2 norms
of all gradients and weights; largest gradient element), a fourth after
clipping, and a few small tensor ops. The results stay on the device as
tensors (no synchronisation, no ``.item()``) until ``trace()`` is called; every
`CHUNK` steps they are stacked into one tensor to keep memory small.
(The book's backends instead copy each step's gradients and weights into
one flat vector and compute the norms in blocks, `explodebook.flat`:
cheaper for their tiny networks, but a user's model may be large, where
a per-step copy of every weight would cost more than the norms.)
`Trace.from_parameter_record` turns the record into a `Trace`, the same
way for both frameworks.

Layers are the modules that directly own trainable parameters, named by
their qualified names (``model.named_modules()``), in registration order,
which for ``nn.Sequential`` and most models is input to output. The trace's
first-non-finite layer follows `explodebook.trace.locate_nonfinite`: for
weights the first non-finite layer in that order, for gradients the last
(backpropagation meets it first); ``trace.extra["first_nonfinite_parameter"]``
names the parameter as well.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from explodebook.frameworks import import_torch

# torch, and triton when installed, before TensorFlow (explodebook.frameworks):
# after this import a reader's own optimizer is safe to create even if they
# import TensorFlow later.
import_torch()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from explodebook.spec import RunSpec  # noqa: E402
from explodebook.monitor.torch_steps import CHUNK, StepRecord, as_loss  # noqa: E402
from explodebook.trace import Trace  # noqa: E402

__all__ = ["GradientMonitor", "layer_groups", "CHUNK", "SMALL_MODEL", "SMALL_MODEL_PARAMETERS"]

#: ``GradientMonitor(threads=SMALL_MODEL)`` (the default): one PyTorch thread
#: while monitoring a model with fewer than `SMALL_MODEL_PARAMETERS`
#: parameters, PyTorch's own setting for a larger one.
SMALL_MODEL = 0
#: Below this many parameters a model counts as small (see `SMALL_MODEL`).
SMALL_MODEL_PARAMETERS = 100_000


def layer_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Trainable parameters grouped by the module that directly owns them.

    Args:
        model: any ``nn.Module``.

    Returns:
        ``{layer name: [(parameter name, parameter), ...]}`` in
        ``named_modules()`` order; layer names are qualified module names
        (the model's own parameters go under its class name), parameter
        names are qualified too (``"0.weight"``). A parameter shared by two
        modules is listed once, under the first. Frozen parameters
        (``requires_grad=False``) are left out.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"GradientMonitor needs a torch.nn.Module, got {type(model).__name__}"
        )
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        layer = module_name or type(model).__name__
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{name}" if module_name else name
            groups.setdefault(layer, []).append((full, p))
    if not groups:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters to monitor "
            "(none with requires_grad=True)"
        )
    return groups


class GradientMonitor:
    """Record per-layer gradient and weight norms of a PyTorch model.

    Args:
        model: the ``nn.Module`` to watch.
        optimizer: its ``torch.optim.Optimizer``. Given, the monitor hooks
            the backward pass and ``optimizer.step()`` and your loop needs
            no change; ``None`` makes it manual (`record`).
        loss_fn: an ``nn.Module`` loss (``nn.MSELoss()``, ...) to take the
            loss from, with a forward hook; otherwise call `log_loss` (hook
            mode) or pass the loss to `record` (manual mode).
        spec: the `RunSpec` the trace should carry, when you rebuilt one of
            the book's runs; by default none (``trace.spec is None``): a
            model of your own has no spec, and `explodebook.outcome` then
            asks for the baseline loss instead of guessing a data set.
        threads: PyTorch intra-op threads while the monitor is open
            (``torch.set_num_threads``; `close` restores the previous
            count). The default, `SMALL_MODEL`, means one thread for a
            model with fewer than `SMALL_MODEL_PARAMETERS` parameters and
            no change for a larger one: with one OpenMP thread per core,
            every small operation waits for all of them, and when another
            thread or process holds a core (TensorFlow in the same kernel,
            another notebook) an ordinary loop over a small model ran up
            to 50 times slower in our measurements; one thread is steady
            and, for such models, about as fast. ``None`` leaves PyTorch's
            setting alone; an integer sets that many threads.

    Use it as a context manager, or call `close`, to remove the hooks;
    ``trace()`` works before and after.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        loss_fn: nn.Module | None = None,
        spec: RunSpec | None = None,
        threads: int | None = SMALL_MODEL,
    ) -> None:
        groups = layer_groups(model)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if loss_fn is not None and not isinstance(loss_fn, nn.Module):
            raise TypeError(
                "loss_fn must be an nn.Module (such as nn.MSELoss()) so that the "
                f"monitor can hook it, got {type(loss_fn).__name__}; with a plain "
                "function, call monitor.log_loss(loss) in your loop instead"
            )
        if spec is not None and not isinstance(spec, RunSpec):
            raise TypeError(f"spec must be a RunSpec or None, got {type(spec).__name__}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 0
        ):
            raise ValueError(
                f"threads={threads!r} is not allowed: give an integer >= 1, "
                "SMALL_MODEL (0: one thread if the model is small) or None"
            )
        self.model_name = type(model).__name__
        self.spec = spec
        self.layers = list(groups)
        self.parameter_names = [name for group in groups.values() for name, _ in group]
        self.params = [p for group in groups.values() for _, p in group]
        self.owner = np.array([i for i, group in enumerate(groups.values()) for _ in group])
        self.hooked = optimizer is not None
        # A stand-in for a gradient that is None (a parameter the loss did
        # not reach): norm 0, largest element 0.
        self._no_grad = [torch.zeros(1, dtype=p.dtype, device=p.device) for p in self.params]

        self._record = StepRecord(len(self.params))
        self._pending_loss: torch.Tensor | None = None
        self._snapshot: tuple[list[torch.Tensor], list[Any]] | None = None
        self._queued = False
        self._start: float | None = None
        self._elapsed = 0.0
        self._last = 0.0
        self._handles: list[Any] = []
        if self.hooked:
            # A hook on every parameter: whichever receives a gradient first
            # queues the end-of-backward callback. Hooks on a few parameters
            # only (the first and the last, once) missed backward passes
            # that reached neither; the step hook then took the norms after
            # clipping and recorded them as the norms before it.
            for p in self.params:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_grad))
            self._handles.append(optimizer.register_step_pre_hook(self._on_step))
        if loss_fn is not None:
            self._handles.append(loss_fn.register_forward_hook(self._on_loss))
        self._threads_before: int | None = None
        if threads == SMALL_MODEL:
            small = sum(p.numel() for p in self.params) < SMALL_MODEL_PARAMETERS
            threads = 1 if small else None
        if threads is not None and threads != torch.get_num_threads():
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(threads)

    # -- public API ---------------------------------------------------------

    @property
    def steps_recorded(self) -> int:
        """Number of steps recorded so far."""
        return len(self._record)

    def log_loss(self, loss: torch.Tensor | float) -> None:
        """Give the monitor the loss of the current step (hook mode).

        Call it anywhere between one ``optimizer.step()`` and the next; the
        last value given before the step is recorded. Cheap: the tensor is
        kept, not read.
        """
        self._pending_loss = as_loss(loss)

    @torch.no_grad()
    def record(self, loss: torch.Tensor | float) -> None:
        """Record one step (manual mode): call after ``backward()``, before clipping.

        In hook mode (an optimizer was given) the step is recorded by the
        hooks, and this only logs the loss, like `log_loss`.
        """
        if self.hooked:
            self.log_loss(loss)
            return
        self._tick()
        norms = self._norms(self._grads()[0])
        self._record.commit(as_loss(loss), norms, norms[: len(self.params)])

    @torch.no_grad()
    def record_clipped(self) -> None:
        """Record the gradient norms after clipping of the last step (manual mode)."""
        if self.hooked:
            raise RuntimeError(
                "record_clipped() is for manual mode; with an optimizer the monitor "
                "sees clipping by itself"
            )
        if not self._record.steps:
            raise RuntimeError("record_clipped() needs a step: call record(loss) first")
        grads, _ = self._grads()
        self._record.set_clipped(torch._foreach_norm(grads, 2, dtype=torch.float64))

    def close(self) -> None:
        """Remove every hook and restore PyTorch's thread count. Idempotent.

        The recorded steps are kept.
        """
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget the recorded steps (the hooks stay)."""
        self._record.reset()
        self._pending_loss, self._snapshot, self._start, self._elapsed = None, None, None, 0.0

    def trace(self) -> Trace:
        """The recorded steps as a `Trace` (framework ``"torch"``).

        Reads the values from the device once. Raises ``ValueError`` if no
        step was recorded, or if a step has no loss (give ``loss_fn`` or
        call `log_loss`).
        """
        n = self.steps_recorded
        if n == 0:
            raise ValueError(
                "the monitor recorded no step: with an optimizer, run "
                "loss.backward() and optimizer.step(); without one, call "
                "monitor.record(loss) after loss.backward()"
            )
        if any(self._record.loss_missing):
            first = self._record.loss_missing.index(True)
            raise ValueError(
                f"step {first} has no loss: pass loss_fn=<your nn.Module loss> to "
                "GradientMonitor, or call monitor.log_loss(loss) before optimizer.step()"
            )
        return Trace.from_parameter_record(
            self._record.values(),
            framework="torch",
            layers=self.layers,
            owner=self.owner,
            parameter_names=self.parameter_names,
            spec=self.spec,
            wall_time=self._elapsed,
            extra={"source": "explodebook.monitor.torch", "model": self.model_name},
        )

    def __repr__(self) -> str:
        mode = "manual" if not self.hooked else ("hooked" if self._handles else "closed")
        return (
            f"<GradientMonitor {self.model_name}: {len(self.layers)} layers, "
            f"{len(self.params)} parameters, {self.steps_recorded} steps, {mode}>"
        )

    # -- hooks --------------------------------------------------------------

    def _on_grad(self, param: torch.Tensor) -> None:
        # Called once per parameter per backward pass; queue one callback
        # that runs when the whole backward pass has finished.
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)

    @torch.no_grad()
    def _on_backward_end(self) -> None:
        self._queued = False
        grads, versions = self._grads()
        self._snapshot = (self._norms(grads), list(zip(grads, versions)))

    @torch.no_grad()
    def _on_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._queued = False  # in case a backward pass failed half-way
        self._tick()
        grads, versions = self._grads()
        P = len(self.params)
        if self._snapshot is None:  # no backward pass seen: gradients set by hand
            norms = self._norms(grads)
            clipped = norms[:P]
        else:
            norms, before = self._snapshot
            changed = any(
                g is not g0 or v != v0 for (g0, v0), g, v in zip(before, grads, versions)
            )
            clipped = torch._foreach_norm(grads, 2, dtype=torch.float64) if changed else norms[:P]
        self._record.commit(self._pending_loss, norms, clipped)
        self._snapshot = None
        self._pending_loss = None

    def _on_loss(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.requires_grad and output.numel() == 1:
            self._pending_loss = as_loss(output)

    # -- internals ----------------------------------------------------------

    def _grads(self) -> tuple[list[torch.Tensor], list[int]]:
        grads = [
            p.grad if p.grad is not None else z for p, z in zip(self.params, self._no_grad)
        ]
        return grads, [g._version for g in grads]

    def _norms(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        # 3P 0-d float64 tensors: gradient L2 norms, weight L2 norms, largest
        # |gradient element|. float64 L2 norms: a norm is finite exactly when
        # every element is (float32 squares of ~1e19 overflow).
        l2 = torch._foreach_norm(grads + self.params, 2, dtype=torch.float64)
        # The largest element is exact in the parameters' own dtype; the
        # stack in `StepRecord.values` promotes it to float64.
        largest = torch._foreach_norm(grads, float("inf"))
        return list(l2) + list(largest)

    def _tick(self) -> None:
        # wall_time: from the first recorded step to the last one.
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        else:
            self._elapsed += now - self._last
        self._last = now

