"""The chain of ``benchmarks/load.py``'s paid mode, and what it checks on it at the end.

:func:`start_paid_chain`: anvil with the dev mnemonic and the ``TaskMarket``
deployed as the devnet deploys it (dev account 1 the operator, 7 the faucet,
8 the referee, 9 the treasury, a 1 s challenge window so tasks finalize
during the run); kernels and providers get dev accounts 10 and up, one each
(funded by anvil). :class:`ChainReplica`: a coordinator process with the
escrow on (``--rpc``, ``--market``, ``GENSYN_OPERATOR_KEY``).

:func:`check_chain` reads every market event of the run and checks, per
task id, that it was funded, assigned, committed and finalized exactly once
(or, for a run lost with its provider, refunded by ``expire``), that each
provider's credit is exactly what it committed, each submitter's exactly its
refunds, and that the market's balance is its escrow, stake, bonds and
credits.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from gensyn_jupyter.chain import (
    Devchain,
    Market,
    MarketConfig,
    MarketError,
    TaskStatus,
    start_anvil,
)
from gensyn_jupyter.protocol import task_key

from ._replicas import Replica

__all__ = ["ChainReplica", "PaidChain", "check_chain", "start_paid_chain"]

_ETH = 10**18
_ROOT = Path(__file__).resolve().parents[1]
_FIRST_ACTOR = 10
"""Dev accounts below it: the devnet's roles (1 operator, 7 faucet, 8 referee, 9 treasury)."""


def _key(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


@dataclass
class PaidChain:
    """anvil, the market on it, and whose key is whose."""

    node: Devchain
    market: Market
    kernels: int
    from_block: int

    @property
    def operator_key(self) -> str:
        return _key(self.node.accounts[1])

    @property
    def faucet_key(self) -> str:
        return _key(self.node.accounts[7])

    def kernel(self, index: int) -> LocalAccount:
        return self.node.accounts[_FIRST_ACTOR + index]

    def provider(self, index: int) -> LocalAccount:
        return self.node.accounts[_FIRST_ACTOR + self.kernels + index]

    def market_for_thread(self) -> Market:
        """A client of its own (a web3 connection per thread)."""
        w3 = Web3(HTTPProvider(self.node.rpc_url, request_kwargs={"timeout": 30}))
        return Market(w3=w3, address=self.market.address)

    def stop(self) -> None:
        self.node.stop()


def start_paid_chain(
    *, log_path: Path, kernels: int, providers: int, challenge_window: int = 1
) -> PaidChain:
    """anvil with ``10 + kernels + providers`` funded dev accounts and the market deployed."""
    node = start_anvil(accounts=_FIRST_ACTOR + kernels + providers, log_path=log_path)
    try:
        acc = node.accounts
        market = Market.deploy(
            w3=Web3(HTTPProvider(node.rpc_url, request_kwargs={"timeout": 30})),
            deployer=acc[0],
            config=MarketConfig(
                operator=acc[1].address,
                referee=acc[8].address,
                treasury=acc[9].address,
                min_stake=_ETH,
                min_bond=_ETH // 10,
                unbonding_delay=60,
                challenge_window=challenge_window,
            ),
        )
        block = int(market.w3.eth.block_number)
    except BaseException:
        node.stop()
        raise
    return PaidChain(node=node, market=market, kernels=kernels, from_block=block)


class ChainReplica(Replica):
    """A coordinator replica with the escrow on (the operator key in its own environment)."""

    def __init__(
        self, db_url: str, data_dir: Path, log_path: Path, chain: PaidChain, *, lease_ttl: float
    ) -> None:
        super().__init__(db_url, data_dir, log_path, lease_ttl=lease_ttl)
        self.chain = chain

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait (bounded) until ``/v1/chain`` answers."""
        command = [sys.executable, "-m", "gensyn_jupyter", "coordinator", "--port", str(self.port)]
        command += ["--db", self.db_url, "--data-dir", str(self.data_dir)]
        command += ["--lease-ttl", f"{self.lease_ttl:g}", "--requests-per-second", "0"]
        command += ["--rpc", self.chain.node.rpc_url, "--market", self.chain.market.address]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")]),
            "GENSYN_OPERATOR_KEY": self.chain.operator_key,
            "GENSYN_FAUCET_KEY": self.chain.faucet_key,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/chain", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"replica {self.url} did not start:\n{log_text}")
            time.sleep(0.1)


def _expire_orphans(chain: PaidChain, keys: Iterable[bytes]) -> list[bytes]:
    """Escrows still held by tasks that ended off chain: warp past their deadlines, expire them."""
    market = chain.market
    held = [(k, market.task(k)) for k in keys]
    held = [(k, t) for k, t in held if t.status in (TaskStatus.OPEN, TaskStatus.ASSIGNED)]
    if not held:
        return []
    latest = int(market.w3.eth.get_block("latest")["timestamp"])
    ahead = max(t.deadline for _, t in held) - latest + 2
    rpc = market.w3.provider
    rpc.make_request(RPCEndpoint("evm_increaseTime"), [max(ahead, 1)])
    rpc.make_request(RPCEndpoint("evm_mine"), [])
    for key, _ in held:
        with contextlib.suppress(MarketError):  # a coordinator's keeper may be first
            market.transact(chain.node.accounts[0], "expire", key)
    return [k for k, _ in held]


def check_chain(
    chain: PaidChain,
    *,
    settled: dict[str, tuple[str, str | None]],
    lost: dict[str, str],
    providers: Iterable[str],
) -> tuple[list[str], list[str]]:
    """Check the market after the run; (lines to print, problems).

    ``settled``: task id -> (submitter, the address of the provider that ran it);
    ``lost``: task id -> submitter, tasks that ended without a result (their
    provider killed): they must be refunded in full by ``expire``.
    """
    market = chain.market
    keys = {"0x" + task_key(t).hex(): t for t in [*settled, *lost]}
    expired = _expire_orphans(chain, [task_key(t) for t in lost])
    events = market.events(from_block=chain.from_block)
    per_task: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    assigned: dict[str, str] = {}
    due: dict[str, int] = {}
    earned: collections.Counter[str] = collections.Counter()
    refunded: collections.Counter[str] = collections.Counter()
    submitter: dict[str, str] = {}
    unknown = 0
    for e in events:
        raw = e.args.get("taskId")
        if not isinstance(raw, bytes):
            continue
        tid = keys.get("0x" + raw.hex())
        if tid is None:
            unknown += 1
            continue
        per_task[tid][e.name] += 1
        if e.name == "TaskCreated":
            submitter[tid] = str(e.args["submitter"])
        elif e.name == "TaskAssigned":
            assigned[tid] = str(e.args["provider"])
        elif e.name == "TaskCommitted":
            due[tid] = int(e.args["amountDue"])
        elif e.name == "TaskFinalized":
            earned[assigned.get(tid, "?")] += int(e.args["paidProviders"])
            if int(e.args["paidProviders"]) != due.get(tid):
                due[tid] = -1  # paid something else than its commit
            refunded[submitter.get(tid, "?")] += int(e.args["refund"])
        elif e.name == "TaskExpired":
            refunded[submitter.get(tid, "?")] += int(e.args["refund"]) + int(e.args["penalty"])
    problems: list[str] = []
    once = ("TaskCreated", "TaskAssigned", "TaskCommitted", "TaskFinalized")
    for tid, (who, provider) in settled.items():
        seen = per_task.get(tid, collections.Counter())
        if [seen[n] for n in once] != [1, 1, 1, 1] or sum(seen.values()) != 4:
            problems.append(f"settled task {tid}: events {dict(seen)} (want each of {once} once)")
        if submitter.get(tid, "").lower() != who.lower():
            problems.append(f"task {tid} funded by {submitter.get(tid)}, submitted by {who}")
        if due.get(tid, -1) < 0:
            problems.append(f"task {tid}: the provider was not paid exactly its commit")
        elif provider is not None and assigned.get(tid, "").lower() != provider.lower():
            problems.append(f"task {tid} assigned to {assigned.get(tid)}, run by {provider}")
    paid_lost = []
    for tid in lost:
        seen = per_task.get(tid, collections.Counter())
        ended = seen["TaskExpired"] + seen["TaskFinalized"]
        if seen["TaskCreated"] != 1 or ended != 1 or max(seen.values()) > 1:
            problems.append(f"lost task {tid}: events {dict(seen)} (want funded once, then ended)")
        if seen["TaskFinalized"]:
            paid_lost.append(tid)
    providers = list(providers)
    for address in providers:
        credit = int(market.call("credits", address))
        if credit != earned[address]:
            problems.append(f"provider {address}: credit {credit} wei, finalized {earned[address]}")
    submitters = sorted({who for who, _ in settled.values()} | set(lost.values()))
    for address in submitters:
        credit = int(market.call("credits", address))
        if credit != refunded[address]:
            problems.append(
                f"submitter {address}: credit {credit} wei, refunds {refunded[address]}"
            )
    totals = {n: int(market.call(n)) for n in ("totalEscrow", "totalStake", "totalBonds")}
    totals["totalCredits"] = int(market.call("totalCredits"))
    balance = int(market.w3.eth.get_balance(market.address))
    if balance != sum(totals.values()):
        problems.append(f"market balance {balance} != escrow + stake + bonds + credits {totals}")
    if totals["totalEscrow"] != 0:
        problems.append(f"{totals['totalEscrow']} wei of escrow left after every task ended")
    if unknown:
        problems.append(f"{unknown} task events of task ids no kernel submitted")
    count = collections.Counter(n for seen in per_task.values() for n in seen.elements())
    eth = 1 / _ETH
    lines = [
        f"on chain: {len(settled)} settled tasks each funded, assigned, committed and finalized "
        f"once (events: {dict(sorted(count.items()))})",
        f"on chain: {len(lost)} tasks lost with their provider: {len(expired)} refunded in full "
        "by expire after a time warp past their deadline"
        + (
            f", {len(paid_lost)} committed on chain before the kill, so finalized and paid "
            f"though the coordinator failed them ({', '.join(paid_lost)})"
            if paid_lost
            else ""
        ),
        f"on chain: {len(providers)} providers staked, paid {sum(earned.values()) * eth:.6f} ETH "
        f"in all for {len(due)} commits; {len(submitters)} submitters refunded "
        f"{sum(refunded.values()) * eth:.6f} ETH",
        f"on chain: market balance {balance * eth:.6f} ETH = escrow "
        f"{totals['totalEscrow'] * eth:g} + stake {totals['totalStake'] * eth:g} + bonds "
        f"{totals['totalBonds'] * eth:g} + credits {totals['totalCredits'] * eth:.6f}",
    ]
    return lines, problems
