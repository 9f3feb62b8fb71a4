"""Random sequences of TaskMarket calls against an independent Python model.

A hypothesis state machine drives stake, unstake, withdrawStake, create, cancel,
assign, commit, challenge, resolve, finalize, expire, withdraw and time travel
on the real anvil (one ``evm_snapshot``/``evm_revert`` per example). A small
Python model predicts, for every call, the exact error (or success) and where
each wei goes; after every step the contract's balance must equal escrow +
stake + bonds + unclaimed credits, by the model's sums and by the contract's
own counters, and every account's stake and credit must match the model.

One rule draws the next action with weights (hypothesis's swarm testing over
many small rules seldom got a task past its commit); two draws in five take a
task one natural step forward with valid arguments, the rest are any action
with arguments that are often wrong.

Transactions are sent with a fixed gas limit, so a refused call is mined and
fails (its error decoded from the receipt), and each block's timestamp is set
to the model's clock: predictions never race the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from gensyn_jupyter.chain import MarketError, TaskStatus

ETH = 10**18
GAS = 600_000
ZERO = "0x" + "00" * 20
PROVIDERS = ("provider", "provider2", "verifier")
"""Who may be assigned; ``verifier`` starts without stake."""
SUBMITTERS = ("submitter", "stranger")
PAYEES = ("submitter", "stranger", "provider", "provider2", "verifier", "challenger", "treasury")
ROOTS = (b"\xaa" * 32, b"\xbb" * 32)
S = TaskStatus


@dataclass
class _Task:
    submitter: str
    deadline: int
    max_payment: int
    fee: int
    status: TaskStatus = S.OPEN
    provider: str | None = None
    provider2: str | None = None
    verifier: str | None = None
    price: int = 0
    due: dict[str, int] = field(default_factory=dict)
    roots: dict[str, bytes] = field(default_factory=dict)
    challenge_end: int = 0
    challenger: str | None = None
    bond: int = 0

    @property
    def escrow(self) -> int:
        held = (S.OPEN, S.ASSIGNED, S.COMMITTED, S.CHALLENGED, S.DISPUTED)
        return self.max_payment + self.fee if self.status in held else 0

    @property
    def providers(self) -> list[str]:
        return [p for p in (self.provider, self.provider2) if p is not None]


class MarketMachine(RuleBasedStateMachine):
    def __init__(self, w3, market, actors, cfg, rpc, http) -> None:
        super().__init__()
        self.w3, self.market, self.actors, self.cfg, self.rpc = w3, market, actors, cfg, rpc
        self.snapshot = rpc(w3, "evm_snapshot")
        self.url, self.http = w3.provider.endpoint_uri, http
        self.now = int(w3.eth.get_block("latest")["timestamp"]) + 10
        self.count = 0
        self.model: dict[bytes, _Task] = {}
        self.bonded: dict[str, int] = {}
        self.unbonding: dict[str, int] = {}
        self.unbond_at: dict[str, int] = {}
        for role in PROVIDERS:
            bonded, unbonding, until = market.call("stakeOf", self.address(role))
            self.bonded[role], self.unbonding[role], self.unbond_at[role] = bonded, unbonding, until
        self.credits = {role: market.call("credits", self.address(role)) for role in PAYEES}
        self.bonds = market.call("totalBonds")
        self.other_stake = market.call("totalStake") - sum(
            self.bonded[r] + self.unbonding[r] for r in PROVIDERS
        )
        self.other_credits = market.call("totalCredits") - sum(self.credits.values())

    def teardown(self) -> None:
        assert self.rpc(self.w3, "evm_revert", [self.snapshot]) is True

    # ------------------------------------------------------------------ helpers

    def address(self, role: str | None) -> str:
        return ZERO if role is None else self.actors.by_role[role].address

    def send(self, expected: str | None, role: str, function: str, *args, value: int = 0):
        """Mine the call at the model's clock; the chain must agree with ``expected``."""
        self.rpc(self.w3, "evm_setNextBlockTimestamp", [self.now])
        account = self.actors.by_role[role]
        try:
            receipt = self.market.transact(account, function, *args, value=value, gas=GAS)
        except MarketError as err:
            assert err.name == expected, f"{function}: model expected {expected}, chain: {err}"
            return None
        finally:
            self.now += 1
        assert expected is None, f"{function}: model expected {expected}, chain accepted it"
        return receipt

    def credit(self, role: str, amount: int) -> None:
        self.credits[role] += amount

    def slash(self, role: str, amount: int) -> int:
        bonded = self.bonded[role]
        if amount <= bonded:
            self.bonded[role] -= amount
            return amount
        taken = min(amount - bonded, self.unbonding[role])
        self.bonded[role] = 0
        self.unbonding[role] -= taken
        return bonded + taken

    def check_task(self, task_id: bytes) -> None:
        assert self.market.task(task_id).status is self.model[task_id].status

    def pick_task(self, data) -> bytes:
        live = [t for t, task in self.model.items() if task.escrow]
        if live and data.draw(st.integers(0, 4), label="live task?"):
            return data.draw(st.sampled_from(live), label="task")
        return data.draw(st.sampled_from(list(self.model)), label="task")

    # ------------------------------------------------------------------ the actions

    def stake(self, data):
        who = data.draw(st.sampled_from(PROVIDERS), label="who")
        amount = data.draw(st.sampled_from([0, ETH // 2, ETH, 2 * ETH]), label="amount")
        if self.send("ZeroAmount" if amount == 0 else None, who, "stake", value=amount):
            self.bonded[who] += amount

    def request_unstake(self, data):
        who = data.draw(st.sampled_from(PROVIDERS), label="who")
        amount = data.draw(st.sampled_from([0, ETH // 2, ETH, 3 * ETH]), label="amount")
        expected = None
        if amount == 0:
            expected = "ZeroAmount"
        elif amount > self.bonded[who]:
            expected = "InsufficientStake"
        at = self.now
        if self.send(expected, who, "requestUnstake", amount):
            self.bonded[who] -= amount
            self.unbonding[who] += amount
            self.unbond_at[who] = at + self.cfg.unbonding

    def withdraw_stake(self, data):
        who = data.draw(st.sampled_from(PROVIDERS), label="who")
        expected = None
        if self.unbonding[who] == 0:
            expected = "NothingToWithdraw"
        elif self.now < self.unbond_at[who]:
            expected = "StillUnbonding"
        if self.send(expected, who, "withdrawStake"):
            self.credit(who, self.unbonding[who])
            self.unbonding[who] = 0
            self.unbond_at[who] = 0

    def withdraw(self, data):
        owed = [role for role in PAYEES if self.credits[role]]
        pool = owed if owed and data.draw(st.integers(0, 3), label="owed?") else PAYEES
        who = data.draw(st.sampled_from(pool), label="who")
        address = self.address(who)
        before = self.w3.eth.get_balance(address)
        receipt = self.send(
            "NothingToWithdraw" if self.credits[who] == 0 else None, who, "withdraw"
        )
        if receipt:
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
            assert self.w3.eth.get_balance(address) == before + self.credits[who] - gas
            self.credits[who] = 0

    def travel(self, data):
        self.now += data.draw(
            st.sampled_from([1, 60, 600, 1800, 3600, 3600, 7200, 7 * 24 * 3600]), label="seconds"
        )

    def create(self, data):
        who = data.draw(st.sampled_from(SUBMITTERS), label="who")
        max_payment = data.draw(st.sampled_from([0, ETH // 10, ETH, ETH]), label="maxPayment")
        fee = data.draw(st.sampled_from([0, ETH // 100]), label="verifierFee")
        horizon = data.draw(st.sampled_from([0, 3600, 7200, 7200]), label="deadline in")
        overpay = data.draw(st.sampled_from([0, 0, 0, 1]), label="overpay")
        self.count += 1
        task_id = keccak(text=f"property-{self.count}")
        if self.model and not data.draw(st.integers(0, 9), label="reuse an id?"):
            task_id = self.pick_task(data)
        deadline = self.now + horizon
        expected = None
        if task_id in self.model:
            expected = "TaskExists"
        elif overpay:
            expected = "WrongPayment"
        elif horizon == 0:
            expected = "DeadlinePassed"
        value = max_payment + fee + overpay
        args = (task_id, b"\x5e" * 32, max_payment, fee, deadline)
        if self.send(expected, who, "createTask", *args, value=value):
            self.model[task_id] = _Task(who, deadline, max_payment, fee)
            self.check_task(task_id)

    def cancel(self, data):
        task_id = self.pick_task(data)
        task = self.model[task_id]
        caller = data.draw(st.sampled_from([task.submitter, task.submitter, "operator"]))
        expected = None
        if caller != task.submitter:
            expected = "NotSubmitter"
        elif task.status is not S.OPEN:
            expected = "WrongStatus"
        if self.send(expected, caller, "cancelTask", task_id):
            self.credit(task.submitter, task.escrow)
            task.status = S.CANCELLED
        self.check_task(task_id)

    def assign(self, data, task_id=None, args=None):
        if task_id is None:
            task_id = self.pick_task(data)
        task = self.model[task_id]
        if args is None:
            by_operator = data.draw(st.sampled_from([True, True, True, False]), label="operator?")
            p1 = data.draw(st.sampled_from(PROVIDERS), label="provider")
            p2 = data.draw(st.sampled_from([None, None, *PROVIDERS]), label="provider2")
            verifier = data.draw(st.sampled_from([None, "verifier", "provider"]), label="verifier")
            eighths = data.draw(st.sampled_from([0, 2, 4, 8, 9]), label="price in eighths")
            price = task.max_payment * eighths // 8 + (eighths == 9)
        else:
            by_operator, p1, p2, verifier, price = args
        total = price * 2 if p2 is not None and price <= task.max_payment else price
        expected = None
        if not by_operator:
            expected = "NotOperator"
        elif task.status is not S.OPEN:
            expected = "WrongStatus"
        elif self.now > task.deadline:
            expected = "DeadlinePassed"
        elif p2 == p1:
            expected = "InvalidProvider"
        elif verifier is not None and verifier in (p1, p2):
            expected = "InvalidVerifier"
        elif any(self.bonded[p] < self.cfg.min_stake for p in (p1, p2) if p is not None):
            expected = "StakeTooLow"
        elif total > task.max_payment:
            expected = "PriceAboveMaximum"
        caller = "operator" if by_operator else "stranger"
        call = (task_id, self.address(p1), self.address(p2), self.address(verifier), price)
        if self.send(expected, caller, "assign", *call):
            task.status, task.provider, task.provider2 = S.ASSIGNED, p1, p2
            task.verifier, task.price = verifier, price
        self.check_task(task_id)

    def commit(self, data, task_id=None, who=None):
        if task_id is None:
            task_id = self.pick_task(data)
            who = data.draw(st.sampled_from(PROVIDERS), label="who")
            share = data.draw(st.sampled_from([0, 1, 2, 3]), label="amount in halves of price")
        else:
            share = data.draw(st.sampled_from([0, 1, 2]), label="amount in halves of price")
        task = self.model[task_id]
        root = data.draw(st.sampled_from(ROOTS), label="root")
        amount = task.price * share // 2 + (share == 3)  # share 3: above the price
        expected = None
        if task.status is not S.ASSIGNED:
            expected = "WrongStatus"
        elif self.now > task.deadline:
            expected = "DeadlinePassed"
        elif who not in task.providers:
            expected = "NotAssignedProvider"
        elif who in task.due:
            expected = "AlreadyCommitted"
        elif amount > task.price:
            expected = "AmountAboveMaximum"
        at = self.now
        if self.send(expected, who, "commit", task_id, root, b"\x0f" * 32, amount):
            task.due[who], task.roots[who] = amount, root
            if len(task.due) == len(task.providers):
                task.challenge_end = at + self.cfg.window
                same = len(set(task.roots.values())) == 1
                task.status = S.COMMITTED if same else S.DISPUTED
        self.check_task(task_id)

    def challenge(self, data, task_id=None):
        task_id = self.pick_task(data) if task_id is None else task_id
        task = self.model[task_id]
        bond = data.draw(st.sampled_from([ETH // 10 - 1, ETH // 10, ETH // 2]), label="bond")
        expected = None
        if task.status is not S.COMMITTED:
            expected = "WrongStatus"
        elif self.now >= task.challenge_end:
            expected = "ChallengeWindowClosed"
        elif bond < self.cfg.min_bond:
            expected = "BondTooLow"
        if self.send(expected, "challenger", "challenge", task_id, value=bond):
            task.status, task.challenger, task.bond = S.CHALLENGED, "challenger", bond
            self.bonds += bond
        self.check_task(task_id)

    def resolve(self, data, task_id=None):
        task_id = self.pick_task(data) if task_id is None else task_id
        task = self.model[task_id]
        by_referee = data.draw(st.sampled_from([True, True, True, False]), label="referee?")
        cheater = data.draw(
            st.sampled_from([None, None, "provider", "provider2", "verifier", "stranger"]),
            label="cheater",
        )
        expected = None
        if not by_referee:
            expected = "NotReferee"
        elif task.status not in (S.CHALLENGED, S.DISPUTED):
            expected = "WrongStatus"
        elif cheater is not None and cheater not in task.providers:
            expected = "InvalidCheater"
        caller = "referee" if by_referee else "challenger"
        if not self.send(expected, caller, "resolve", task_id, self.address(cheater)):
            return self.check_task(task_id)
        bond, task.bond = task.bond, 0
        self.bonds -= bond
        if cheater is None:
            task.status = S.COMMITTED
            if task.provider2 is not None:
                self.credit(task.provider2, bond // 2)
                self.credit(task.provider, bond - bond // 2)
            else:
                self.credit(task.provider, bond)
            return self.check_task(task_id)
        whistleblower = task.challenger
        if whistleblower is None:
            whistleblower = task.provider2 if cheater == task.provider else task.provider
        slashed = self.slash(cheater, self.cfg.slash)
        self.credit(task.submitter, task.escrow + slashed // 2)
        self.credit(whistleblower, slashed // 4 + bond)
        self.credit("treasury", slashed - slashed // 2 - slashed // 4)
        task.status = S.SLASHED
        return self.check_task(task_id)

    def finalize(self, data, task_id=None):
        task_id = self.pick_task(data) if task_id is None else task_id
        task = self.model[task_id]
        expected = None
        if task.status is not S.COMMITTED:
            expected = "WrongStatus"
        elif self.now < task.challenge_end:
            expected = "ChallengeWindowOpen"
        if self.send(expected, "stranger", "finalize", task_id):
            paid = sum(task.due.values())
            for provider, due in task.due.items():
                self.credit(provider, due)
            fee = task.fee if task.verifier is not None else 0
            if task.verifier is not None:
                self.credit(task.verifier, fee)
            self.credit(task.submitter, task.escrow - paid - fee)
            task.status = S.FINALIZED
        self.check_task(task_id)

    def expire(self, data, task_id=None):
        task_id = self.pick_task(data) if task_id is None else task_id
        task = self.model[task_id]
        expected = None
        if task.status not in (S.OPEN, S.ASSIGNED):
            expected = "WrongStatus"
        elif self.now <= task.deadline:
            expected = "DeadlineNotReached"
        if self.send(expected, "challenger", "expire", task_id):
            penalty = 0
            if task.status is S.ASSIGNED:
                for provider in task.providers:
                    if provider not in task.due:
                        penalty += self.slash(provider, self.cfg.penalty)
            self.credit(task.submitter, task.escrow + penalty)
            task.status = S.EXPIRED
        self.check_task(task_id)

    def step_forward(self, data):
        """A live task's next natural step, with valid arguments, so sequences get far."""
        live = [t for t, task in self.model.items() if task.escrow]
        if not live:
            return self.create(data)
        task_id = data.draw(st.sampled_from(live), label="task")
        task = self.model[task_id]
        staked = [p for p in PROVIDERS if self.bonded[p] >= self.cfg.min_stake]
        if task.status in (S.OPEN, S.ASSIGNED) and self.now > task.deadline:
            return self.expire(data, task_id)
        if task.status is S.OPEN:
            if not staked:
                return self.stake(data)
            p1 = data.draw(st.sampled_from(staked), label="provider")
            others = [p for p in staked if p != p1]
            p2 = data.draw(st.sampled_from([None, *others]), label="provider2") if others else None
            verifier = data.draw(st.sampled_from([None, "verifier"]), label="verifier")
            verifier = None if verifier in (p1, p2) else verifier
            price = data.draw(st.integers(0, task.max_payment // (2 if p2 else 1)), label="price")
            return self.assign(data, task_id, (True, p1, p2, verifier, price))
        if task.status is S.ASSIGNED:
            waiting = [p for p in task.providers if p not in task.due]
            return self.commit(data, task_id, data.draw(st.sampled_from(waiting), label="who"))
        if task.status is S.COMMITTED:
            if self.now < task.challenge_end and not data.draw(st.integers(0, 2), label="dare"):
                return self.challenge(data, task_id)
            self.now = max(self.now, task.challenge_end)
            return self.finalize(data, task_id)
        return self.resolve(data, task_id)  # Challenged or Disputed

    ACTIONS = (
        *["step_forward"] * 12,
        *["create"] * 3,
        *["travel"] * 2,
        "stake",
        "request_unstake",
        "withdraw_stake",
        *["withdraw"] * 2,
        "cancel",
        "assign",
        "commit",
        "challenge",
        "resolve",
        "finalize",
        "expire",
    )
    NEED_A_TASK = frozenset(
        {"cancel", "assign", "commit", "challenge", "resolve", "finalize", "expire"}
    )

    @rule(data=st.data())
    def act(self, data):
        action = data.draw(st.sampled_from(self.ACTIONS), label="action")
        if action in self.NEED_A_TASK and not self.model:
            action = "create"
        getattr(self, action)(data)

    # ------------------------------------------------------------------ the invariant

    def views(self, calls: list[tuple[str, tuple]]) -> tuple[int, list]:
        """The contract's balance and the results of view ``calls``: one JSON-RPC batch."""
        functions = [self.market.artifact.function(name) for name, _ in calls]
        batch = [
            {
                "jsonrpc": "2.0",
                "id": i,
                "method": "eth_call",
                "params": [{"to": self.market.address, "data": fn.encode(args)}, "latest"],
            }
            for i, (fn, (_, args)) in enumerate(zip(functions, calls, strict=True))
        ]
        balance = {"jsonrpc": "2.0", "id": len(batch), "method": "eth_getBalance"}
        batch.append({**balance, "params": [self.market.address, "latest"]})
        replies = sorted(self.http.post(self.url, json=batch).json(), key=lambda r: r["id"])
        results = [
            fn.decode(bytes.fromhex(reply["result"][2:]))
            for fn, reply in zip(functions, replies, strict=False)
        ]
        return int(replies[-1]["result"], 16), results

    @invariant()
    def every_wei_is_accounted_for(self):
        escrow = sum(task.escrow for task in self.model.values())
        stake = self.other_stake + sum(self.bonded[r] + self.unbonding[r] for r in PROVIDERS)
        credits = self.other_credits + sum(self.credits.values())
        totals = ("totalEscrow", "totalStake", "totalBonds", "totalCredits")
        calls = [(name, ()) for name in totals]
        calls += [("stakeOf", (self.address(role),)) for role in PROVIDERS]
        calls += [("credits", (self.address(role),)) for role in PAYEES]
        balance, results = self.views(calls)
        assert results[:4] == [escrow, stake, self.bonds, credits]
        assert balance == escrow + stake + self.bonds + credits
        stakes = [tuple(r[:2]) for r in results[4 : 4 + len(PROVIDERS)]]
        assert stakes == [(self.bonded[r], self.unbonding[r]) for r in PROVIDERS]
        assert results[4 + len(PROVIDERS) :] == [self.credits[r] for r in PAYEES]


@pytest.mark.timeout(300)
def test_every_wei_is_accounted_for_in_random_sequences(chain_w3, market, actors, cfg, rpc_call):
    with httpx.Client() as http:
        run_state_machine_as_test(
            lambda: MarketMachine(chain_w3, market, actors, cfg, rpc_call, http),
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
