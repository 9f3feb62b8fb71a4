"""Load on two coordinator replicas on PostgreSQL, with a provider and a replica killed.

``python -m benchmarks.load [--quick] [--tasks N] [--kernels K] [--providers M]``

K simulated kernels (threads) each submit their share of N small tasks one
after another (submit, wait until it settles, next), to either replica and
failing over to the other when one is down. M provider processes
(``python -m benchmarks._replicas``) long-poll leases on both replicas, compute
``y = x * x``, upload it and post the result. During the run one provider is
SIGKILLed (and a new one started) and replica B is SIGKILLed and restarted.
A task that failed because its provider was killed mid-run (it posted no
checkpoint) is submitted again by its kernel, as a user would re-run the cell.

Prints tasks/s and p50/p95 queued -> running, beside the same load on one
coordinator on SQLite without faults (the baseline of the same run), and
checks that each job settled exactly once with the right result, that no
task was leased twice (from the providers' own logs and the database), and
that no task ran twice. Payments: a free network (no chain), nothing is paid.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._common import machine, percentile, print_table
from ._replicas import Replica, job_value, request_any, running_postgres, submit_job

__all__ = ["main", "run"]

_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class _Load:
    """What one run saw."""

    urls: list[str]
    leases: list[tuple[str, str]] = field(default_factory=list)
    settled: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    resubmitted: int = 0
    why: collections.Counter[str] = field(default_factory=collections.Counter)
    wrong: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done_count: int = 0


def _kernel(load: _Load, jobs: list[int], index: int, deadline: float) -> None:
    urls = load.urls
    for n in jobs:
        while True:
            task_id = submit_job(urls, n, deadline=deadline, prefer=index % len(urls))
            task = _wait_task(urls, task_id, deadline, prefer=index)
            if task["state"] == "settled":
                break
            with load.lock:
                load.resubmitted += 1
                load.why[str(task.get("error") or task["state"])[:90]] += 1
        values = task["result"]["values"]
        blob = request_any(urls, "GET", f"/v1/blobs/{values}", deadline=deadline, prefer=index + 1)
        with load.lock:
            load.settled.setdefault(n, []).append(task)
            load.done_count += 1
            if json.loads(blob.content) != job_value(n):
                load.wrong.append(n)


def _wait_task(urls: list[str], task_id: str, deadline: float, prefer: int) -> dict[str, Any]:
    while True:
        r = request_any(urls, "GET", f"/v1/tasks/{task_id}", deadline=deadline, prefer=prefer)
        task: dict[str, Any] = r.json()
        if task["state"] in {"settled", "failed", "cancelled", "expired"}:
            return task
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {task['state']} at the deadline")
        time.sleep(0.2)


class _Providers:
    """Provider processes; each prints ``lease PROVIDER TASK`` lines, read by a thread."""

    def __init__(self, load: _Load, log_dir: Path) -> None:
        self.load, self.log_dir = load, log_dir
        self.procs: list[subprocess.Popen[str]] = []
        self.readers: list[threading.Thread] = []

    def start(self, index: int) -> None:
        urls = self.load.urls[index % 2 :] + self.load.urls[: index % 2]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        stderr = (self.log_dir / f"provider-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._replicas", f"p{index}", *urls],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        stderr.close()
        self.procs.append(proc)
        assert proc.stdout is not None
        reader = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        reader.start()
        self.readers.append(reader)

    def _read(self, out: IO[str]) -> None:
        for line in out:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "lease":
                with self.load.lock:
                    self.load.leases.append((parts[1], parts[2]))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)
        for reader in self.readers:
            reader.join(5)


def _drive(
    load: _Load,
    *,
    tasks: int,
    kernels: int,
    faults: list[tuple[float, Any]],
    within: float,
) -> float:
    """Run the kernels to the end; ``faults``: (fraction of jobs done, action). Seconds taken."""
    deadline = time.monotonic() + within
    shares = [list(range(k, tasks, kernels)) for k in range(kernels)]
    started = time.monotonic()
    threads = [
        threading.Thread(target=_kernel, args=(load, share, k, deadline), daemon=True)
        for k, share in enumerate(shares)
    ]
    for t in threads:
        t.start()
    pending = sorted(faults, key=lambda f: f[0])
    while any(t.is_alive() for t in threads):
        if pending and load.done_count >= pending[0][0] * tasks:
            _, action = pending.pop(0)
            action()
        if time.monotonic() > deadline + 30:
            raise TimeoutError(f"the load did not finish in {within:g} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _figures(label: str, load: _Load, seconds: float, tasks: int) -> list[object]:
    waits = [t["started_at"] - t["created_at"] for ts in load.settled.values() for t in ts]
    return [
        label,
        tasks,
        seconds,
        len(load.settled) / seconds,
        percentile(waits, 0.5) * 1000,
        percentile(waits, 0.95) * 1000,
        load.resubmitted,
    ]


def _check(load: _Load, tasks: int, db_url: str | None) -> list[str]:
    """What went wrong (nothing: an empty list)."""
    problems = []
    if sorted(load.settled) != list(range(tasks)):
        problems.append(f"jobs never settled: {sorted(set(range(tasks)) - set(load.settled))}")
    twice = sorted(n for n, ts in load.settled.items() if len(ts) != 1)
    if twice:
        problems.append(f"jobs settled more than once: {twice}")
    if load.wrong:
        problems.append(f"jobs with a wrong result: {sorted(load.wrong)}")
    leased = collections.Counter(task for _, task in load.leases)
    if [t for t, c in leased.items() if c > 1]:
        problems.append(
            f"tasks leased twice (provider logs): {[t for t, c in leased.items() if c > 1]}"
        )
    if db_url is not None:
        from sqlalchemy import create_engine, func, select

        from gensyn_jupyter.coordinator._db import LeaseRow

        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(LeaseRow.task_id, func.count()).group_by(LeaseRow.task_id)
                ).all()
        finally:
            engine.dispose()
        double = [t for t, c in rows if c > 1]
        if double:
            problems.append(f"tasks with two lease rows (database): {double}")
    return problems


def _on_replicas(
    work: Path, tasks: int, kernels: int, providers: int, faults: bool
) -> tuple[list[object], list[str]]:
    """The load on two replicas on a fresh PostgreSQL; its figures and problems."""
    work.mkdir(parents=True)
    with running_postgres() as db_url:
        a = Replica(db_url, work / "data", work / "a.log")
        b = Replica(db_url, work / "data", work / "b.log")
        a.start()
        b.start()
        load = _Load([a.url, b.url])
        procs = _Providers(load, work)

        def kill_provider() -> None:
            print(f"  SIGKILL provider p0 (pid {procs.procs[0].pid}) at {load.done_count} done")
            procs.procs[0].kill()
            procs.start(0)

        def kill_replica() -> None:
            print(f"  SIGKILL replica B ({b.url}) at {load.done_count} done; restarting it")
            b.kill()
            time.sleep(1.0)
            b.start()

        try:
            for i in range(providers):
                procs.start(i)
            seconds = _drive(
                load,
                tasks=tasks,
                kernels=kernels,
                faults=[(0.3, kill_provider), (0.5, kill_replica)] if faults else [],
                within=600.0,
            )
        finally:
            procs.stop()
            a.stop()
            b.stop()
        label = "2 replicas, PostgreSQL" + (", 1 provider + 1 replica killed" if faults else "")
        problems = [f"{label}: {p}" for p in _check(load, tasks, db_url)]
        for why, count in load.why.most_common():
            print(f"  {label}: re-run {count}x after: {why}")
        return _figures(label, load, seconds, tasks), problems


def run(
    *,
    quick: bool = False,
    tasks: int | None = None,
    kernels: int | None = None,
    providers: int | None = None,
    baseline: bool = True,
) -> list[str]:
    """Run the load (and the baseline); print the table; return the problems found."""
    tasks = tasks or (40 if quick else 200)
    kernels = kernels or (8 if quick else 20)
    providers = providers or (6 if quick else 20)
    within = 600.0
    print(machine())
    print(f"{tasks} tasks from {kernels} simulated kernels, {providers} provider processes")
    rows: list[list[object]] = []
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="gensyn-load-"))
    if baseline:
        replica = Replica(f"sqlite:///{work / 'base.sqlite'}", work / "base", work / "base.log")
        replica.start()
        load = _Load([replica.url])
        procs = _Providers(load, work)
        try:
            for i in range(providers):
                procs.start(i)
            seconds = _drive(load, tasks=tasks, kernels=kernels, faults=[], within=within)
        finally:
            procs.stop()
            replica.stop()
        rows.append(_figures("baseline: 1 coordinator, SQLite, no faults", load, seconds, tasks))
        problems += [f"baseline: {p}" for p in _check(load, tasks, None)]
    for faults in (False, True):
        figures, found = _on_replicas(
            work / f"replicas-{faults}", tasks, kernels, providers, faults
        )
        rows.append(figures)
        problems += found
    print_table(
        "load: jobs settled per second and queue wait",
        [
            "setup",
            "jobs",
            "s",
            "jobs/s",
            "p50 queued->running ms",
            "p95 queued->running ms",
            "re-run after a kill",
        ],
        rows,
    )
    print(
        "checks:",
        "every job settled exactly once with the right result; no task leased twice"
        if not problems
        else "; ".join(problems),
    )
    if problems:
        print(f"logs of the coordinators and providers: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="40 tasks, 8 kernels, 6 providers")
    parser.add_argument("--tasks", type=int, default=None, help="jobs in all (default 200)")
    parser.add_argument("--kernels", type=int, default=None, help="simulated kernels (default 20)")
    parser.add_argument(
        "--providers", type=int, default=None, help="provider processes (default 20)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the SQLite baseline")
    args = parser.parse_args(argv)
    problems = run(
        quick=args.quick,
        tasks=args.tasks,
        kernels=args.kernels,
        providers=args.providers,
        baseline=not args.no_baseline,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
