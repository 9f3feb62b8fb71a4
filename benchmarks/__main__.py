"""Run the benchmarks: ``python -m benchmarks [--quick] [--only NAME ...]`` (or ``gensyn bench``).

Each benchmark prints a table of its figures beside a baseline measured in
the same run. The exit status is non-zero only when a benchmark fails to
run, never because a figure is slow (timings on shared machines are noisy).
``--quick`` is the CI run: small sizes and few repetitions, a few minutes in all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

__all__ = ["BENCHMARKS", "main"]

# name -> what it measures (each module has run(quick=...))
BENCHMARKS: dict[str, str] = {
    "dispatch": "a trivial cell: %%gensyn_train vs ipyparallel %%px vs local",
    "training": "steps/s of an MLP and a CNN on a provider vs the same loop locally",
    "transfer": "upload/download MB/s of a dataset and a state dict; bytes re-sent",
    "warmstart": "lease to first training step, warm worker vs cold start",
    "memory": "peak RSS of the kernel streaming metrics, of the coordinator holding tasks",
    "scaling": "coordinator leases/s and metric points/s as providers and kernels grow",
    "verification": "spot replay and replicate dispute cost vs the run; deterministic mode",
    "load": "paid tasks/s and queue wait: 1 coordinator vs 2 replicas on PostgreSQL, with kills",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gensyn bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("GENSYN_PROGRESS", "none")
    failed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        print(f"\n## {name}: {BENCHMARKS[name]}", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"{name}: FAILED", flush=True)
        print(f"({name} took {time.perf_counter() - started:.0f} s)", flush=True)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
