"""Fixtures for the capture tests: a namespace as a notebook kernel would hold it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

QUICKSTART = """\
losses = []
for epoch in range(5):
    for i in range(0, len(X), 64):
        loss = F.cross_entropy(model(X[i:i+64]), y[i:i+64])
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
"""

NOTEBOOK_SETUP = """\
import torch

class Net(torch.nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, width)
        self.fc2 = torch.nn.Linear(width, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

def accuracy(m, xs, ys):
    return (m(xs).argmax(1) == ys).float().mean().item()

torch.manual_seed(0)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
X = torch.randn(256, 8)
y = torch.randint(0, 3, (256,))
sizes = [64, 32, 16]
"""


def notebook_namespace() -> dict[str, Any]:
    """A kernel namespace whose classes and functions live in ``__main__``."""
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(NOTEBOOK_SETUP, "<notebook>", "exec"), ns)
    ns["F"] = F
    # IPython plumbing that must never be captured
    ns.update({"In": ["", "x"], "Out": {}, "_": None, "_i1": "x", "_1": 3, "get_ipython": print})
    return ns


@pytest.fixture
def ns() -> dict[str, Any]:
    return notebook_namespace()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
