"""Segment replay through the provider's worker on CPU: the replayed leaf equals the
committed one bit for bit, and the steps before the checkpoint are not run again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ._harness import data, forward_calls, run_worker

PLAIN = """\
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(24):
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
"""

DROPOUT = """\
losses = []
for step in range(20):
    i = torch.randint(0, len(X), (16,))
    loss = torch.nn.functional.mse_loss(model(X[i]), Y[i])
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
"""

SHUFFLE = """\
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
for epoch in range(3):
    model.train()
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
    sched.step()
    model.eval()
    with torch.no_grad():
        val = sum(torch.nn.functional.mse_loss(model(xb), yb) for xb, yb in [(X[:8], Y[:8])])
print(f"last val {float(val):.4f}")
"""

ACCUMULATE = """\
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=4, shuffle=True)
for epoch in range(2):
    for i, (xb, yb) in enumerate(loader):
        loss = torch.nn.functional.mse_loss(model(xb), yb) / 4
        loss.backward()
        if (i + 1) % 4 == 0:
            opt.step()
            opt.zero_grad()
"""

SCHEDULER = """\
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=30)
for step in range(30):
    i = torch.randperm(len(X))[:16]
    loss = torch.nn.functional.mse_loss(model(X[i]), Y[i])
    opt.zero_grad(); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); sched.step()
"""

WHILE = """\
opt = torch.optim.SGD(model.parameters(), lr=0.05)
step = 0
while step < 12:
    loss = torch.nn.functional.mse_loss(model(X), Y)
    opt.zero_grad(); loss.backward(); opt.step()
    step += 1
"""


def _model(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(1)
    layers: list[torch.nn.Module] = [torch.nn.Linear(4, 16), torch.nn.ReLU()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    return torch.nn.Sequential(*layers, torch.nn.Linear(16, 1))


def _with_model(dropout: float = 0.0, optimizer: str = "adam") -> dict[str, object]:
    ns = dict(data())
    model = _model(dropout)
    ns["model"] = model
    ns["opt"] = (
        torch.optim.Adam(model.parameters(), lr=0.01)
        if optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=0.05)
    )
    return ns


def _check_segment(
    tmp_path: Path,
    source: str,
    ns: dict[str, object],
    every: int,
    forwards_per_step: int = 1,
    extra_forwards: int = 0,
) -> None:
    with forward_calls() as full:
        ran = run_worker(tmp_path, source, ns, every=every)
    leaves = ran.commitment.leaves
    middle = ran.boundary_leaves()[len(ran.boundary_leaves()) // 2]
    start, end = leaves[middle], leaves[middle + 1]
    with forward_calls() as calls:
        result = ran.replay(middle)
    assert result.matches(ran.commitment), (result.notes, leaves)
    assert result.fast_forwarded and result.started_from == middle and not result.notes
    assert result.steps_run == end.step - start.step
    # Only the segment ran: not the steps before the checkpoint.
    assert calls() <= (end.step - start.step) * forwards_per_step + extra_forwards
    assert calls() < full() / 2


def test_plain_loop_over_range(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, PLAIN, dict(data()), every=5)
    leaves = ran.commitment.leaves
    assert [(leaf.step, leaf.kind) for leaf in leaves] == [
        (0, "start"),
        (5, "boundary"),
        (10, "boundary"),
        (15, "boundary"),
        (20, "boundary"),
        (24, "end"),
    ]
    for index in range(len(leaves) - 1):
        with forward_calls() as calls:
            result = ran.replay(index)
        assert result.matches(ran.commitment), index
        assert calls() == leaves[index + 1].step - leaves[index].step
    assert ran.commitment.final_parts["module:model"].startswith("0x")


def test_loop_with_dropout(tmp_path: Path) -> None:
    _check_segment(tmp_path, DROPOUT, _with_model(dropout=0.5), every=4)


def test_shuffling_dataloader_in_nested_epochs(tmp_path: Path) -> None:
    ns = _with_model(dropout=0.2)
    ns["loader"] = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(ns["X"], ns["Y"]), batch_size=8, shuffle=True
    )
    # every=5 on 8 batches an epoch: checkpoints fall mid-epoch and on epoch ends.
    _check_segment(tmp_path, SHUFFLE, ns, every=5, extra_forwards=1)


def test_gradient_accumulation(tmp_path: Path) -> None:
    _check_segment(tmp_path, ACCUMULATE, _with_model(), every=2, forwards_per_step=4)


def test_lr_scheduler_and_grad_clipping(tmp_path: Path) -> None:
    _check_segment(tmp_path, SCHEDULER, _with_model(), every=6)


def test_every_segment_of_a_shuffling_run_replays(tmp_path: Path) -> None:
    ns = _with_model(dropout=0.2)
    ns["loader"] = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(ns["X"], ns["Y"]), batch_size=8, shuffle=True
    )
    ran = run_worker(tmp_path, SHUFFLE, ns, every=3)
    for index in range(len(ran.commitment.leaves) - 1):
        assert ran.replay(index).matches(ran.commitment), index


def test_a_while_loop_is_replayed_from_the_start_and_says_so(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, WHILE, _with_model(optimizer="sgd"), every=4)
    kinds = [leaf.kind for leaf in ran.commitment.leaves]
    assert kinds == ["start", "hook", "hook", "hook", "end"]
    result = ran.replay(2)
    assert result.matches(ran.commitment)
    assert result.replayed_from_start and not result.fast_forwarded
    assert "cannot be resumed" in result.notes[0]


def test_a_replay_can_cover_several_leaves(tmp_path: Path) -> None:
    ran = run_worker(tmp_path, PLAIN, dict(data()), every=4)
    result = ran.replay(1, 4)
    assert result.matches(ran.commitment)
    committed = ran.commitment.leaves
    assert all("0x" + result.digests[i].leaf.hex() == committed[i].leaf for i in (2, 3, 4))


@pytest.mark.parametrize("kind", ["weight", "rng"])
def test_a_tampered_checkpoint_gives_another_hash(tmp_path: Path, kind: str) -> None:
    from safetensors.torch import load_file, save_file

    from gensyn_jupyter.verify import CheckpointMismatch, checkpoint_digest

    ran = run_worker(tmp_path, PLAIN, dict(data()), every=5)
    leaf = ran.commitment.leaves[2]
    assert "0x" + checkpoint_digest(ran.store, leaf).leaf.hex() == leaf.leaf
    path = ran.store.directory / (ran.store.stem(leaf.step, leaf.kind) + ".safetensors")
    tensors = load_file(str(path))
    key = next(k for k in tensors if ("modules" in k if kind == "weight" else "rng" in k))
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += 1
    save_file(tensors, str(path))
    assert "0x" + checkpoint_digest(ran.store, leaf).leaf.hex() != leaf.leaf
    with pytest.raises(CheckpointMismatch, match="commitment says"):
        ran.replay(2)


def test_the_worker_subprocess_commits_what_an_in_process_replay_reproduces(
    tmp_path: Path,
) -> None:
    ns = _with_model(dropout=0.2)
    ns["loader"] = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(ns["X"], ns["Y"]), batch_size=8, shuffle=True
    )
    ran = run_worker(tmp_path, SHUFFLE, ns, every=5, in_process=False)
    assert ran.commitment.determinism.threads == torch.get_num_threads()
    middle = ran.boundary_leaves()[1]
    assert ran.replay(middle).matches(ran.commitment)
    assert ran.replay(0, len(ran.commitment.leaves) - 1).matches(ran.commitment)
