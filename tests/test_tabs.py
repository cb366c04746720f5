"""The framework tabs: every PyTorch/Keras tab pair exists and its code runs.

The tabs show code for a reader's own training loop, not executed by the
book; these tests execute each snippet on a small model so that shown
code cannot rot. A snippet runs after the prelude of its kind: an MLP by
default; a page names another kind in a MyST comment on the line before
the tab set (``% tab-test: rnn``), which the reader never sees.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, toc_files

# What a reader's own code has around the snippet: a small model, data, an
# optimizer (PyTorch) and the imports, for each kind of model.
_MLP = {
    "torch": """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.MSELoss()
x, y = torch.randn(32, 20), torch.randn(32, 1)
l2 = 0.01
""",
    "keras": """
import keras
import numpy as np
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(25, activation="relu"),
                          keras.layers.Dense(1)])
x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
y = np.random.default_rng(1).normal(size=(64, 1)).astype("float32")
""",
}
_RNN = {
    "torch": """
import numpy as np
import torch
from torch import nn
torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.RNN(2, 32, batch_first=True), nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

model = Net()
head = nn.Linear(32, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.MSELoss()
x_batch = np.random.default_rng(0).uniform(size=(8, 50, 2)).astype("float32")
y_batch = torch.randn(8, 1)
x, y = torch.from_numpy(x_batch), y_batch
l2 = 0.01
""",
    "keras": """
import keras
import numpy as np
import tensorflow as tf
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((50, 2)), keras.layers.SimpleRNN(32), keras.layers.Dense(1)])
x_batch = np.random.default_rng(0).uniform(size=(8, 50, 2)).astype("float32")
y_batch = np.random.default_rng(1).normal(size=(8, 1)).astype("float32")
x, y = x_batch, y_batch
""",
}
# A whole (small) data set instead of a batch, and a compiled Keras model.
_DATA = {
    "torch": _MLP["torch"] + "X, y = torch.randn(64, 20), torch.randn(64, 1)\n",
    "keras": _MLP["keras"] + 'X, y = x, y\nmodel.compile(optimizer="sgd", loss="mse")\n',
}
PRELUDES = {"mlp": _MLP, "rnn": _RNN, "data": _DATA}
_KIND = re.compile(r"^% tab-test: (\w+)\n\Z", re.M)

_TAB_SET = re.compile(r"^(::::+)\{tab-set\}\n(?P<body>.*?)^\1[ \t]*$", re.M | re.S)
_TAB_ITEM = re.compile(
    r"^(:::)\{tab-item\}[ \t]*(?P<title>.+?)\n(?P<options>(?::[\w-]+:[^\n]*\n)*)(?P<body>.*?)^\1[ \t]*$",
    re.M | re.S,
)
_CODE = re.compile(r"^```python\n(?P<code>.*?)^```", re.M | re.S)


def _tab_sets() -> list[tuple[str, list[dict[str, str]]]]:
    found = []
    for page in toc_files():
        text = (ROOT / f"{page}.md").read_text()
        for tab_set in _TAB_SET.finditer(text):
            kind = _KIND.search(text[: tab_set.start()])
            items = []
            for item in _TAB_ITEM.finditer(tab_set["body"]):
                sync = re.search(r":sync:\s*(\S+)", item["options"])
                items.append(
                    {
                        "title": item["title"].strip(),
                        "sync": sync[1] if sync else "",
                        "code": "\n".join(m["code"] for m in _CODE.finditer(item["body"])),
                        "kind": kind[1] if kind else "mlp",
                    }
                )
            found.append((page, items))
    return found


TAB_SETS = _tab_sets()
SNIPPETS = [
    pytest.param(item["sync"], item["code"], item["kind"], id=f"{page}-{n}-{item['sync']}")
    for page, items in TAB_SETS
    for n, item in enumerate(items)
]


def test_framework_tabs_exist_and_pair_pytorch_with_keras() -> None:
    assert len(TAB_SETS) >= 2
    for page, items in TAB_SETS:
        assert [(i["title"], i["sync"]) for i in items] == [
            ("PyTorch", "torch"),
            ("Keras", "keras"),
        ], page
        assert all(i["code"] for i in items), f"{page}: a tab without code"
    for page, _ in TAB_SETS:
        text = (ROOT / f"{page}.md").read_text()
        # one sync group: choosing a framework once switches every tab set
        assert text.count(":sync-group: framework") == text.count("{tab-set}"), page


@pytest.mark.parametrize("framework, code, kind", SNIPPETS)
def test_tab_code_runs(framework: str, code: str, kind: str) -> None:
    assert kind in PRELUDES, f"% tab-test: {kind} names no prelude (known: {sorted(PRELUDES)})"
    namespace: dict[str, object] = {}
    exec(PRELUDES[kind][framework], namespace)  # noqa: S102 - the book's own snippets
    exec(code, namespace)  # noqa: S102
    model = namespace["model"]
    if framework == "torch":
        import torch

        assert all(torch.isfinite(p).all() for p in model.parameters())
    else:
        import numpy as np

        assert all(np.isfinite(np.asarray(w)).all() for w in model.get_weights())
