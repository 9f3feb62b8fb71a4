"""Paid load on two coordinator replicas on PostgreSQL, with a provider and a replica killed.

``python -m benchmarks.load [--quick] [--free] [--tasks N] [--kernels K] [--providers M]``

K simulated kernels (threads) each submit their share of N small tasks one
after another (submit, wait until it settles, next), to either replica and
failing over to the other when one is down. M provider processes
(``python -m benchmarks._load_actors``) long-poll leases on both replicas,
heartbeat while they "train", compute ``y = x * x``, upload it and post the
result. During the run one provider is SIGKILLed (and a new one started) and
replica B is SIGKILLed and restarted. A task that failed because its provider
was killed mid-run is submitted again by its kernel, as a user would re-run
the cell.

Paid (the default): each setup gets a fresh anvil with the TaskMarket
deployed (1 s challenge window); the coordinators run with the escrow on;
each kernel is a dev account that signs in, funds each task's escrow and
signs its order (``chain.approve_task``, as ``gensyn signer`` does); each
provider stakes with its own key and commits every result on chain. A task
settles when the chain finalized it. ``--free`` runs the same load on a
network without a chain.

Prints tasks/s, p50/p95 queued -> running and submit -> settled, for one
coordinator on SQLite without faults (the baseline of the same run), two
replicas on PostgreSQL, and the same with the kills; checks that each job
settled exactly once with the right result, that no task was leased twice
(providers' logs and the database), that no lease expired while its provider
lived, and on a paid network, on chain, that each task was funded, assigned,
committed and finalized once, that each provider was paid exactly what it
committed and each submitter refunded the rest, that the escrow of the runs
lost with the killed provider came back in full, and that the market's
balance is its escrow + stake + bonds + credits, with no escrow left.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._common import machine, percentile, print_table
from ._load_chain import ChainReplica, PaidChain, check_chain, start_paid_chain
from ._load_run import Load, Providers, check_run, drive, state_times
from ._replicas import Replica, running_postgres

__all__ = ["SETUPS", "main", "run"]

_WITHIN = 900.0


def _figures(label: str, load: Load, seconds: float, tasks: int, db_url: str) -> list[object]:
    times = state_times(db_url)
    settled = [t for ts in load.settled.values() for t in ts]
    waits = [
        times[t["id"]]["running"] - times[t["id"]]["queued"]
        for t in settled
        if "queued" in times[t["id"]]
    ]
    whole = [
        times[t["id"]]["settled"] - t["created_at"] for t in settled if "settled" in times[t["id"]]
    ]
    return [
        label,
        tasks,
        seconds,
        len(load.settled) / seconds,
        percentile(waits, 0.5) * 1000,
        percentile(waits, 0.95) * 1000,
        percentile(whole, 0.5),
        percentile(whole, 0.95),
        load.resubmitted,
        sum(load.beats.values()),
    ]


@dataclass(frozen=True)
class _Size:
    paid: bool
    tasks: int
    kernels: int
    providers: int
    train_seconds: float
    lease_ttl: float


def _setup(
    label: str, work: Path, size: _Size, *, db_url: str, replicas: int, faults: bool
) -> tuple[list[object], list[str]]:
    """One setup end to end, on a fresh chain when paid; its figures and problems."""
    work.mkdir(parents=True)
    chain: PaidChain | None = None
    if size.paid:
        chain = start_paid_chain(
            log_path=work / "anvil.log", kernels=size.kernels, providers=size.providers
        )
    try:
        load, seconds, killed = _run_load(work, size, chain, db_url, replicas, faults)
        problems = check_run(load, size.tasks, db_url, killed)
        for why, count in load.why.most_common():
            print(f"  {label}: re-run {count}x after: {why}")
        figures = _figures(label, load, seconds, size.tasks, db_url)
        if chain is not None:
            settled = {
                t["id"]: (str(t["account"]), t["payment"]["provider_address"])
                for ts in load.settled.values()
                for t in ts
            }
            lost = {i: str(a) for i, a in load.submitted.items() if i not in settled}
            addresses = [chain.provider(i).address for i in range(size.providers)]
            lines, found = check_chain(chain, settled=settled, lost=lost, providers=addresses)
            for line in lines:
                print(f"  {label}: {line}")
            problems += found
        return figures, [f"{label}: {p}" for p in problems]
    finally:
        if chain is not None:
            chain.stop()


def _run_load(
    work: Path, size: _Size, chain: PaidChain | None, db_url: str, replicas: int, faults: bool
) -> tuple[Load, float, set[str]]:
    """Replicas, providers and kernels to the end; what they saw, the seconds the kernels
    took, and the ids of the providers killed on purpose."""
    nodes: list[Replica] = [
        ChainReplica(db_url, work / "data", work / f"{n}.log", chain, lease_ttl=size.lease_ttl)
        if chain is not None
        else Replica(db_url, work / "data", work / f"{n}.log", lease_ttl=size.lease_ttl)
        for n in "ab"[:replicas]
    ]
    load = Load([n.url for n in nodes], chain=chain, train_seconds=size.train_seconds)
    procs = Providers(load, work)
    killed: set[str] = set()

    def kill_provider() -> None:
        number, task = procs.kill_busy()
        with load.lock:
            killed.add(load.provider_of_process.get(number, "?"))
        print(
            f"  SIGKILL provider p{procs.index[number]} (holding {task or 'nothing'}) at "
            f"{load.done_count} done; a new process with its key started"
        )

    def kill_replica() -> None:
        node = nodes[-1]
        print(f"  SIGKILL replica B ({node.url}) at {load.done_count} done; restarting it")
        node.kill()
        time.sleep(1.0)
        node.start()

    schedule: list[tuple[float, Callable[[], None]]] = (
        [(0.3, kill_provider), (0.5, kill_replica)] if faults else []
    )
    try:
        # the replicas start at once, then the providers; start-up is not measured
        with ThreadPoolExecutor(len(nodes)) as pool:
            for future in [pool.submit(node.start, 120.0) for node in nodes]:
                future.result()
        for i in range(size.providers):
            procs.start(i)
        procs.wait_ready()
        seconds = drive(
            load, tasks=size.tasks, kernels=size.kernels, faults=schedule, within=_WITHIN
        )
    finally:
        procs.stop()
        for node in nodes:
            node.stop()
    return load, seconds, killed


SETUPS = {
    "baseline": "1 coordinator, SQLite, no faults (baseline)",
    "replicas": "2 replicas, PostgreSQL",
    "kills": "2 replicas, PostgreSQL, 1 provider + 1 replica killed",
}


def run(
    *,
    quick: bool = False,
    tasks: int | None = None,
    kernels: int | None = None,
    providers: int | None = None,
    setups: Sequence[str] = tuple(SETUPS),
    paid: bool = True,
    train_seconds: float = 0.02,
    lease_ttl: float = 15.0,
) -> list[str]:
    """Run the load in each of ``setups`` (names of :data:`SETUPS`); print the table;
    return the problems found."""
    tasks = tasks or (12 if quick else 200)
    kernels = kernels or (3 if quick else 20)
    providers = providers or (3 if quick else 20)
    print(machine())
    network = "paid (anvil escrow, 1 s challenge window)" if paid else "free (no chain)"
    print(
        f"{tasks} tasks from {kernels} simulated kernels, {providers} provider processes, {network}"
    )
    rows: list[list[object]] = []
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="gensyn-load-"))
    size = _Size(paid, tasks, kernels, providers, train_seconds, lease_ttl)
    for name in [s for s in SETUPS if s in setups]:
        label = SETUPS[name]
        with contextlib.ExitStack() as stack:
            if name == "baseline":
                db, replicas = f"sqlite:///{work / 'base.sqlite'}", 1
            else:
                db, replicas = stack.enter_context(running_postgres()), 2
            figures, found = _setup(
                label, work / name, size, db_url=db, replicas=replicas, faults=name == "kills"
            )
        rows.append(figures)
        problems += found
    print_table(
        f"load: {'paid' if paid else 'free'} tasks settled per second and their waits",
        [
            "setup",
            "tasks",
            "s",
            "tasks/s",
            "p50 queued->running ms",
            "p95 queued->running ms",
            "p50 submit->settled s",
            "p95 submit->settled s",
            "re-run after a kill",
            "heartbeats",
        ],
        rows,
    )
    checked = "every job settled exactly once with the right result; no task leased twice"
    if paid:
        checked += (
            "; on chain each task funded, assigned, committed, finalized once, nothing paid twice"
        )
    print("checks:", checked if not problems else "; ".join(problems))
    if problems:
        print(f"logs of the chain, coordinators and providers: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="12 tasks, 3 kernels, 3 providers")
    parser.add_argument("--free", action="store_true", help="a network without a chain")
    parser.add_argument("--tasks", type=int, default=None, help="jobs in all (default 200)")
    parser.add_argument("--kernels", type=int, default=None, help="simulated kernels (default 20)")
    parser.add_argument(
        "--providers", type=int, default=None, help="provider processes (default 20)"
    )
    parser.add_argument(
        "--train-seconds", type=float, default=0.02, help="each task's simulated training"
    )
    parser.add_argument(
        "--setup",
        nargs="+",
        choices=list(SETUPS),
        default=list(SETUPS),
        help="which setups to run (default: all three)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=15.0,
        help="the coordinators' --lease-ttl: how soon a killed provider's task fails (default 15)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the SQLite baseline")
    args = parser.parse_args(argv)
    problems = run(
        quick=args.quick,
        tasks=args.tasks,
        kernels=args.kernels,
        providers=args.providers,
        setups=[s for s in args.setup if not (args.no_baseline and s == "baseline")],
        paid=not args.free,
        train_seconds=args.train_seconds,
        lease_ttl=args.lease_ttl,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
