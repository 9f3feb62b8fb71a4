"""The metrics pipeline: throughput, latency, and what autolog costs a training loop.

1. points/s end to end: a cell logs N points with ``gensyn.log`` as fast as it
   can; timed from the first to the last point arriving in the kernel's handle.
2. latency provider → kernel: a cell logs its own clock every 10 ms; the kernel
   subtracts it from the arrival time (same machine, same clock).
3. autolog overhead: the same small-MLP loop with and without autolog, in this
   process, alternating, median steps/s of each.

Starts its own devnet. Run: ``python -m benchmarks.metrics [--points 100000]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gensyn_jupyter.config import read_devnet_state
from gensyn_jupyter.kernel import CoordinatorClient, TrainOptions, train_cell
from gensyn_jupyter.provider._autolog import Autolog

THROUGHPUT_CELL = """
for i in range(N):
    gensyn.log(step=i, x=float(i))
"""

LATENCY_CELL = """
import time
for i in range(N):
    gensyn.log(step=i, sent=time.time())
    time.sleep(0.01)
"""


def _quiet(message: str) -> None:
    pass


def _throughput(client: CoordinatorClient, n: int) -> tuple[float, int]:
    import gensyn_jupyter as gensyn

    ns: dict[str, Any] = {"__name__": "__main__", "gensyn": gensyn, "N": n}
    arrivals: list[float] = []
    handle = train_cell(
        THROUGHPUT_CELL, ns, options=TrainOptions(run_async=True), client=client, say=_quiet
    )
    seen = 0
    while not handle.done():
        count = len(handle.metric("x")[0])
        if count != seen:
            arrivals.append(time.perf_counter())
            seen = count
        time.sleep(0.005)
    handle.result()
    steps = handle.metric("x")[0]
    assert steps == list(range(n)), "points lost, duplicated or out of order"
    span = max(arrivals[-1] - arrivals[0], 1e-9) if len(arrivals) > 1 else float("nan")
    return n / span, len(steps)


def _latency(client: CoordinatorClient, n: int) -> list[float]:
    import gensyn_jupyter as gensyn

    ns: dict[str, Any] = {"__name__": "__main__", "gensyn": gensyn, "N": n}
    handle = train_cell(
        LATENCY_CELL, ns, options=TrainOptions(run_async=True), client=client, say=_quiet
    )
    latencies: list[float] = []
    seen = 0
    while not handle.done():
        _, values = handle.metric("sent")
        now = time.time()
        latencies.extend((now - sent) * 1000 for sent in values[seen:])
        seen = len(values)
        time.sleep(0.002)
    handle.result()
    return latencies


def _loop_rate(steps: int, autolog: bool) -> float:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    hooks = Autolog(emit=lambda points: None) if autolog else None
    if hooks:
        hooks.install()
    try:
        started = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps / (time.perf_counter() - started)
    finally:
        if hooks:
            hooks.uninstall()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--latency-points", type=int, default=300)
    parser.add_argument("--loop-steps", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gensyn-bench-"))
    env = {**os.environ, "GENSYN_HOME": str(home)}
    os.environ["GENSYN_PROGRESS"] = "none"
    gensyn = [sys.executable, "-m", "gensyn_jupyter"]
    subprocess.run([*gensyn, "devnet", "up", "--detach"], env=env, check=True, capture_output=True)
    try:
        state = read_devnet_state(home / "devnet")
        assert state is not None
        client = CoordinatorClient(base_url=state.url)
        rate, count = _throughput(client, args.points)
        latencies = sorted(_latency(client, args.latency_points))
    finally:
        subprocess.run([*gensyn, "devnet", "down"], env=env, check=False, capture_output=True)
    torch.set_num_threads(1)
    _loop_rate(200, False)
    plain, logged = [], []
    for _ in range(5):
        plain.append(_loop_rate(args.loop_steps, False))
        logged.append(_loop_rate(args.loop_steps, True))
    print(
        f"metrics pipeline on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__})"
    )
    print(f"end to end: {count} points, {rate:,.0f} points/s (goal >= 10,000)")
    p50 = latencies[len(latencies) // 2]
    p95 = latencies[int(len(latencies) * 0.95)]
    print(
        f"latency provider -> kernel over {len(latencies)} points: p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms (goal p50 <= 100)"
    )
    plain_rate, logged_rate = statistics.median(plain), statistics.median(logged)
    print(
        f"training loop, 1 thread: {plain_rate:,.0f} steps/s plain, {logged_rate:,.0f} steps/s "
        f"with autolog: ratio {logged_rate / plain_rate:.3f} (goal >= 0.97)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
