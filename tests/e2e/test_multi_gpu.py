"""``--gpus 2`` on CPU providers: two gloo ranks of one cell, data parallel, rank 0 returns.

A real kernel and the session's devnet (its providers have 2 cores each, so
2 CPU ranks fit). The check that matters: the model that comes back is the
one data-parallel training gives (each step averages the gradients of two
half batches), not what one process on the whole loader would give.
"""

from __future__ import annotations

import json

from ._kernel import Kernel

SETUP = """
import torch
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
X = torch.randn(64, 4)
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
loader = DataLoader(TensorDataset(X, Y), batch_size=8)
model = torch.nn.Linear(4, 1)
start = {k: v.clone() for k, v in model.state_dict().items()}
opt = torch.optim.SGD(model.parameters(), lr=0.05)
"""

CELL = """%%gensyn_train --gpus 2 -o run
import os
seen = 0
for epoch in range(3):
    for x, y in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        seen += len(x)
world = os.environ["WORLD_SIZE"]
"""

# What two ranks compute: rank r takes samples r, r+2, r+4... in batches of 8, so
# one step averages the gradients of two batches of 8 = the gradient of the mean
# loss over the 16 samples of both (the same 16 a batch of 16 takes in order).
REFERENCE = """
ref = torch.nn.Linear(4, 1); ref.load_state_dict(start)
ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05)
single = torch.nn.Linear(4, 1); single.load_state_dict(start)
single_opt = torch.optim.SGD(single.parameters(), lr=0.05)
for epoch in range(3):
    for x, y in DataLoader(TensorDataset(X, Y), batch_size=16):
        ref_opt.zero_grad(); torch.nn.functional.mse_loss(ref(x), y).backward(); ref_opt.step()
    for x, y in DataLoader(TensorDataset(X, Y), batch_size=8):
        single_opt.zero_grad()
        torch.nn.functional.mse_loss(single(x), y).backward()
        single_opt.step()
print(json.dumps({
    "dp": all(torch.allclose(a, b, atol=1e-6) for a, b in
              zip(model.state_dict().values(), ref.state_dict().values())),
    "single": all(torch.allclose(a, b, atol=1e-6) for a, b in
                  zip(model.state_dict().values(), single.state_dict().values())),
    "seen": seen, "world": world,
    "series": run.metrics, "ranks": sorted({len(run.metric(n)[0]) for n in run.metrics}),
    "loader_back": loader.batch_size == 8 and type(loader.sampler).__name__,
}))
"""


def test_two_cpu_ranks_train_data_parallel_and_rank_0_returns(kernel: Kernel) -> None:
    setup = kernel.run(SETUP)
    assert setup.status == "ok", setup.text
    run = kernel.run(CELL)
    assert run.status == "ok", run.text
    assert "2 ranks, torch.distributed gloo process group started" in run.text
    assert "`loader` sharded per rank" in run.text
    check = kernel.run("import json\n" + REFERENCE)
    assert check.status == "ok", check.text
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["dp"] is True, got  # the weights data-parallel training gives
    assert got["single"] is False, got  # and not one process over the whole loader
    assert got["seen"] == 3 * 32  # rank 0 saw its half of the data each epoch
    assert got["world"] == "2"
    assert got["series"] == ["loss", "loss (rank 1)"]  # every rank's loss, labelled
    assert got["ranks"] == [12]  # 3 epochs x 4 steps on each rank
    assert got["loader_back"] == "SequentialSampler"  # the notebook's loader is untouched


def test_a_rank_that_fails_fails_the_cell_with_its_error(kernel: Kernel) -> None:
    run = kernel.run(
        "%%gensyn_train --gpus 2\n"
        "import torch.distributed as dist\n"
        "if dist.get_rank() == 1:\n"
        "    raise ValueError('no data on rank 1')\n"
        "t = torch.ones(2)\n"
        "dist.all_reduce(t)\n",
        timeout=180,
    )
    assert run.status == "error"
    assert "rank 1 failed: ValueError: no data on rank 1" in run.text


def test_a_cell_with_its_own_ddp_keeps_it(kernel: Kernel) -> None:
    made = kernel.run("net = torch.nn.Linear(3, 1)\nbefore = net.weight.detach().clone()")
    assert made.status == "ok", made.text
    run = kernel.run(
        "%%gensyn_train --gpus 2\n"
        "import torch.distributed as dist\n"
        "from torch.nn.parallel import DistributedDataParallel\n"
        "ddp = DistributedDataParallel(net)\n"
        "o = torch.optim.SGD(ddp.parameters(), lr=0.1)\n"
        "x = torch.full((4, 3), float(dist.get_rank() + 1))\n"
        "ddp(x).sum().backward()\n"
        "o.step()\n"
        "ranks = dist.get_world_size()\n"
        "del ddp\n",
        timeout=180,
    )
    assert run.status == "ok", run.text
    assert "the cell sets up data parallelism itself" in run.text, run.text
    # DDP averaged the gradients of inputs 1 and 2: each weight moved by 0.1 * 4 * 1.5
    out = kernel.run("print(ranks, round(float((before - net.weight).mean()), 4))")
    assert out.stdout.strip() == "2 0.6", out.text


def test_spot_verification_of_several_ranks_is_refused_before_anything_is_sent(
    kernel: Kernel,
) -> None:
    run = kernel.run("%%gensyn_train --gpus 2 --verify spot\nx = 1\n")
    assert run.status == "error"
    assert "use --verify replicate" in run.text
