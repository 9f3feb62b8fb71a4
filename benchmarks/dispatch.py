"""Dispatch overhead: a trivial cell from cell start to result in the kernel.

Starts its own devnet (coordinator + 2 providers on loopback) and a real
kernel, warms both up, then times the same trivial cell (one tensor op)
through ``%%gensyn_train``, through ipyparallel's ``%%px`` on a local cluster
with as many engines as the devnet has providers, and locally in the same
kernel; prints p50/p95/p99 of each and the ratios. Run:
``python -m benchmarks.dispatch [--quick] [--runs 50] [--gap 2] [--chain none]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._common import machine, percentile, print_table, running_devnet, running_kernel

__all__ = ["main", "run"]

CELL = "y = torch.ones(4) * 2\n"
ENGINES = 2

IPP_START = f"""
import ipyparallel as ipp
_cluster = ipp.Cluster(n={ENGINES}, log_level=40)
_rc = _cluster.start_and_connect_sync()
_rc.wait_for_engines({ENGINES}, timeout=120)
_rc.activate()
"""
IPP_STOP = "_cluster.stop_cluster_sync()"


def _time_cells(kc: Any, code: str, runs: int, gap: float = 0.0) -> list[float]:
    times = []
    for _ in range(runs):
        time.sleep(gap)
        started = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
        times.append((time.perf_counter() - started) * 1000)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content']}")
    return times


def run(
    *,
    quick: bool = False,
    runs: int | None = None,
    gap: float | None = None,
    chain: str = "none",
    ipyparallel: bool = True,
) -> None:
    """Print the dispatch table: remote, ipyparallel and local, with ratios."""
    runs = runs or (3 if quick else 50)
    gap = (0.2 if quick else 2.0) if gap is None else gap
    rows: list[tuple[str, list[float]]] = []
    remote = "%%gensyn_train\n" + CELL
    with (
        running_devnet(providers=ENGINES, chain=chain) as devnet,
        running_kernel(devnet.env) as (kc, _pid),
    ):
        _time_cells(kc, "%load_ext gensyn_jupyter\nimport torch", 1)
        _time_cells(kc, remote, 3)  # devnet found, workers forked
        rows.append((f"%%gensyn_train, {gap:g} s apart", _time_cells(kc, remote, runs, gap)))
        rows.append(("%%gensyn_train, back to back", _time_cells(kc, remote, runs)))
        if ipyparallel:
            _time_cells(kc, IPP_START, 1)
            try:
                _time_cells(kc, "%px import torch", 1)
                _time_cells(kc, "%%px\n" + CELL, 3)
                name = f"ipyparallel %%px, {ENGINES} engines, {gap:g} s apart"
                rows.append((name, _time_cells(kc, "%%px\n" + CELL, runs, gap)))
            finally:
                _time_cells(kc, IPP_STOP, 1)
        rows.append(("local, same kernel", _time_cells(kc, CELL, runs)))
    base = {name: percentile(values, 0.5) for name, values in rows}
    ipp_p50 = next((v for k, v in base.items() if k.startswith("ipyparallel")), float("nan"))
    local_p50 = base["local, same kernel"]
    print_table(
        f"dispatch of a trivial cell, {runs} runs each, chain {chain} ({machine()})",
        ["path", "p50 ms", "p95 ms", "p99 ms", "p50 / ipyparallel (goal <= 2)", "p50 / local"],
        [
            [
                name,
                percentile(v, 0.5),
                percentile(v, 0.95),
                percentile(v, 0.99),
                percentile(v, 0.5) / ipp_p50,
                percentile(v, 0.5) / local_p50,
            ]
            for name, v in rows
        ],
    )
    print("goal: %%gensyn_train p50 <= 250 ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 runs of each, 0.2 s apart")
    parser.add_argument("--runs", type=int, default=None, help="runs of each path (default 50)")
    parser.add_argument(
        "--gap",
        type=float,
        default=None,
        help="seconds between runs, as between a user's cells (default 2; quick 0.2)",
    )
    parser.add_argument(
        "--chain",
        default="none",
        choices=["auto", "anvil", "embedded", "none"],
        help="the devnet's escrow chain; 'none' (default) measures a free network",
    )
    parser.add_argument("--no-ipyparallel", action="store_true", help="skip the %%px baseline")
    args = parser.parse_args(argv)
    os.environ.setdefault("GENSYN_PROGRESS", "none")
    run(
        quick=args.quick,
        runs=args.runs,
        gap=args.gap,
        chain=args.chain,
        ipyparallel=not args.no_ipyparallel,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
