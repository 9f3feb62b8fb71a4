"""Gas of the TaskMarket's calls, measured on a real anvil.

Starts anvil, deploys the market, stakes two providers and runs the task path
(create + assign + commit + finalize) in three situations, then prints the gas
of every call and the path's total against the 250,000 gas goal:

- ``first task``: the submitter and the verifier have never been paid
  (their credit slots are empty, the costliest case);
- ``repeat task``: the same parties again, with the earlier credits still
  unclaimed (a provider or verifier that withdraws now and then);
- ``after withdraw``: everyone withdrew in between (credit slots emptied again).

It also prints the replicated path and the other calls (stake, challenge,
resolve, cancel, expire, withdraw). Run: ``python -m benchmarks.gas``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3

from gensyn_jupyter.chain._devchain import start_anvil
from gensyn_jupyter.chain._market import Market, MarketConfig

GOAL = 250_000
ETH = 10**18
_PATH = ("createTask", "assign", "commit", "finalize")


class _Bench:
    def __init__(self, w3: Web3, market: Market, accounts: list[LocalAccount]) -> None:
        self.w3 = w3
        self.market = market
        (
            _,
            self.operator,
            self.referee,
            _,
            self.submitter,
            self.provider,
            self.provider2,
            self.verifier,
            self.challenger,
            _,
        ) = accounts
        self.window = market.config().challenge_window
        self._count = 0

    def gas(self, sender: LocalAccount, function: str, *args: Any, value: int = 0) -> int:
        return int(self.market.transact(sender, function, *args, value=value)["gasUsed"])

    def travel(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def new_task(self, *, fee: int = ETH // 100) -> bytes:
        self._count += 1
        task_id = Web3.keccak(text=f"bench-task-{self._count}")
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 3600
        self.gas(
            self.submitter, "createTask", task_id, b"\x11" * 32, ETH, fee, deadline, value=ETH + fee
        )
        return task_id

    def path(self, *, replicated: bool = False) -> dict[str, int]:
        """Gas of create + assign + commit(s) + finalize of one task."""
        self._count += 1
        task_id = Web3.keccak(text=f"bench-task-{self._count}")
        deadline = int(self.w3.eth.get_block("latest")["timestamp"]) + 3600
        fee = ETH // 100
        second = self.provider2.address if replicated else "0x" + "00" * 20
        price = ETH // 2 if replicated else ETH
        row = {
            "createTask": self.gas(
                self.submitter,
                "createTask",
                task_id,
                b"\x11" * 32,
                ETH,
                fee,
                deadline,
                value=ETH + fee,
            ),
            "assign": self.gas(
                self.operator,
                "assign",
                task_id,
                self.provider.address,
                second,
                self.verifier.address,
                price,
            ),
            "commit": self.gas(
                self.provider, "commit", task_id, b"\x22" * 32, b"\x33" * 32, price * 9 // 10
            ),
        }
        if replicated:
            row["commit2"] = self.gas(
                self.provider2, "commit", task_id, b"\x22" * 32, b"\x33" * 32, price * 9 // 10
            )
        self.travel(self.window + 1)
        row["finalize"] = self.gas(self.operator, "finalize", task_id)
        return row

    def withdraw_all(self) -> int:
        used = 0
        for account in (self.submitter, self.provider, self.provider2, self.verifier):
            if self.market.call("credits", account.address):
                used = self.gas(account, "withdraw")
        return used

    def others(self) -> dict[str, int]:
        """Gas of the calls off the task path."""
        out: dict[str, int] = {}
        task_id = self.new_task()
        out["cancelTask"] = self.gas(self.submitter, "cancelTask", task_id)
        task_id = self.new_task()
        self.gas(
            self.operator,
            "assign",
            task_id,
            self.provider.address,
            "0x" + "00" * 20,
            self.verifier.address,
            ETH,
        )
        self.gas(self.provider, "commit", task_id, b"\x22" * 32, b"\x33" * 32, ETH)
        out["challenge"] = self.gas(self.challenger, "challenge", task_id, value=ETH // 10)
        out["resolve (challenge rejected)"] = self.gas(
            self.referee, "resolve", task_id, "0x" + "00" * 20
        )
        out["challenge (again)"] = self.gas(self.challenger, "challenge", task_id, value=ETH // 10)
        out["resolve (fraud proven)"] = self.gas(
            self.referee, "resolve", task_id, self.provider.address
        )
        self.gas(self.provider, "stake", value=ETH)
        task_id = self.new_task()
        self.gas(
            self.operator,
            "assign",
            task_id,
            self.provider.address,
            "0x" + "00" * 20,
            self.verifier.address,
            ETH,
        )
        self.travel(3601)
        out["expire (with penalty)"] = self.gas(self.challenger, "expire", task_id)
        out["stake"] = self.gas(self.provider2, "stake", value=ETH)
        out["requestUnstake"] = self.gas(self.provider2, "requestUnstake", ETH // 2)
        self.travel(self.market.config().unbonding_delay + 1)
        out["withdrawStake"] = self.gas(self.provider2, "withdrawStake")
        out["withdraw"] = self.gas(self.provider2, "withdraw")
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args()
    chain = start_anvil()
    try:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        accounts = chain.accounts
        config = MarketConfig(
            operator=accounts[1].address,
            referee=accounts[2].address,
            treasury=accounts[3].address,
            min_stake=2 * ETH,
            min_bond=ETH // 10,
            unbonding_delay=7 * 24 * 3600,
            challenge_window=3600,
        )
        market = Market.deploy(w3=w3, deployer=accounts[0], config=config)
        deployment = w3.eth.get_block("latest")["transactions"][0]
        deploy_gas = int(w3.eth.get_transaction_receipt(cast(Any, deployment))["gasUsed"])
        bench = _Bench(w3, market, accounts)
        for provider in (bench.provider, bench.provider2):
            bench.gas(provider, "stake", value=3 * ETH)
        paths = {"first task": bench.path(), "repeat task": bench.path()}
        bench.withdraw_all()
        paths["after withdraw"] = bench.path()
        paths["replicated (repeat)"] = bench.path(replicated=True)
        others = bench.others()
    finally:
        chain.stop()

    totals = {name: sum(row.values()) for name, row in paths.items()}
    if options.json:
        print(
            json.dumps(
                {
                    "deploy": deploy_gas,
                    "paths": paths,
                    "totals": totals,
                    "others": others,
                    "goal": GOAL,
                },
                indent=2,
            )
        )
        return 0
    columns = list(paths)

    def line(label: str, cells: list[str]) -> None:
        print(label.ljust(16) + "".join(cell.rjust(21) for cell in cells))

    print(f"TaskMarket gas on anvil; goal: create + assign + commit + finalize <= {GOAL:,}")
    line("call", columns)
    for call in (*_PATH[:3], "commit2", _PATH[3]):
        line(call, [f"{paths[c][call]:,}" if call in paths[c] else "-" for c in columns])
    line("total", [f"{totals[c]:,}" for c in columns])
    line("of the goal", [f"{totals[c] / GOAL:.1%}" for c in columns])
    print(
        "first task: the submitter and verifier are paid for the first time (two new credit\n"
        "slots, 2 x 17,100 gas more); later tasks reuse those slots, even after a withdraw."
    )
    print()
    print(f"{'deploy':32s}{deploy_gas:>12,}")
    for name, used in others.items():
        print(f"{name:32s}{used:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
