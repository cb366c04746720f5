"""The framework tabs: every PyTorch/Keras tab pair exists and its code runs.

The tabs show code for a reader's own training loop, not executed by the
book; these tests execute each snippet on a small model so that shown
code cannot rot.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, toc_files

# What a reader's own code has around the snippet: a small model, data, an
# optimizer (PyTorch) and the imports.
PRELUDES = {
    "torch": """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.MSELoss()
x, y = torch.randn(32, 20), torch.randn(32, 1)
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
            items = []
            for item in _TAB_ITEM.finditer(tab_set["body"]):
                sync = re.search(r":sync:\s*(\S+)", item["options"])
                items.append(
                    {
                        "title": item["title"].strip(),
                        "sync": sync[1] if sync else "",
                        "code": "\n".join(m["code"] for m in _CODE.finditer(item["body"])),
                    }
                )
            found.append((page, items))
    return found


TAB_SETS = _tab_sets()
SNIPPETS = [
    pytest.param(item["sync"], item["code"], id=f"{page}-{n}-{item['sync']}")
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


@pytest.mark.parametrize("framework, code", SNIPPETS)
def test_tab_code_runs(framework: str, code: str) -> None:
    namespace: dict[str, object] = {}
    exec(PRELUDES[framework], namespace)  # noqa: S102 - the book's own snippets
    exec(code, namespace)  # noqa: S102
    model = namespace["model"]
    if framework == "torch":
        import torch

        assert all(torch.isfinite(p).all() for p in model.parameters())
    else:
        import numpy as np

        assert all(np.isfinite(np.asarray(w)).all() for w in model.get_weights())
