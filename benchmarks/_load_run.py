"""One load run of ``benchmarks/load.py``: kernels, provider processes, faults, what they saw.

The kernels are threads (:func:`drive`); the providers are processes
(``python -m benchmarks._load_actors``, :class:`Providers`) whose printed
lines a thread per process reads. :func:`check_run` checks what the kernels
got and the coordinators' database; :func:`state_times` reads when each task
entered each state (the coordinators' own clock, from their ``state`` events).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._load_actors import PaidKernel
from ._load_chain import PaidChain
from ._replicas import job_value, request_any, submit_job

__all__ = ["Load", "Providers", "check_run", "drive", "state_times"]

_ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 60
"""Each paid task's ``max_seconds``: its escrow is 60 GPU-seconds at the devnet's rate."""


@dataclass
class Load:
    """What one run saw."""

    urls: list[str]
    chain: PaidChain | None = None
    train_seconds: float = 0.02
    leases: list[tuple[str, str]] = field(default_factory=list)
    commits: list[tuple[str, str]] = field(default_factory=list)
    beats: dict[str, int] = field(default_factory=dict)
    """Heartbeats each provider (by id) sent, as it last reported."""
    provider_of_process: dict[int, str] = field(default_factory=dict)
    settled: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    submitted: dict[str, str | None] = field(default_factory=dict)
    """Every task id a kernel submitted -> its account (None on a free network)."""
    resubmitted: int = 0
    why: collections.Counter[str] = field(default_factory=collections.Counter)
    wrong: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done_count: int = 0


def _kernel(load: Load, jobs: list[int], index: int, deadline: float) -> None:
    try:
        _run_kernel(load, jobs, index, deadline)
    except Exception:
        with load.lock:
            load.errors.append(f"kernel {index}: {traceback.format_exc(limit=4)}")


def _run_kernel(load: Load, jobs: list[int], index: int, deadline: float) -> None:
    urls = load.urls
    paid: PaidKernel | None = None
    if load.chain is not None:
        account = load.chain.kernel(index)
        paid = PaidKernel(urls, account, load.chain.market_for_thread(), index)
    auth = paid.auth if paid is not None else {}  # a paid task is visible to its owner only
    for n in jobs:
        while True:
            if paid is not None:
                task_id = paid.submit(n, deadline=deadline, max_seconds=MAX_SECONDS)
            else:
                task_id = submit_job(urls, n, deadline=deadline, prefer=index % len(urls))
            with load.lock:
                load.submitted[task_id] = paid.account.address if paid is not None else None
            task = _wait_task(urls, task_id, deadline, prefer=index, headers=auth)
            if task["state"] == "settled":
                break
            with load.lock:
                load.resubmitted += 1
                load.why[str(task.get("error") or task["state"])[:90]] += 1
        values = task["result"]["values"]
        blob = request_any(
            urls, "GET", f"/v1/blobs/{values}", deadline=deadline, prefer=index + 1, headers=auth
        )
        with load.lock:
            load.settled.setdefault(n, []).append(task)
            load.done_count += 1
            if json.loads(blob.content) != job_value(n):
                load.wrong.append(n)
    if paid is not None:
        paid.close()


def _wait_task(
    urls: list[str], task_id: str, deadline: float, prefer: int, headers: dict[str, str]
) -> dict[str, Any]:
    finalized_at: float | None = None
    while True:
        r = request_any(
            urls, "GET", f"/v1/tasks/{task_id}", deadline=deadline, prefer=prefer, headers=headers
        )
        r.raise_for_status()
        task: dict[str, Any] = r.json()
        if task["state"] in {"settled", "failed", "cancelled", "expired", "slashed"}:
            return task
        if (task.get("payment") or {}).get("outcome") == "finalized":
            # paid out on chain while the task is still short of settled: give it 10 s
            finalized_at = finalized_at or time.monotonic()
            if time.monotonic() - finalized_at > 10.0:
                return {**task, "stuck_in": task["state"], "state": "settled"}
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {task['state']} at the deadline")
        time.sleep(0.2)


class Providers:
    """Provider processes; each prints ``lease``/``commit``/``beats`` lines, read by a thread."""

    def __init__(self, load: Load, log_dir: Path) -> None:
        self.load, self.log_dir = load, log_dir
        self.procs: list[subprocess.Popen[str]] = []
        self.index: list[int] = []
        """The provider index (its key) of each process."""
        self.busy: dict[int, str | None] = {}
        """Process number -> the task it runs and has not committed (None: none)."""
        self.ready = 0
        self.readers: list[threading.Thread] = []

    def start(self, index: int) -> None:
        urls = self.load.urls[index % 2 :] + self.load.urls[: index % 2]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
            "GENSYN_LOAD_TRAIN_SECONDS": f"{self.load.train_seconds:g}",
        }
        if self.load.chain is not None:  # its own key, as `gensyn provider` reads it
            env["GENSYN_PRIVATE_KEY"] = "0x" + bytes(self.load.chain.provider(index).key).hex()
        stderr = (self.log_dir / f"provider-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._load_actors", f"p{index}", *urls],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        stderr.close()
        self.procs.append(proc)
        self.index.append(index)
        assert proc.stdout is not None
        reader = threading.Thread(
            target=self._read, args=(proc.stdout, len(self.procs) - 1), daemon=True
        )
        reader.start()
        self.readers.append(reader)

    def _read(self, out: IO[str], number: int) -> None:
        log = (self.log_dir / f"provider-{number}.out").open("w")
        with log:
            for line in out:
                log.write(line)
                parts = line.split()
                with self.load.lock:
                    if len(parts) == 3 and parts[0] == "ready":
                        self.load.provider_of_process[number] = parts[1]
                        self.ready += 1
                    elif len(parts) == 3 and parts[0] in ("lease", "commit"):
                        getattr(self.load, parts[0] + "s").append((parts[1], parts[2]))
                        # training until it commits (on a free network: until it posts)
                        self.busy[number] = parts[2] if parts[0] == "lease" else None
                    elif len(parts) == 3 and parts[0] == "beats":
                        self.load.beats[parts[1]] = int(parts[2])
                        self.busy[number] = None

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until every process started so far registered (signed in and staked when paid)."""
        deadline = time.monotonic() + timeout
        while self.ready < len(self.procs):
            dead = [p.pid for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(self.procs) - self.ready} provider processes did not register "
                    f"(exited: {dead}); their logs: {self.log_dir}/provider-*.log"
                )
            time.sleep(0.1)

    def kill_busy(self, wait: float = 5.0) -> tuple[int, str | None]:
        """SIGKILL a process that holds a task it has not committed yet (waiting up to
        ``wait`` s for one), start another with its key; (its number, the task it held)."""
        deadline = time.monotonic() + wait
        while True:
            with self.load.lock:
                held = [(n, t) for n, t in self.busy.items() if t and self.procs[n].poll() is None]
            if held or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        number, task = held[0] if held else (0, None)
        self.procs[number].kill()
        self.start(self.index[number])
        return number, task

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)
        for reader in self.readers:
            reader.join(5)


def drive(
    load: Load,
    *,
    tasks: int,
    kernels: int,
    faults: list[tuple[float, Callable[[], None]]],
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


def state_times(db_url: str) -> dict[str, dict[str, float]]:
    """Task id -> state -> when it first entered it (the coordinators' ``state`` events)."""
    from sqlalchemy import create_engine, select

    from gensyn_jupyter.coordinator._db import EventRow

    engine = create_engine(db_url)
    times: dict[str, dict[str, float]] = collections.defaultdict(dict)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(EventRow.task_id, EventRow.data, EventRow.ts)
                .where(EventRow.kind == "state")
                .order_by(EventRow.id)
            ).all()
    finally:
        engine.dispose()
    for task_id, data, ts in rows:
        times[task_id].setdefault(str(json.loads(data)["state"]), float(ts))
    return times


def check_run(load: Load, tasks: int, db_url: str, killed: set[str]) -> list[str]:
    """What went wrong in the kernels' results and the database (nothing: an empty list).

    ``killed``: ids of providers SIGKILLed on purpose (their leases may expire).
    """
    from sqlalchemy import create_engine, func, select

    from gensyn_jupyter.coordinator._db import LeaseRow

    problems = [f"a kernel raised: {e}" for e in load.errors]
    if sorted(load.settled) != list(range(tasks)):
        problems.append(f"jobs never settled: {sorted(set(range(tasks)) - set(load.settled))}")
    stuck = sorted(
        f"{t['id']} ({t['stuck_in']})"
        for ts in load.settled.values()
        for t in ts
        if "stuck_in" in t
    )
    if stuck:
        problems.append(
            f"tasks finalized on chain that the coordinator left short of settled: {stuck}"
        )
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
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(LeaseRow.task_id, func.count()).group_by(LeaseRow.task_id)
            ).all()
            expired = conn.execute(
                select(LeaseRow.task_id, LeaseRow.provider_id).where(
                    LeaseRow.release_reason.like("it expired%")
                )
            ).all()
    finally:
        engine.dispose()
    double = [t for t, c in rows if c > 1]
    if double:
        problems.append(f"tasks with two lease rows (database): {double}")
    spurious = [t for t, p in expired if p not in killed]
    if spurious:
        problems.append(f"leases expired although their provider was alive: {spurious}")
    return problems
