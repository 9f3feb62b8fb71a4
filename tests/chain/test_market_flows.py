"""The TaskMarket's settlement paths, wei by wei.

Every test ends with everyone withdrawing their credit and ``ledger.check``:
each account's balance changed by exactly what the rules pay it (gas aside),
and the contract's balance equals its counters.
"""

from __future__ import annotations

from gensyn_jupyter.chain import TaskStatus

ROOT = b"\xc0" * 32
OTHER_ROOT = b"\xc1" * 32
OUT = b"\x0f" * 32


def _events(market, task_id):
    return [(e.name, e.args) for e in market.events(from_block=0, task_id=task_id)]


def test_finalize_pays_provider_verifier_and_refunds_the_rest(ledger, tasks, actors, market, cfg):
    task_id = tasks.committed()
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    assert tasks.task(task_id).status is TaskStatus.FINALIZED
    refund = tasks.max_payment - tasks.due
    ledger.check_credits(provider=tasks.due, verifier=tasks.fee, submitter=refund)
    name, args = _events(market, task_id)[-1]
    assert name == "TaskFinalized"
    assert args == {
        "taskId": task_id,
        "paidProviders": tasks.due,
        "paidVerifier": tasks.fee,
        "refund": refund,
    }
    ledger.withdraw_all()
    ledger.check(submitter=-(tasks.due + tasks.fee), provider=tasks.due, verifier=tasks.fee)


def test_without_a_verifier_the_fee_is_refunded(ledger, tasks, actors, cfg):
    task_id = tasks.committed(verifier=False)
    assert tasks.task(task_id).verifier is None
    tasks.travel(cfg.window)
    ledger.send(actors.provider, "finalize", task_id)
    ledger.check_credits(provider=tasks.due, submitter=tasks.max_payment - tasks.due + tasks.fee)
    ledger.withdraw_all()
    ledger.check(submitter=-tasks.due, provider=tasks.due, contract=0)


def test_cancel_before_assignment_refunds_everything(ledger, tasks, actors, market):
    task_id = tasks.open()
    ledger.send(actors.submitter, "cancelTask", task_id)
    assert tasks.task(task_id).status is TaskStatus.CANCELLED
    assert market.call("totalEscrow") == 0
    ledger.check_credits(submitter=tasks.max_payment + tasks.fee)
    ledger.refused("WrongStatus", actors.submitter, "cancelTask", task_id)
    ledger.withdraw_all()
    ledger.check(contract=0)


def test_challenge_proving_fraud_slashes_and_splits(ledger, tasks, actors, market, cfg):
    task_id = tasks.committed()
    bond = cfg.min_bond * 5
    ledger.send(actors.challenger, "challenge", task_id, value=bond)
    assert market.call("totalBonds") == bond
    task = tasks.task(task_id)
    assert (task.status, task.challenger, task.bond) == (
        TaskStatus.CHALLENGED,
        actors.challenger.address,
        bond,
    )
    ledger.refused("WrongStatus", actors.stranger, "finalize", task_id)
    ledger.send(actors.referee, "resolve", task_id, actors.provider.address)

    slashed = cfg.slash  # the provider had more than slashAmount bonded
    escrow = tasks.max_payment + tasks.fee
    assert tasks.task(task_id).status is TaskStatus.SLASHED
    assert market.call("stakeOf", actors.provider.address)[:2] == [cfg.stake - slashed, 0]
    assert market.call("totalBonds") == 0
    ledger.check_credits(
        submitter=escrow + slashed // 2,
        challenger=bond + slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
    )
    fraud = dict(_events(market, task_id))["FraudProven"]
    assert fraud == {
        "taskId": task_id,
        "cheater": actors.provider.address,
        "whistleblower": actors.challenger.address,
        "slashed": slashed,
        "toSubmitter": slashed // 2,
        "toWhistleblower": slashed // 4,
        "toTreasury": slashed - slashed // 2 - slashed // 4,
    }
    ledger.withdraw_all()
    ledger.check(
        submitter=slashed // 2,
        challenger=slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
        contract=-slashed,
    )


def test_slashing_reaches_unbonding_stake(ledger, tasks, actors, market, cfg):
    task_id = tasks.committed()
    p = actors.provider.address
    ledger.send(actors.provider, "requestUnstake", cfg.stake - cfg.eth // 2)  # 0.5 ETH stays bonded
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    ledger.send(actors.referee, "resolve", task_id, p)
    bonded, unbonding, _ = market.call("stakeOf", p)
    assert (bonded, unbonding) == (0, cfg.stake - cfg.slash)
    tasks.travel(cfg.unbonding)
    ledger.send(actors.provider, "withdrawStake")
    ledger.withdraw_all()
    slashed = cfg.slash
    ledger.check(
        provider=cfg.stake - slashed,
        submitter=slashed // 2,
        challenger=slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
        contract=-cfg.stake,
    )


def test_slash_takes_only_what_the_cheater_still_has(ledger, tasks, actors, market, cfg):
    task_id = tasks.committed()
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    # the referee is slower than the unbonding delay: the cheater got its stake out
    ledger.send(actors.provider, "requestUnstake", cfg.stake)
    tasks.travel(cfg.unbonding)
    ledger.send(actors.provider, "withdrawStake")
    ledger.send(actors.provider, "withdraw")
    ledger.send(actors.referee, "resolve", task_id, actors.provider.address)
    assert dict(_events(market, task_id))["FraudProven"]["slashed"] == 0
    ledger.withdraw_all()
    ledger.check(provider=cfg.stake, contract=-cfg.stake)


def test_a_wrong_challenge_pays_its_bond_to_the_provider(ledger, tasks, actors, market, cfg):
    task_id = tasks.committed()
    ends = tasks.task(task_id).challenge_end
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    ledger.send(actors.referee, "resolve", task_id, cfg.zero)
    task = tasks.task(task_id)
    assert (task.status, task.bond, task.challenge_end) == (TaskStatus.COMMITTED, 0, ends)
    ledger.check_credits(provider=cfg.min_bond)
    assert dict(_events(market, task_id))["ChallengeRejected"] == {
        "taskId": task_id,
        "challenger": actors.challenger.address,
        "bond": cfg.min_bond,
    }
    # the original window still applies: finalize once it has closed
    ledger.refused("ChallengeWindowOpen", actors.stranger, "finalize", task_id)
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    ledger.withdraw_all()
    ledger.check(
        submitter=-(tasks.due + tasks.fee),
        provider=tasks.due + cfg.min_bond,
        verifier=tasks.fee,
        challenger=-cfg.min_bond,
    )


def test_replicas_with_equal_roots_are_both_paid(ledger, tasks, actors, market, cfg):
    task_id = tasks.assigned(replicated=True)
    ledger.send(actors.provider2, "commit", task_id, ROOT, OUT, tasks.due // 2)
    task = tasks.task(task_id)
    assert (task.status, task.challenge_end, task.provider2_committed) == (
        TaskStatus.ASSIGNED,
        0,
        True,
    )
    ledger.refused("WrongStatus", actors.challenger, "challenge", task_id, value=cfg.min_bond)
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    assert tasks.task(task_id).status is TaskStatus.COMMITTED
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    paid = tasks.due + tasks.due // 2
    ledger.check_credits(
        provider=tasks.due,
        provider2=tasks.due // 2,
        verifier=tasks.fee,
        submitter=tasks.max_payment - paid,
    )
    ledger.withdraw_all()
    ledger.check(
        submitter=-(paid + tasks.fee),
        provider=tasks.due,
        provider2=tasks.due // 2,
        verifier=tasks.fee,
    )


def test_replicas_with_different_roots_go_to_the_referee(ledger, tasks, actors, market, cfg):
    task_id = tasks.assigned(replicated=True)
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    ledger.send(actors.provider2, "commit", task_id, OTHER_ROOT, OUT, tasks.due)
    assert tasks.task(task_id).status is TaskStatus.DISPUTED
    assert dict(_events(market, task_id))["TaskDisputed"] == {
        "taskId": task_id,
        "checkpointRoot": ROOT,
        "checkpointRoot2": OTHER_ROOT,
    }
    tasks.travel(cfg.window)
    ledger.refused("WrongStatus", actors.stranger, "finalize", task_id)
    ledger.refused("WrongStatus", actors.challenger, "challenge", task_id, value=cfg.min_bond)
    ledger.send(actors.referee, "resolve", task_id, actors.provider2.address)
    slashed, escrow = cfg.slash, tasks.max_payment + tasks.fee
    # the honest replica is the whistleblower
    ledger.check_credits(
        submitter=escrow + slashed // 2,
        provider=slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
    )
    ledger.withdraw_all()
    ledger.check(
        submitter=slashed // 2,
        provider=slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
        contract=-slashed,
    )


def test_a_cleared_dispute_settles_normally(ledger, tasks, actors, cfg):
    task_id = tasks.assigned(replicated=True)
    ledger.send(actors.provider2, "commit", task_id, OTHER_ROOT, OUT, tasks.due)
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    ledger.send(actors.referee, "resolve", task_id, cfg.zero)
    assert tasks.task(task_id).status is TaskStatus.COMMITTED
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    ledger.withdraw_all()
    ledger.check(
        submitter=-(2 * tasks.due + tasks.fee),
        provider=tasks.due,
        provider2=tasks.due,
        verifier=tasks.fee,
    )


def test_expire_refunds_and_penalises_the_silent_provider(ledger, tasks, actors, market, cfg):
    task_id = tasks.assigned()
    tasks.travel(3601)
    ledger.send(actors.stranger, "expire", task_id)
    assert tasks.task(task_id).status is TaskStatus.EXPIRED
    assert market.call("stakeOf", actors.provider.address)[0] == cfg.stake - cfg.penalty
    ledger.check_credits(submitter=tasks.max_payment + tasks.fee + cfg.penalty)
    names = [name for name, _ in _events(market, task_id)]
    assert names[-2:] == ["Slashed", "TaskExpired"]
    ledger.withdraw_all()
    ledger.check(submitter=cfg.penalty, contract=-cfg.penalty)


def test_expire_of_a_half_committed_replication_spares_the_committer(ledger, tasks, actors, cfg):
    task_id = tasks.assigned(replicated=True)
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    tasks.travel(3601)
    ledger.send(actors.stranger, "expire", task_id)
    assert ledger.market.call("stakeOf", actors.provider.address)[0] == cfg.stake
    assert ledger.market.call("stakeOf", actors.provider2.address)[0] == cfg.stake - cfg.penalty
    ledger.withdraw_all()
    ledger.check(submitter=cfg.penalty, contract=-cfg.penalty)


def test_expire_of_an_unassigned_task_only_refunds(ledger, tasks, actors):
    task_id = tasks.open()
    tasks.travel(3601)
    ledger.send(actors.operator, "expire", task_id)
    ledger.withdraw_all()
    ledger.check(contract=0)


def test_stake_unbond_and_withdraw(ledger, tasks, actors, market, cfg):
    s = actors.stranger
    ledger.send(s, "stake", value=cfg.min_stake)
    ledger.send(s, "stake", value=cfg.eth)
    assert market.call("stakeOf", s.address)[0] == cfg.min_stake + cfg.eth
    ledger.send(s, "requestUnstake", cfg.eth)
    tasks.travel(cfg.unbonding)
    ledger.send(s, "withdrawStake")
    assert market.call("stakeOf", s.address) == [cfg.min_stake, 0, 0]
    ledger.check_credits(stranger=cfg.eth)
    ledger.send(s, "withdraw")
    ledger.check(stranger=-cfg.min_stake, contract=cfg.min_stake)


def test_the_event_trail_of_a_task(ledger, tasks, actors, market, cfg):
    start = market.w3.eth.block_number + 1
    task_id = tasks.committed()
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    events = market.events(from_block=start)
    assert [e.name for e in events] == [
        "TaskCreated",
        "TaskAssigned",
        "TaskCommitted",
        "TaskFinalized",
    ]
    assert [(e.block_number, e.log_index) for e in events] == sorted(
        (e.block_number, e.log_index) for e in events
    )
    committed = events[2].args
    assert committed["checkpointRoot"] == ROOT and committed["outputHash"] == OUT
    assert committed["challengeEnd"] == tasks.task(task_id).challenge_end
    assert events[0].args["submitter"] == actors.submitter.address
    assert events[1].args["provider2"] == cfg.zero
    assert all(e.tx_hash.startswith("0x") and len(e.tx_hash) == 66 for e in events)
    ledger.withdraw_all()
    ledger.check(submitter=-(tasks.due + tasks.fee), provider=tasks.due, verifier=tasks.fee)
