"""Dispatch overhead: a trivial cell from cell start to result in the kernel.

Starts its own devnet (coordinator + 2 providers on loopback) and a real
kernel, warms both up, then times the same trivial cell ``--runs`` times
through ``%%gensyn_train`` and locally in the same kernel, and prints p50/p95
of each and their ratio. Run: ``python -m benchmarks.dispatch [--runs 20]``.
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

from jupyter_client import BlockingKernelClient

CELL = "y = torch.ones(4) * 2\n"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _time_cells(kc: BlockingKernelClient, code: str, runs: int, gap: float = 0.0) -> list[float]:
    times = []
    for _ in range(runs):
        time.sleep(gap)
        started = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        times.append((time.perf_counter() - started) * 1000)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content']}")
    return times


def main() -> int:
    from jupyter_client import KernelManager

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--gap",
        type=float,
        default=6.0,
        help="seconds between remote runs, as between a user's cells (the provider "
        "re-warms a worker after each task; 0 measures back-to-back cells)",
    )
    parser.add_argument(
        "--chain",
        default="auto",
        choices=["auto", "anvil", "embedded", "none"],
        help="the devnet's escrow chain; 'none' measures a free network",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gensyn-bench-"))
    env = {**os.environ, "GENSYN_HOME": str(home)}
    gensyn = [sys.executable, "-m", "gensyn_jupyter"]
    subprocess.run(
        [*gensyn, "devnet", "up", "--detach", "--chain", args.chain],
        env=env,
        check=True,
        capture_output=True,
    )
    km = KernelManager(kernel_name="python3")
    try:
        km.start_kernel(env=env)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        _time_cells(kc, "%load_ext gensyn_jupyter\nimport torch", 1)
        _time_cells(kc, "%%gensyn_train\n" + CELL, 3)  # warm: devnet found, workers forked
        remote = _time_cells(kc, "%%gensyn_train\n" + CELL, args.runs, args.gap)
        back_to_back = _time_cells(kc, "%%gensyn_train\n" + CELL, args.runs)
        local = _time_cells(kc, CELL, args.runs)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
        subprocess.run([*gensyn, "devnet", "down"], env=env, check=False, capture_output=True)
    print(
        f"dispatch of a trivial cell, {args.runs} runs each, chain {args.chain}, "
        f"on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print(f"{'':<24}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    rows = (
        (f"remote, {args.gap:g} s apart", remote),
        ("remote, back to back", back_to_back),
        ("local, same kernel", local),
    )
    for name, values in rows:
        print(
            f"{name:<24}{_percentile(values, 0.5):>10.1f}{_percentile(values, 0.95):>10.1f}"
            f"{statistics.fmean(values):>10.1f}"
        )
    ratio = _percentile(remote, 0.5) / max(_percentile(local, 0.5), 1e-9)
    print(f"ratio remote/local at p50: {ratio:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
