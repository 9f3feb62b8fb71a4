"""More loop shapes: every segment replays bit for bit from its own checkpoint (fast-forward),
or from the start when the checkpoint cannot be resumed, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ._harness import data, run_worker


def _namespace() -> dict[str, object]:
    ns = dict(data())
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1)
    )
    ns["model"] = model
    ns["opt"] = torch.optim.Adam(model.parameters(), lr=0.01)
    return ns


S: dict[str, str] = {}
S["ema"] = """
import copy
ema = copy.deepcopy(model)
for step in range(16):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.mul_(0.9).add_(p, alpha=0.1)
"""
S["break_and_after"] = """
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=True)
for epoch in range(4):
    for j, (xb, yb) in enumerate(loader):
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
        if j == 5:
            break
    print(epoch, loss.item())
"""
S["function"] = """
def train_epoch(loader):
    total = 0.0
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
        total += loss.item()
    return total
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=True)
hist = []
for epoch in range(3):
    hist.append(train_epoch(loader))
"""
S["numpy_perm"] = """
import numpy as np
for epoch in range(3):
    perm = np.random.permutation(len(X))
    for i in range(0, len(X), 16):
        idx = torch.from_numpy(perm[i:i+16])
        loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
"""
S["generator_source"] = """
import random
def batches():
    idx = list(range(len(X)))
    random.shuffle(idx)
    for i in range(0, len(idx), 8):
        yield X[idx[i:i+8]], Y[idx[i:i+8]]
for epoch in range(3):
    for xb, yb in batches():
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""
S["two_optimizers"] = """
d = torch.nn.Linear(1, 1)
opt_d = torch.optim.SGD(d.parameters(), lr=0.01)
for step in range(12):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
    l2 = d(model(X).detach()).pow(2).mean()
    opt_d.zero_grad(); l2.backward(); opt_d.step()
"""
S["anonymous"] = """
def main():
    m = torch.nn.Linear(4, 1)
    o = torch.optim.SGD(m.parameters(), lr=0.1)
    for step in range(10):
        loss = m(X).pow(2).mean()
        o.zero_grad(); loss.backward(); o.step()
main()
"""
S["augment_dataset"] = """
class Noisy(torch.utils.data.Dataset):
    def __len__(self): return len(X)
    def __getitem__(self, i): return X[i] + 0.1 * torch.randn(4), Y[i]
g = torch.Generator().manual_seed(3)
loader = torch.utils.data.DataLoader(Noisy(), batch_size=8, shuffle=True, generator=g)
for epoch in range(3):
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""
S["workers"] = """
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=True, num_workers=2)
for epoch in range(2):
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""
S["amp_scaler"] = """
scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
for step in range(12):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
"""
S["plateau"] = """
sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
for epoch in range(4):
    for i in range(0, len(X), 16):
        loss = torch.nn.functional.mse_loss(model(X[i:i+16]), Y[i:i+16])
        opt.zero_grad(); loss.backward(); opt.step()
    sched.step(loss.item())
"""


@pytest.mark.parametrize("name", sorted(set(S) - {"anonymous"}))
def test_every_segment_replays_from_its_own_checkpoint(tmp_path: Path, name: str) -> None:
    ran = run_worker(tmp_path, S[name], _namespace(), every=3)
    leaves = ran.commitment.leaves
    assert len(leaves) >= 5
    for index in range(len(leaves) - 1):
        result = ran.replay(index)
        assert result.matches(ran.commitment), (index, result.notes)
        assert result.started_from == index and not result.notes, result.notes


def test_an_optimizer_no_variable_names_is_replayed_from_the_start(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, S["anonymous"], _namespace(), every=3)
    assert "replays start from the beginning" in ran.commitment.notes[0]
    assert not any(leaf.resumable for leaf in ran.commitment.leaves[1:])
    result = ran.replay(2)
    assert result.matches(ran.commitment) and result.replayed_from_start
