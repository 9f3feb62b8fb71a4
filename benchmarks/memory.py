"""Memory: the kernel streaming a long metric series, the coordinator holding many tasks.

1. A real kernel runs ``%%gensyn_train`` on a cell that logs N points with
   ``gensyn.log`` (1,000,000; quick 20,000) while its live monitor widget
   follows; a thread samples the kernel's RSS every 50 ms. Baseline: the same
   kernel's RSS just before the cell, and the bytes of N float64 values.
2. A bare coordinator gets N queued tasks (10,000; quick 200) through its
   API; its RSS before and after, and the time per submission.

Run: ``python -m benchmarks.memory [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from ._common import (
    machine,
    print_table,
    rss_mb,
    running_devnet,
    running_kernel,
    start_coordinator,
)

__all__ = ["main", "run"]

LOG_CELL = "for i in range(N):\n    gensyn.log(step=i, x=float(i))\n"


class _PeakSampler:
    """The highest RSS of ``pid`` seen by a thread sampling every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _kernel_rows(points: int) -> list[list[object]]:
    rows: list[list[object]] = []
    with running_devnet(providers=1) as devnet, running_kernel(devnet.env) as (kc, pid):
        _execute(kc, "%load_ext gensyn_jupyter\nimport gensyn_jupyter as gensyn\nN = 100\n")
        _execute(kc, "%%gensyn_train\n" + LOG_CELL)  # warm: imports, widget, devnet
        _execute(kc, f"N = {points}")
        before = rss_mb(pid)
        started = time.perf_counter()
        with _PeakSampler(pid) as sampler:
            _execute(kc, "%%gensyn_train\n" + LOG_CELL)
        elapsed = time.perf_counter() - started
        after = rss_mb(pid)
    rows.append(["kernel before the cell (baseline)", points, before, 0.0, ""])
    rows.append(
        [
            f"kernel peak while streaming ({elapsed:.0f} s)",
            points,
            sampler.peak,
            sampler.peak - before,
            f"{(sampler.peak - before) * 1e6 / points:.0f} B/point",
        ]
    )
    rows.append(["kernel after the cell", points, after, after - before, ""])
    rows.append(["N float64 values (for scale)", points, points * 8 / 1e6, points * 8 / 1e6, ""])
    return rows


def _execute(kc: Any, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=900, output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content']}")


def _coordinator_rows(tasks: int) -> list[list[object]]:
    import httpx

    from gensyn_jupyter.capture import build_bundle
    from gensyn_jupyter.protocol import BlobClient, sha256_hex

    prepared = build_bundle("x = 1\n", {})
    bundle = prepared.bundle_json()
    with start_coordinator() as (url, proc), httpx.Client(base_url=url, timeout=60) as http:
        BlobClient(client=http).upload_missing({**prepared.blobs, sha256_hex(bundle): bundle})
        spec = {"bundle": sha256_hex(bundle), "label": "memory benchmark"}
        http.post("/v1/tasks", json=spec).raise_for_status()
        before = rss_mb(proc.pid)
        started = time.perf_counter()
        for _ in range(tasks - 1):
            http.post("/v1/tasks", json=spec).raise_for_status()
        elapsed = time.perf_counter() - started
        listed = time.perf_counter()
        http.get("/v1/tasks", params={"limit": 1000}).raise_for_status()
        list_ms = (time.perf_counter() - listed) * 1000
        after = rss_mb(proc.pid)
    per_task = elapsed / max(1, tasks - 1) * 1000
    return [
        ["coordinator with 1 task (baseline)", 1, before, 0.0, ""],
        [
            f"coordinator with {tasks:,} queued tasks",
            tasks,
            after,
            after - before,
            f"{per_task:.1f} ms per submission; GET {min(tasks, 1000):,} tasks {list_ms:.0f} ms",
        ],
    ]


def run(*, quick: bool = False) -> None:
    """Print the memory table."""
    points, tasks = (20_000, 200) if quick else (1_000_000, 10_000)
    rows = _kernel_rows(points) + _coordinator_rows(tasks)
    print_table(
        f"memory ({machine()})",
        ["process", "points / tasks", "RSS MB", "over baseline MB", "note"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 points, 200 tasks")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
