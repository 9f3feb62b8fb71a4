"""Training throughput: a real small model on a provider against the same loop run locally.

Two models on scikit-learn's packaged digits (1,797 8x8 images, 10 classes):
an MLP (64-256-256-10) and a small CNN (two 3x3 convolutions, 16 and 32
channels, then a linear layer), Adam, batches of 64 from a shuffling
DataLoader. The cell times its own loop (so dispatch and transfer are not
counted) with autolog and metric streaming on, without checkpoint commitments
(``--checkpoint-every 0``) and then with them (the default, the cost of
verification stated apart). The baseline is the same
source run by ``exec`` in a fresh local process with the provider's torch
thread count, alternating with the remote runs; the figure is the ratio of
steps/s. Run: ``python -m benchmarks.training [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from typing import Any

from ._common import machine, print_table, running_devnet

__all__ = ["main", "run"]

SETUP = """
import torch
from sklearn.datasets import load_digits
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0
Y = torch.tensor(digits.target, dtype=torch.long)
torch.manual_seed(0)
if KIND == "mlp":
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
else:
    X = X.reshape(-1, 1, 8, 8)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
"""

CELL = """
import time
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=64, shuffle=True)
steps = 0
started = time.perf_counter()
while steps < STEPS:
    for xb, yb in loader:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps == STEPS:
            break
elapsed = time.perf_counter() - started
threads = torch.get_num_threads()
"""

LOCAL = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
KIND, STEPS = sys.argv[1], int(sys.argv[2])
exec(SETUP)
exec(CELL)
print(elapsed)
"""


def _namespace(kind: str, steps: int) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "__main__", "KIND": kind, "STEPS": steps}
    exec(SETUP, ns)
    return ns


def _remote(client: Any, kind: str, steps: int, every: int | None) -> tuple[float, int]:
    from gensyn_jupyter.kernel import TrainOptions, train_cell

    ns = _namespace(kind, steps)
    options = TrainOptions(checkpoint_every=every)
    train_cell(CELL, ns, options=options, client=client, say=lambda _: None)
    return steps / float(ns["elapsed"]), int(ns["threads"])


def _local(kind: str, steps: int, threads: int) -> float:
    program = f"SETUP = {SETUP!r}\nCELL = {CELL!r}\n{LOCAL}"
    out = subprocess.run(
        [sys.executable, "-c", program, kind, str(steps), str(threads)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return steps / float(out.strip().splitlines()[-1])


def run(*, quick: bool = False) -> None:
    """Print the table of steps/s, remote against local, for both models."""
    from gensyn_jupyter.kernel import CoordinatorClient

    steps, rounds = (100, 1) if quick else (2000, 3)
    rows: list[list[object]] = []
    with running_devnet(providers=1) as devnet:
        client = CoordinatorClient(base_url=devnet.url)
        try:
            _remote(client, "mlp", 20, None)  # warm: the worker imports sklearn, torch ops
            for kind in ("mlp", "cnn"):
                plain: list[float] = []
                committed: list[float] = []
                local: list[float] = []
                threads = 1
                for _ in range(rounds):
                    rate, threads = _remote(client, kind, steps, 0)
                    plain.append(rate)
                    committed.append(_remote(client, kind, steps, None)[0])
                    local.append(_local(kind, steps, threads))
                r, c = statistics.median(plain), statistics.median(committed)
                base = statistics.median(local)
                rows.append([kind, steps, threads, base, r, r / base, c, c / r])
        finally:
            client.close()
    print_table(
        f"training throughput, remote vs local ({machine()})",
        [
            "model",
            "steps",
            "threads",
            "local steps/s",
            "remote steps/s, no commitments",
            "ratio (goal >= 0.97)",
            "remote steps/s, commitments (default)",
            "commitments / none",
        ],
        rows,
    )
    print(
        "remote: a provider of a devnet, autolog and metric streaming on, verification none "
        "(--checkpoint-every 0), then the same with the default checkpoint commitments; "
        f"median of {rounds} alternating runs each"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 steps, one round")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
