"""Every rule of the TaskMarket, each broken once: the named revert, and no wei moves.

Each test ends with ``ledger.check(...)``: every account's balance changed by
exactly what the rules say (gas aside) and the contract's balance still equals
escrow + stake + bonds + credits.
"""

from __future__ import annotations

from gensyn_jupyter.chain import TaskStatus

SPEC = b"\x5e" * 32
ROOT = b"\xc0" * 32
OUT = b"\x0f" * 32


def test_underfunded_or_overfunded_task_is_refused(ledger, tasks, actors, cfg) -> None:
    task_id, deadline = tasks.new_id(), tasks.now() + 3600
    mp, fee = tasks.max_payment, tasks.fee
    err = ledger.refused(
        "WrongPayment", actors.submitter, "createTask", task_id, SPEC, mp, fee, deadline, value=mp
    )
    assert err.args_by_name == {"expected": mp + fee, "sent": mp}
    err = ledger.refused(
        "WrongPayment",
        actors.submitter,
        "createTask",
        task_id,
        SPEC,
        mp,
        fee,
        deadline,
        value=mp + fee + 1,
    )
    assert err.args_by_name == {"expected": mp + fee, "sent": mp + fee + 1}
    assert tasks.task(task_id).status is TaskStatus.NONE
    ledger.check(contract=0)


def test_task_needs_a_future_deadline_and_a_fresh_id(ledger, tasks, actors) -> None:
    mp, fee = tasks.max_payment, tasks.fee
    now = tasks.now()
    err = ledger.refused(
        "DeadlinePassed",
        actors.submitter,
        "createTask",
        b"\x01" * 32,
        SPEC,
        mp,
        fee,
        now,
        value=mp + fee,
    )
    assert err.args_by_name == {"deadline": now}
    task_id = tasks.open()
    ledger.refused(
        "TaskExists",
        actors.submitter,
        "createTask",
        task_id,
        SPEC,
        mp,
        fee,
        now + 99,
        value=mp + fee,
    )
    ledger.check(submitter=-(mp + fee), contract=mp + fee)


def test_amounts_above_uint96_are_refused(ledger, tasks, actors) -> None:
    too_big = 2**96
    err = ledger.refused(
        "AmountTooLarge",
        actors.submitter,
        "createTask",
        b"\x02" * 32,
        SPEC,
        too_big,
        0,
        tasks.now() + 99,
        value=0,
    )
    assert err.args_by_name == {"amount": too_big, "maximum": too_big - 1}
    ledger.check()


def test_only_the_operator_assigns(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.open()
    for caller in (actors.submitter, actors.provider, actors.referee):
        err = ledger.refused(
            "NotOperator",
            caller,
            "assign",
            task_id,
            actors.provider.address,
            cfg.zero,
            cfg.zero,
            tasks.price,
        )
        assert err.args_by_name == {"caller": caller.address}
    assert tasks.task(task_id).status is TaskStatus.OPEN
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_an_understaked_provider_cannot_be_assigned(ledger, tasks, actors, market, cfg) -> None:
    ledger.send(actors.stranger, "stake", value=cfg.min_stake - 1)
    task_id = tasks.open()
    err = ledger.refused(
        "StakeTooLow",
        actors.operator,
        "assign",
        task_id,
        actors.stranger.address,
        cfg.zero,
        cfg.zero,
        tasks.price,
    )
    assert err.args_by_name == {
        "provider": actors.stranger.address,
        "stake": cfg.min_stake - 1,
        "minimum": cfg.min_stake,
    }
    # nor as the second replica, nor with stake that is only unbonding
    ledger.refused(
        "StakeTooLow",
        actors.operator,
        "assign",
        task_id,
        actors.provider.address,
        actors.stranger.address,
        cfg.zero,
        tasks.price // 2,
    )
    ledger.send(actors.provider2, "requestUnstake", cfg.stake - cfg.min_stake + 1)
    ledger.refused(
        "StakeTooLow",
        actors.operator,
        "assign",
        task_id,
        actors.provider2.address,
        cfg.zero,
        cfg.zero,
        tasks.price,
    )
    ledger.check(
        stranger=-(cfg.min_stake - 1),
        submitter=-(tasks.max_payment + tasks.fee),
        contract=cfg.min_stake - 1 + tasks.max_payment + tasks.fee,
    )


def test_price_times_providers_cannot_exceed_the_maximum(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.open()
    mp = tasks.max_payment
    err = ledger.refused(
        "PriceAboveMaximum",
        actors.operator,
        "assign",
        task_id,
        actors.provider.address,
        cfg.zero,
        cfg.zero,
        mp + 1,
    )
    assert err.args_by_name == {"total": mp + 1, "maximum": mp}
    err = ledger.refused(
        "PriceAboveMaximum",
        actors.operator,
        "assign",
        task_id,
        actors.provider.address,
        actors.provider2.address,
        cfg.zero,
        mp // 2 + 1,
    )
    assert err.args_by_name == {"total": mp + 2, "maximum": mp}
    ledger.check(submitter=-(mp + tasks.fee))


def test_bad_assignments_are_refused(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.open()
    op, p1, p2 = actors.operator, actors.provider.address, actors.provider2.address
    ledger.refused("InvalidProvider", op, "assign", task_id, cfg.zero, cfg.zero, cfg.zero, 1)
    ledger.refused("InvalidProvider", op, "assign", task_id, p1, p1, cfg.zero, 1)
    ledger.refused("InvalidVerifier", op, "assign", task_id, p1, p2, p2, 1)
    ledger.refused("UnknownTask", op, "assign", b"\x09" * 32, p1, cfg.zero, cfg.zero, 1)
    ledger.send(op, "assign", task_id, p1, cfg.zero, cfg.zero, 1)
    err = ledger.refused("WrongStatus", op, "assign", task_id, p2, cfg.zero, cfg.zero, 1)
    assert err.args_by_name["status"] == TaskStatus.ASSIGNED
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_assign_after_the_deadline_is_refused(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.open()
    tasks.travel(3601)
    ledger.refused(
        "DeadlinePassed",
        actors.operator,
        "assign",
        task_id,
        actors.provider.address,
        cfg.zero,
        cfg.zero,
        tasks.price,
    )
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_only_an_assigned_provider_commits(ledger, tasks, actors) -> None:
    task_id = tasks.assigned()
    for caller in (actors.provider2, actors.stranger, actors.submitter, actors.operator):
        err = ledger.refused("NotAssignedProvider", caller, "commit", task_id, ROOT, OUT, 1)
        assert err.args_by_name == {"taskId": task_id, "caller": caller.address}
        assert str(err) == (
            f"TaskMarket refused: NotAssignedProvider(taskId=0x{task_id.hex()}, "
            f"caller={caller.address}): only the provider the task was assigned to can commit"
        )
    assert tasks.task(task_id).status is TaskStatus.ASSIGNED
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_amount_due_above_the_price_is_refused(ledger, tasks, actors) -> None:
    task_id = tasks.assigned()
    err = ledger.refused(
        "AmountAboveMaximum", actors.provider, "commit", task_id, ROOT, OUT, tasks.price + 1
    )
    assert err.args_by_name == {"amountDue": tasks.price + 1, "maximum": tasks.price}
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_a_provider_commits_once(ledger, tasks, actors) -> None:
    task_id = tasks.assigned(replicated=True)
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, 1)
    err = ledger.refused("AlreadyCommitted", actors.provider, "commit", task_id, ROOT, OUT, 1)
    assert err.args_by_name == {"taskId": task_id, "provider": actors.provider.address}
    single = tasks.committed()
    err = ledger.refused("WrongStatus", actors.provider, "commit", single, ROOT, OUT, 1)
    assert err.args_by_name["status"] == TaskStatus.COMMITTED
    ledger.check(submitter=-2 * (tasks.max_payment + tasks.fee))


def test_finalize_inside_the_window_is_refused(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    ends = tasks.task(task_id).challenge_end
    err = ledger.refused("ChallengeWindowOpen", actors.stranger, "finalize", task_id)
    assert err.args_by_name == {"endsAt": ends}
    tasks.travel(cfg.window - 10)
    ledger.refused("ChallengeWindowOpen", actors.provider, "finalize", task_id)
    assert tasks.task(task_id).status is TaskStatus.COMMITTED
    ledger.check_credits()
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_double_finalize_pays_once(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    err = ledger.refused("WrongStatus", actors.stranger, "finalize", task_id)
    assert err.args_by_name == {"taskId": task_id, "status": TaskStatus.FINALIZED}
    ledger.refused("WrongStatus", actors.provider, "finalize", task_id)
    ledger.withdraw_all()
    ledger.check(
        submitter=-(tasks.due + tasks.fee), provider=tasks.due, verifier=tasks.fee, contract=0
    )


def test_only_the_referee_resolves(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    for caller in (actors.operator, actors.challenger, actors.submitter, actors.deployer):
        err = ledger.refused("NotReferee", caller, "resolve", task_id, actors.provider.address)
        assert err.args_by_name == {"caller": caller.address}
    assert tasks.task(task_id).status is TaskStatus.CHALLENGED
    ledger.check(submitter=-(tasks.max_payment + tasks.fee), challenger=-cfg.min_bond)


def test_resolve_needs_a_challenge_and_a_provider_as_cheater(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    err = ledger.refused("WrongStatus", actors.referee, "resolve", task_id, cfg.zero)
    assert err.args_by_name["status"] == TaskStatus.COMMITTED
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    err = ledger.refused(
        "InvalidCheater", actors.referee, "resolve", task_id, actors.stranger.address
    )
    assert err.args_by_name == {"taskId": task_id, "cheater": actors.stranger.address}
    ledger.check(submitter=-(tasks.max_payment + tasks.fee), challenger=-cfg.min_bond)


def test_challenge_after_the_window_is_refused(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    ends = tasks.task(task_id).challenge_end
    tasks.travel(cfg.window)
    err = ledger.refused(
        "ChallengeWindowClosed", actors.challenger, "challenge", task_id, value=cfg.min_bond
    )
    assert err.args_by_name == {"endedAt": ends}
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_challenge_with_a_bond_too_low_is_refused(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.committed()
    err = ledger.refused(
        "BondTooLow", actors.challenger, "challenge", task_id, value=cfg.min_bond - 1
    )
    assert err.args_by_name == {"bond": cfg.min_bond - 1, "minimum": cfg.min_bond}
    # an open task (nothing committed) cannot be challenged either
    open_id = tasks.open()
    ledger.refused("WrongStatus", actors.challenger, "challenge", open_id, value=cfg.min_bond)
    ledger.check(submitter=-2 * (tasks.max_payment + tasks.fee))


def test_cancel_after_assignment_is_refused(ledger, tasks, actors) -> None:
    task_id = tasks.assigned()
    err = ledger.refused("WrongStatus", actors.submitter, "cancelTask", task_id)
    assert err.args_by_name == {"taskId": task_id, "status": TaskStatus.ASSIGNED}
    assert "ASSIGNED" in str(err)
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_only_the_submitter_cancels(ledger, tasks, actors) -> None:
    task_id = tasks.open()
    for caller in (actors.operator, actors.stranger):
        err = ledger.refused("NotSubmitter", caller, "cancelTask", task_id)
        assert err.args_by_name == {"taskId": task_id, "caller": caller.address}
    ledger.refused("UnknownTask", actors.submitter, "cancelTask", b"\x07" * 32)
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_an_expired_task_cannot_be_claimed(ledger, tasks, actors, cfg) -> None:
    task_id = tasks.assigned()
    deadline = tasks.task(task_id).deadline
    tasks.travel(3601)
    err = ledger.refused("DeadlinePassed", actors.provider, "commit", task_id, ROOT, OUT, 1)
    assert err.args_by_name == {"deadline": deadline}
    ledger.send(actors.stranger, "expire", task_id)
    err = ledger.refused("WrongStatus", actors.provider, "commit", task_id, ROOT, OUT, 1)
    assert err.args_by_name["status"] == TaskStatus.EXPIRED
    ledger.refused("WrongStatus", actors.provider, "finalize", task_id)
    ledger.refused("WrongStatus", actors.stranger, "expire", task_id)
    ledger.refused("WrongStatus", actors.submitter, "cancelTask", task_id)
    ledger.withdraw_all()
    ledger.check(submitter=cfg.penalty, contract=-cfg.penalty)


def test_expire_waits_for_the_deadline_and_spares_committed_tasks(ledger, tasks, actors) -> None:
    task_id = tasks.assigned()
    deadline = tasks.task(task_id).deadline
    err = ledger.refused("DeadlineNotReached", actors.stranger, "expire", task_id)
    assert err.args_by_name == {"deadline": deadline}
    committed = tasks.committed()
    tasks.travel(3601)
    ledger.refused("WrongStatus", actors.stranger, "expire", committed)
    ledger.check(submitter=-2 * (tasks.max_payment + tasks.fee))


def test_withdrawal_during_unbonding_is_refused(ledger, tasks, actors, market, cfg) -> None:
    p = actors.provider
    ledger.refused("NothingToWithdraw", p, "withdrawStake")
    err = ledger.refused("InsufficientStake", p, "requestUnstake", cfg.stake + 1)
    assert err.args_by_name == {"bonded": cfg.stake, "requested": cfg.stake + 1}
    ledger.refused("ZeroAmount", p, "requestUnstake", 0)
    receipt = ledger.send(p, "requestUnstake", cfg.eth)
    until = market.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + cfg.unbonding
    assert market.call("stakeOf", p.address) == [cfg.stake - cfg.eth, cfg.eth, until]
    err = ledger.refused("StillUnbonding", p, "withdrawStake")
    assert err.args_by_name == {"until": until}
    tasks.travel(cfg.unbonding - 10)
    ledger.refused("StillUnbonding", p, "withdrawStake")
    ledger.refused("NothingToWithdraw", p, "withdraw")
    ledger.check_credits()
    ledger.check()


def test_withdraw_without_credit_and_empty_stake_are_refused(ledger, actors) -> None:
    for account in (actors.stranger, actors.submitter):
        ledger.refused("NothingToWithdraw", account, "withdraw")
    ledger.refused("ZeroAmount", actors.stranger, "stake", value=0)
    ledger.check()
