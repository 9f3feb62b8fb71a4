"""TaskMarket.reassign: a lost provider's paid task handed over on its signed progress.

The lost provider (``provider``) signed a claim for its work up to a
checkpoint; the operator hands the task to ``provider2``, who resumes and
commits. At settlement each is paid what it claimed, the submitter gets the
rest back, and nobody is paid for work that produced no result. Every
accepted handover also shows that ``progress_hash`` (Python) hashes as the
contract does.
"""

from __future__ import annotations

from gensyn_jupyter.chain import TaskStatus, progress_hash, sign_progress
from gensyn_jupyter.coordinator._resume import MAX_HANDOVERS  # the contract's limit

ROOT = b"\xc0" * 32
OUT = b"\x0f" * 32
LEAF = b"\x1e" * 32
STEP = 40


def _claim(market, account, task_id, amount, *, step=STEP, leaf=LEAF):
    digest = progress_hash(
        chain_id=int(market.w3.eth.chain_id),
        market=market.address,
        task_key=task_id,
        step=step,
        leaf=leaf,
        amount_wei=amount,
    )
    return bytes.fromhex(sign_progress(account, digest)[2:])


def _reassign(ledger, actors, task_id, amount, *, signer=None, to=None, verifier=None):
    market = ledger.market
    signature = _claim(market, signer or actors.provider, task_id, amount)
    return (
        actors.operator,
        "reassign",
        task_id,
        (to or actors.provider2).address,
        (verifier or actors.verifier).address,
        STEP,
        LEAF,
        amount,
        signature,
    )


def test_the_lost_provider_is_paid_its_signed_claim_and_the_next_what_is_left(
    ledger, tasks, actors, market, cfg
):
    task_id = tasks.assigned()
    lost_claim = tasks.price // 4
    ledger.send(*_reassign(ledger, actors, task_id, lost_claim))
    task = tasks.task(task_id)
    assert task.status is TaskStatus.ASSIGNED
    assert (task.provider, task.verifier) == (actors.provider2.address, actors.verifier.address)
    name, args = [(e.name, e.args) for e in market.events(from_block=0, task_id=task_id)][-1]
    assert name == "TaskReassigned"
    assert args == {
        "taskId": task_id,
        "from": actors.provider.address,
        "to": actors.provider2.address,
        "step": STEP,
        "leaf": LEAF,
        "paidFrom": lost_claim,
    }
    # the lost provider can no longer commit; the next one at most what is left of the price
    ledger.refused("NotAssignedProvider", actors.provider, "commit", task_id, ROOT, OUT, 1)
    left = tasks.price - lost_claim
    ledger.refused("AmountAboveMaximum", actors.provider2, "commit", task_id, ROOT, OUT, left + 1)
    second = left - 1000
    ledger.send(actors.provider2, "commit", task_id, ROOT, OUT, second)
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    paid = lost_claim + second
    refund = tasks.max_payment - paid
    ledger.check_credits(
        provider=lost_claim, provider2=second, verifier=tasks.fee, submitter=refund
    )
    finalized = [e.args for e in market.events(from_block=0, task_id=task_id)][-1]
    assert finalized["paidProviders"] == paid and finalized["refund"] == refund
    ledger.withdraw_all()
    ledger.check(
        submitter=-(paid + tasks.fee), provider=lost_claim, provider2=second, verifier=tasks.fee
    )


def test_only_the_operator_hands_over_and_only_on_the_lost_provider_s_signature(
    ledger, tasks, actors
):
    task_id = tasks.assigned()
    call = _reassign(ledger, actors, task_id, 10)
    ledger.refused("NotOperator", actors.stranger, *call[1:])
    # signed by someone else (the next provider, or the operator itself): refused
    for forger in (actors.provider2, actors.operator):
        ledger.refused(
            "BadProgressSignature", *_reassign(ledger, actors, task_id, 10, signer=forger)
        )
    # a signature for another amount does not carry over
    forged = list(call)
    forged[7] = 11
    ledger.refused("BadProgressSignature", *forged)
    # more than the price
    ledger.refused("AmountAboveMaximum", *_reassign(ledger, actors, task_id, tasks.price + 1))
    # to an unstaked provider, or with the next provider as its own verifier
    ledger.refused("StakeTooLow", *_reassign(ledger, actors, task_id, 10, to=actors.stranger))
    ledger.refused(
        "InvalidVerifier", *_reassign(ledger, actors, task_id, 10, verifier=actors.provider2)
    )
    assert tasks.task(task_id).provider == actors.provider.address


def test_no_handover_after_a_commit_the_deadline_or_of_a_replicated_task(ledger, tasks, actors):
    committed = tasks.committed()
    ledger.refused("WrongStatus", *_reassign(ledger, actors, committed, 10))
    replicated = tasks.assigned(replicated=True)
    ledger.refused(
        "NotReassignable",
        *_reassign(ledger, actors, replicated, 10, to=actors.stranger),
    )
    late = tasks.assigned()
    tasks.travel(3601)
    ledger.refused("DeadlinePassed", *_reassign(ledger, actors, late, 10))


def test_a_task_is_handed_over_at_most_four_times(ledger, tasks, actors, market):
    task_id = tasks.assigned()
    current, other = actors.provider, actors.provider2
    for _ in range(MAX_HANDOVERS):
        ledger.send(*_reassign(ledger, actors, task_id, 1, signer=current, to=other))
        current, other = other, current
    ledger.refused(
        "TooManyHandovers", *_reassign(ledger, actors, task_id, 1, signer=current, to=other)
    )


def test_a_task_that_expires_after_a_handover_pays_no_provider(ledger, tasks, actors, cfg):
    task_id = tasks.assigned()
    ledger.send(*_reassign(ledger, actors, task_id, tasks.price // 4))
    tasks.travel(3601)
    ledger.send(actors.stranger, "expire", task_id)
    # no result: the lost provider's claim is void, the silent next one pays the penalty
    ledger.check_credits(submitter=tasks.max_payment + tasks.fee + cfg.penalty)
    ledger.withdraw_all()
    ledger.check(submitter=cfg.penalty, contract=-cfg.penalty)


def test_the_lost_provider_stays_slashable_for_its_segments(ledger, tasks, actors, market, cfg):
    task_id = tasks.assigned()
    ledger.send(*_reassign(ledger, actors, task_id, tasks.price // 4))
    ledger.send(actors.provider2, "commit", task_id, ROOT, OUT, tasks.due // 2)
    ledger.send(actors.challenger, "challenge", task_id, value=cfg.min_bond)
    ledger.refused("InvalidCheater", actors.referee, "resolve", task_id, actors.stranger.address)
    ledger.send(actors.referee, "resolve", task_id, actors.provider.address)
    assert tasks.task(task_id).status is TaskStatus.SLASHED
    assert market.call("stakeOf", actors.provider.address)[0] == cfg.stake - cfg.slash
    slashed = cfg.slash
    ledger.check_credits(
        submitter=tasks.max_payment + tasks.fee + slashed // 2,
        challenger=cfg.min_bond + slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
    )
    ledger.withdraw_all()
    ledger.check(
        submitter=slashed // 2,
        challenger=slashed // 4,
        treasury=slashed - slashed // 2 - slashed // 4,
        contract=-slashed,
    )
