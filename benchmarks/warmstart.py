"""Provider warm start: from the lease to the cell's first training step.

What a provider does after a lease, minus the network: take a worker, hand
it the job (a captured cell whose bundle is already in the blob cache), and
wait until the cell's first optimizer step begins (the cell prints the
time). Three ways to have a worker:

- warm: a spare forked earlier from the fork server (the provider's default);
- fork at lease: no spare, the fork server forks one now;
- cold: no spare, no fork server: a new Python process imports torch now
  (the baseline: what a provider without a warm pool pays).

Run: ``python -m benchmarks.warmstart [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import machine, print_table

__all__ = ["main", "run"]

CELL = """
import time
for step in range(3):
    if step == 0:
        print("FIRST-STEP", time.time(), flush=True)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def _job(root: Path, index: int) -> dict[str, Any]:
    import torch

    from gensyn_jupyter.capture import build_bundle
    from gensyn_jupyter.protocol import sha256_hex

    model = torch.nn.Linear(64, 64)
    ns = {
        "torch": torch,
        "model": model,
        "opt": torch.optim.SGD(model.parameters(), lr=0.1),
        "x": torch.randn(32, 64),
    }
    prepared = build_bundle(CELL, ns)
    blob_dir = root / "blobs"
    blob_dir.mkdir(exist_ok=True)
    for sha, data in prepared.blobs.items():
        (blob_dir / sha).write_bytes(data)
    bundle = prepared.bundle_json()
    (blob_dir / sha256_hex(bundle)).write_bytes(bundle)
    workdir = root / f"task-{index}"
    workdir.mkdir()
    return {
        "workdir": str(workdir),
        "blob_dir": str(blob_dir),
        "bundle": sha256_hex(bundle),
        "device": "cpu",
        "threads": 1,
        "task_id": f"t-bench{index}",
        "checkpoint_dir": str(root / f"checkpoints-{index}"),
    }


def _first_step(worker: Any, job: dict[str, Any], started: float, timeout: float = 300) -> float:
    """Seconds from ``started`` (a ``time.time()``) to the cell's first step."""
    worker.start_job(job)
    stdout = worker.proc.stdout
    deadline = time.monotonic() + timeout
    for raw in stdout:
        line = raw.decode(errors="replace")
        if line.startswith("FIRST-STEP"):
            first = float(line.split()[1])
            worker.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            return first - started
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"the worker never reached its first step (exit {worker.proc.poll()})")


def run(*, quick: bool = False) -> None:
    """Print the warm-start table."""
    from gensyn_jupyter.provider._pool import Worker, WorkerPool, worker_environment

    rounds, cold_rounds = (3, 1) if quick else (10, 3)
    root = Path(tempfile.mkdtemp(prefix="gensyn-bench-warm-"))
    env = worker_environment(home=root / "home", threads=1)
    index = 0
    warm: list[float] = []
    at_lease: list[float] = []
    cold: list[float] = []
    pool = WorkerPool(env=env, cwd=root, size=1)
    try:
        pool.take(timeout=300).kill()  # the server has imported torch
        for _ in range(rounds):
            pool.replenish()
            spare = pool.take(timeout=300)  # a spare, already past "ready"
            job = _job(root, index := index + 1)
            warm.append(_first_step(spare, job, time.time()))
        for _ in range(rounds):
            job = _job(root, index := index + 1)
            started = time.time()
            assert pool._server is not None
            worker = Worker(env=env, cwd=root, server=pool._server)
            if not worker.wait_ready(300):
                raise RuntimeError("a forked worker did not start")
            at_lease.append(_first_step(worker, job, started))
    finally:
        pool.close()
    for _ in range(cold_rounds):
        job = _job(root, index := index + 1)
        started = time.time()
        worker = Worker(env=env, cwd=root)
        if not worker.wait_ready(300):
            raise RuntimeError("a cold worker did not start")
        cold.append(_first_step(worker, job, started))
    base = statistics.median(cold) * 1000
    rows = [
        [
            name,
            len(v),
            statistics.median(v) * 1000,
            max(v) * 1000,
            statistics.median(v) * 1000 / base,
        ]
        for name, v in (
            ("warm spare, forked earlier (the default)", warm),
            ("forked at the lease (no spare)", at_lease),
            ("cold start: new process imports torch (baseline)", cold),
        )
    ]
    print_table(
        f"lease to first training step, bundle cached ({machine()})",
        ["worker", "runs", "median ms", "max ms", "ratio to cold"],
        rows,
    )
    print("goal: warm start <= 100 ms plus data fetch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 warm runs, 1 cold")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
