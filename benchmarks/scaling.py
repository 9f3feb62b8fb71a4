"""Coordinator scaling: leases/s and metric points/s as providers and kernels grow.

A bare coordinator process on loopback; N simulated kernels submit tasks
(one shared bundle) and N simulated providers lease them, post their metric
points (``POINTS`` per task, in two batches) and a result, as fast as they
can, for N in 1, 5, 20. The clients are processes of their own (no shared
GIL), on the same cores as the coordinator: the figures are what one
machine sustains end to end, not the coordinator alone. Baseline: N = 1.
The curve is saved as ``benchmarks/results/scaling.png``.

Run: ``python -m benchmarks.scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from ._common import machine, print_table, start_coordinator

__all__ = ["main", "run"]

POINTS = 200
RESULTS = Path(__file__).resolve().parent / "results"


def _kernel(url: str, spec: dict[str, Any], count: int, errors: list[str]) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(count):
            response = http.post("/v1/tasks", json=spec)
            if response.status_code != 201:
                errors.append(f"submit: {response.status_code} {response.text[:200]}")
                return


def _provider(url: str, name: str, stop: Any, done: Any, errors: Any) -> None:
    from gensyn_jupyter.protocol import EventIn, ResultManifest
    from gensyn_jupyter.provider._client import ProviderClient
    from gensyn_jupyter.provider._hardware import detect_hardware

    client = ProviderClient(base_url=url)
    try:
        client.register(detect_hardware(name=name, device="cpu"))
        half = POINTS // 2
        while not stop.is_set():
            lease = client.lease(wait=0.5)
            if lease is None:
                continue
            for start in (0, half):
                points = [
                    {"step": s, "name": "loss", "value": 1.0 / (s + 1)}
                    for s in range(start, start + half)
                ]
                client.post_events(lease.id, [EventIn(kind="metrics", data={"points": points})])
            client.post_result(lease.id, ResultManifest(steps=POINTS))
            with done.get_lock():
                done.value += 1
    except Exception as exc:  # reported, not raised: the table says what failed
        errors.put(f"{name}: {exc}")
    finally:
        client.close()


def _round(n: int, tasks: int) -> tuple[float, float]:
    """(leases/s, metric points/s) with ``n`` kernels and ``n`` providers."""
    import httpx

    from gensyn_jupyter.capture import build_bundle
    from gensyn_jupyter.protocol import BlobClient, sha256_hex

    prepared = build_bundle("x = 1\n", {})
    bundle = prepared.bundle_json()
    ctx = multiprocessing.get_context("fork")
    errors: Any = ctx.Queue()
    done: Any = ctx.Value("i", 0)
    stop: Any = ctx.Event()
    failure: str | None = None
    with start_coordinator() as (url, _proc):
        with httpx.Client(base_url=url, timeout=60) as http:
            BlobClient(client=http).upload_missing({**prepared.blobs, sha256_hex(bundle): bundle})
        spec = {"bundle": sha256_hex(bundle), "label": "scaling benchmark"}
        providers = [
            ctx.Process(target=_provider, args=(url, f"sim-{i}", stop, done, errors))
            for i in range(n)
        ]
        for process in providers:
            process.start()
        time.sleep(1.0)  # registered
        started = time.perf_counter()
        kernels = [
            ctx.Process(target=_kernel, args=(url, spec, tasks // n, errors)) for _ in range(n)
        ]
        for process in kernels:
            process.start()
        expected = (tasks // n) * n
        deadline = time.monotonic() + 600
        while done.value < expected and errors.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        stop.set()
        for process in kernels + providers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        if not errors.empty():
            failure = str(errors.get())
    if failure is not None:
        raise RuntimeError(f"with {n} providers: {failure}")
    if done.value < expected:
        raise RuntimeError(f"with {n} providers: {done.value} of {expected} tasks done in 600 s")
    return expected / elapsed, expected * POINTS / elapsed


def _plot(sizes: list[int], leases: list[float], points: list[float]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return None
    RESULTS.mkdir(exist_ok=True)
    fig, left = plt.subplots(figsize=(6, 3.6), dpi=120)
    left.plot(sizes, leases, "o-", color="tab:blue", label="leases/s")
    left.set_xlabel("providers = kernels")
    left.set_ylabel("leases/s", color="tab:blue")
    left.set_xscale("log")
    left.set_xticks(sizes, [str(s) for s in sizes])
    right = left.twinx()
    right.plot(sizes, points, "s--", color="tab:orange", label="metric points/s")
    right.set_ylabel("metric points/s", color="tab:orange")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.set_title("coordinator throughput (one machine, clients included)")
    fig.tight_layout()
    path = RESULTS / "scaling.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def run(*, quick: bool = False) -> None:
    """Print the scaling table and save the plot (full run only)."""
    sizes, tasks = ([1, 5], 20) if quick else ([1, 5, 20], 400)
    rows: list[list[object]] = []
    leases: list[float] = []
    points: list[float] = []
    for n in sizes:
        lease_rate, point_rate = _round(n, tasks)
        leases.append(lease_rate)
        points.append(point_rate)
        rows.append([n, (tasks // n) * n, lease_rate, point_rate, lease_rate / leases[0]])
    print_table(
        f"coordinator throughput, {POINTS} metric points per task ({machine()})",
        ["providers = kernels", "tasks", "leases/s", "metric points/s", "leases/s ratio to N=1"],
        rows,
    )
    if not quick:
        path = _plot(sizes, leases, points)
        if path is not None:
            print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1 and 5, 20 tasks each")
    args = parser.parse_args(argv)
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
