"""Helpers of the chapter "Beyond the article" and its sections.

The chapter tries remedies (initialization, normalization, residual
connections, warm-up, Adam, loss scaling) on two failing set-ups, in both
frameworks. Its pages share these helpers: a table of outcomes, a figure of
the loss in both frameworks, the numpy forward pass of the variance
argument, and the first step's gradients with their fate in float16.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from explodebook import plots, run
from explodebook.data import batch_indices, dataset_for
from explodebook.metrics import first_to_last, status
from explodebook.spec import RunSpec
from explodebook.trace import FRAMEWORKS, Trace
from explodebook.weights import init_matrix


def results_table(specs: Mapping[str, RunSpec]) -> pd.DataFrame:
    """One row per named spec: its outcome in both frameworks, and for deep
    networks the first hidden layer's gradient norm over the last's at the
    first step (`first_to_last`)."""
    rows = {}
    for name, spec in specs.items():
        row = {}
        for fw in FRAMEWORKS:
            trace = run(spec, fw)
            row[trace.label, "outcome"] = status(trace)
            if spec.depth > 1:
                row[trace.label, "first / last layer"] = f"{first_to_last(trace):.2g}"
        rows[name] = row
    table = pd.DataFrame(rows).T
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def draw_pair(
    *traces: Trace,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    reference: float | None = None,
) -> Figure:
    """Loss of each run on one axes: one colour per run, PyTorch solid and
    Keras dashed on top of it; an "x" marks where a run became non-finite.

    Args:
        traces: the runs, all of one framework first, then the same runs
            in the other (``[run(s, fw) for fw in FRAMEWORKS for s in specs]``).
        labels: one legend label per run (not per trace); without them
            the legend names only the frameworks' line styles.
        title: the finding to state.
        reference: draw a dotted line at this loss (e.g. the mean's).
    """
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    series: dict[str, int] = {}
    colors, names = [], []
    for trace in traces:
        k = series.get(trace.framework, 0)
        series[trace.framework] = k + 1
        colors.append(plots.SERIES_COLORS[k % len(plots.SERIES_COLORS)])
        # One legend entry per run: the first framework's line ("_": none).
        # A run without a label has none: its default name, the framework's,
        # would repeat the PyTorch/Keras line-style entries below.
        shown = labels is not None and trace.framework == FRAMEWORKS[0]
        names.append(labels[k] if shown else f"_run {k}")
    plots.loss_curve(list(traces), ax=ax, labels=names, colors=colors,
                     divergence="compact", legend=False)  # fmt: skip
    if reference is not None:
        # The y range stays the runs' own, as before loss_curve drew them.
        ylim = ax.get_ylim()
        ax.axhline(reference, color="black", ls=":", lw=1)
        ax.set_ylim(ylim)
    ax.plot([], [], color="0.3", ls=plots.FRAMEWORK_LINESTYLES["torch"], label="PyTorch")
    ax.plot([], [], color="0.3", ls=plots.FRAMEWORK_LINESTYLES["keras"], label="Keras")
    ax.set(yscale="log", xlabel="step", ylabel="loss (log)", title=title)
    ax.legend(fontsize="small")
    return fig


def draw_run(torch_trace: Trace, keras_trace: Trace) -> Figure:
    """One spec in both frameworks, titled by its depth, initialization,
    normalization and residual connections (the widgets' frames)."""
    spec = torch_trace.spec
    title = f"depth {spec.depth}, {spec.init} × {spec.init_scale:g}"
    if spec.normalization != "none":
        title += f", {spec.normalization} norm"
    if spec.residual:
        title += ", residual"
    return draw_pair(torch_trace, keras_trace, title=title)


def forward_second_moments(
    init: str,
    scale: float = 1.0,
    activation: str = "relu",
    depth: int = 20,
    width: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Mean of ``h**2`` at the input and after each layer of a random MLP
    (no biases) on 256 standard normal inputs, in numpy.

    Returns:
        ``(depth + 1,)`` second moments, the input's first.
    """
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(256, width))
    moments = [float(np.mean(h**2))]
    for _ in range(depth):
        a = h @ init_matrix(init, width, width, scale, rng)
        h = np.maximum(a, 0) if activation == "relu" else np.tanh(a)
        moments.append(float(np.mean(h**2)))
    return np.array(moments)


def first_gradients(spec: RunSpec) -> np.ndarray:
    """All gradient elements of the first step of ``spec``, float32, in
    PyTorch (the same weights and batch as `explodebook.run`)."""
    from explodebook.backends import torch as torch_backend
    from explodebook.frameworks import import_torch

    torch = import_torch()  # through the package, which keeps the import order
    net = torch_backend.build(spec)
    X, y = dataset_for(spec)
    idx = batch_indices(len(X), spec.batch_size, 1, seed=spec.seed)[0]
    loss = torch.nn.functional.mse_loss(net(torch.from_numpy(X[idx])), torch.from_numpy(y[idx]))
    loss.backward()
    return np.concatenate([p.grad.numpy().ravel() for p in net.parameters()])


def float16_fate(grads: np.ndarray, scale: float) -> tuple[float, float]:
    """Shares of the non-zero elements of ``grads`` that underflow to 0 and
    that overflow to infinity when multiplied by ``scale`` and cast to
    float16."""
    nonzero = np.asarray(grads)[np.asarray(grads) != 0]
    with np.errstate(over="ignore"):
        half = (nonzero * np.float32(scale)).astype(np.float16)
    return float(np.mean(half == 0)), float(np.mean(np.isinf(half)))
