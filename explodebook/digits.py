"""A model of your own: a small CNN that regresses the ink of handwritten digits.

Chapter "Watch your own model" needs a model that is *not* built from a
`RunSpec`, written the way a reader writes one: an ``nn.Module`` with a
``DataLoader`` loop in PyTorch, a ``keras.Sequential`` with ``fit`` in
Keras, each watched by the framework's ``GradientMonitor``. The model and
its loops live here, not in the chapter, so that its two pages, its tests
and the graders of its exercises all train the same run.

The data are scikit-learn's 8×8 digits (``load_digits``, 1,797 images, pixel
values 0 to 16, scaled to [0, 1]). The target is a digit's *ink*: the sum
of its pixel intensities, in units of one fully lit pixel (mean about 20),
left unscaled unless ``standardize=True``. The loss is the mean squared
error. Two convolutions (``conv1``, ``conv2``, 8 and 16 channels, 3×3, tanh
by default), a 2×2 max-pool and a linear ``head``; SGD with momentum 0.9,
batches of 32, two epochs (114 steps). Both models use their framework's
default initialization (seeded: ``torch.manual_seed(0)``,
``keras.utils.set_random_seed(0)``), so the two frameworks start from
different weights.

Importing this module imports both frameworks, PyTorch before TensorFlow
(`explodebook.frameworks`); ``import explodebook`` does not import it.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import numpy as np

from .cache import freeze
from .checks import check_framework
from .frameworks import import_tensorflow, import_torch
from .trace import Trace

torch = import_torch()
_, keras = import_tensorflow()

from torch import nn  # noqa: E402  (after the import order is settled)
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from .monitor.keras import GradientMonitor as KerasMonitor  # noqa: E402
from .monitor.torch import GradientMonitor as TorchMonitor  # noqa: E402

__all__ = ["ink_data", "torch_cnn", "keras_cnn", "train_torch", "train_keras", "train"]

#: The activations the models accept, by name.
ACTIVATIONS = ("tanh", "relu")


def ink_data(standardize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The digits and their ink.

    Args:
        standardize: subtract the ink's mean and divide by its standard
            deviation (the target of exercise ``mon-ex-scale``).

    Returns:
        ``(images, ink)``: images of shape ``(1797, 8, 8)`` in [0, 1] and the
        target of shape ``(1797,)``, both float32.
    """
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype("float32")
    ink = images.sum(axis=(1, 2)).astype("float32")
    if standardize:
        ink = ((ink - ink.mean()) / ink.std()).astype("float32")
    return images, ink


def _check(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")


def torch_cnn(activation: str = "tanh") -> nn.Sequential:
    """The CNN as a PyTorch ``nn.Sequential`` (channels first), seeded."""
    _check(activation)
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 8, kernel_size=3, padding=1), act1=act(),
        conv2=nn.Conv2d(8, 16, kernel_size=3, padding=1), act2=act(),
        pool=nn.MaxPool2d(2), flatten=nn.Flatten(),
        head=nn.Linear(16 * 4 * 4, 1),
    ))


def train_torch(lr: float, clip: float | None = None, epochs: int = 2,
                activation: str = "tanh", standardize: bool = False) -> Trace:
    """Train `torch_cnn` with SGD, watched by `explodebook.monitor.torch.GradientMonitor`."""
    images, ink = ink_data(standardize)
    data = TensorDataset(torch.from_numpy(images[:, None]), torch.from_numpy(ink[:, None]))
    net = torch_cnn(activation)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.MSELoss()
    loader = DataLoader(data, batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    with TorchMonitor(net, optimizer, loss_fn=loss_fn) as monitor:
        for _ in range(epochs):  # the usual loop, unchanged
            for X, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(net(X), y)
                loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), clip)
                optimizer.step()
    return monitor.trace()


def keras_cnn(activation: str = "tanh") -> Any:
    """The CNN as a ``keras.Sequential`` (channels last), seeded."""
    _check(activation)
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation=activation, name="conv1"),
        keras.layers.Conv2D(16, 3, padding="same", activation=activation, name="conv2"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(1, name="head"),
    ])


def train_keras(lr: float, clip: float | None = None, epochs: int = 2,
                activation: str = "tanh", standardize: bool = False) -> Trace:
    """Train `keras_cnn` with ``fit``, watched by `explodebook.monitor.keras.GradientMonitor`."""
    images, ink = ink_data(standardize)
    net = keras_cnn(activation)
    net.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9, global_clipnorm=clip),
                loss="mse")
    monitor = KerasMonitor()
    net.fit(images[..., None], ink, batch_size=32, epochs=epochs, verbose=0,
            callbacks=[monitor])
    return monitor.trace()


@functools.lru_cache(maxsize=32)
def train(framework: str, lr: float, clip: float | None = None, epochs: int = 2,
          activation: str = "tanh", standardize: bool = False) -> Trace:
    """`train_torch` or `train_keras`, by framework name (``"torch"``, ``"keras"``).

    Args:
        framework: ``"torch"`` or ``"keras"``.
        lr: the SGD learning rate (momentum 0.9).
        clip: the global gradient norm threshold (``clip_grad_norm_`` in
            PyTorch, ``global_clipnorm`` in Keras), or None.
        epochs: passes over the 1,797 digits, 57 steps each.
        activation: ``"tanh"`` or ``"relu"``, in both convolutions.
        standardize: train on the standardized ink instead of the raw one.

    Returns:
        the monitor's `Trace` (it keeps recording after a non-finite value).
        Runs are seeded, so the same arguments give the same trace: it is
        kept, and the same object returned on the next call, with
        read-only arrays (``trace.loss.copy()`` to change one), so that no
        caller can change what the next one gets.
    """
    name = check_framework(framework, "train(framework=...)")
    trainer = {"torch": train_torch, "keras": train_keras}[name]
    return freeze(trainer(lr, clip, epochs, activation, standardize))  # kept and shared
