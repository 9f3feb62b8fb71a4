"""Attacks through a malicious receiver contract (``contracts/test/Reentrant.sol``).

The receiver is a verifier or a submitter whose ``receive()`` calls back into the
market while being paid. Pull payments zero the credit before the transfer, so a
callback finds nothing to take, and a receiver that refuses ether blocks only
its own withdrawal, never anybody's settlement.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from gensyn_jupyter.chain import TaskStatus

ROOT = b"\xc0" * 32
OUT = b"\x0f" * 32
NOTHING_TO_WITHDRAW = keccak(text="NothingToWithdraw()")[:4]


@pytest.fixture
def receiver(ledger, actors, reentrant_artifact):
    """A Reentrant contract owned by ``stranger``, tracked by the ledger as ``receiver``."""
    contract = ledger.deploy(actors.stranger, reentrant_artifact)
    ledger.track("receiver", contract.address)
    return contract


def _calldata(market, function, *args):
    return market._contract.encode_abi(function, args=list(args))


def _committed_for(ledger, tasks, actors, verifier_address):
    task_id = tasks.open()
    ledger.send(
        actors.operator,
        "assign",
        task_id,
        actors.provider.address,
        "0x" + "00" * 20,
        verifier_address,
        tasks.price,
    )
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    return task_id


def test_reentering_withdraw_gets_nothing_more(ledger, tasks, actors, market, receiver, cfg):
    task_id = _committed_for(ledger, tasks, actors, receiver.address)
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", task_id)
    assert market.call("credits", receiver.address) == tasks.fee
    # receive() calls withdraw() again, up to three times
    ledger.send_to(
        actors.stranger, receiver, "arm", market.address, _calldata(market, "withdraw"), 3
    )
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, 0, _calldata(market, "withdraw")
    )
    assert receiver.functions.attempts().call() == 1
    assert receiver.functions.successes().call() == 0
    assert bytes(receiver.functions.lastRevert().call()) == NOTHING_TO_WITHDRAW
    assert receiver.functions.received().call() == tasks.fee
    assert market.call("credits", receiver.address) == 0
    ledger.withdraw_all()
    ledger.check(submitter=-(tasks.due + tasks.fee), provider=tasks.due, receiver=tasks.fee)


def test_reentering_finalize_cannot_double_pay(ledger, tasks, actors, market, receiver, cfg):
    """The callback may settle another task (anyone may), but that pays a new credit later."""
    first = _committed_for(ledger, tasks, actors, receiver.address)
    second = _committed_for(ledger, tasks, actors, receiver.address)
    tasks.travel(cfg.window)
    ledger.send(actors.stranger, "finalize", first)
    ledger.send_to(
        actors.stranger, receiver, "arm", market.address, _calldata(market, "finalize", second), 5
    )
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, 0, _calldata(market, "withdraw")
    )
    # the callback finalized the second task; re-finalizing the first is refused
    assert receiver.functions.successes().call() == 1
    assert tasks.task(second).status is TaskStatus.FINALIZED
    assert receiver.functions.received().call() == tasks.fee
    assert market.call("credits", receiver.address) == tasks.fee
    ledger.refused("WrongStatus", actors.stranger, "finalize", first)
    ledger.send_to(
        actors.stranger, receiver, "arm", market.address, _calldata(market, "finalize", first), 5
    )
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, 0, _calldata(market, "withdraw")
    )
    assert receiver.functions.received().call() == 2 * tasks.fee
    assert receiver.functions.attempts().call() == 2
    assert receiver.functions.successes().call() == 1  # finalize(first) again: refused
    ledger.withdraw_all()
    ledger.check(
        submitter=-2 * (tasks.due + tasks.fee), provider=2 * tasks.due, receiver=2 * tasks.fee
    )


def test_reentrant_submitter_gets_its_refund_once(ledger, tasks, actors, market, receiver):
    task_id = tasks.new_id()
    escrow = tasks.max_payment + tasks.fee
    create = _calldata(
        market,
        "createTask",
        task_id,
        b"\x5e" * 32,
        tasks.max_payment,
        tasks.fee,
        tasks.now() + 3600,
    )
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, escrow, create, value=escrow
    )
    assert tasks.task(task_id).submitter == receiver.address
    ledger.send_to(
        actors.stranger,
        receiver,
        "execute",
        market.address,
        0,
        _calldata(market, "cancelTask", task_id),
    )
    ledger.send_to(
        actors.stranger, receiver, "arm", market.address, _calldata(market, "withdraw"), 10
    )
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, 0, _calldata(market, "withdraw")
    )
    assert receiver.functions.received().call() == escrow
    assert receiver.functions.successes().call() == 0
    # a second withdrawal through the contract is refused with the market's own error
    ledger.refused(
        "NothingToWithdraw",
        actors.stranger,
        "execute",
        market.address,
        0,
        _calldata(market, "withdraw"),
        contract=receiver,
    )
    ledger.check(stranger=-escrow, receiver=escrow)


def test_a_receiver_that_refuses_payment_blocks_nobody(ledger, tasks, actors, market, receiver):
    ledger.send_to(actors.stranger, receiver, "setRefuse", True)
    task_id = _committed_for(ledger, tasks, actors, receiver.address)
    tasks.travel(ledger.market.config().challenge_window)
    ledger.send(actors.stranger, "finalize", task_id)  # settlement does not transfer
    err = ledger.refused(
        "TransferFailed",
        actors.stranger,
        "execute",
        market.address,
        0,
        _calldata(market, "withdraw"),
        contract=receiver,
    )
    assert err.args_by_name == {"to": receiver.address, "amount": tasks.fee}
    assert market.call("credits", receiver.address) == tasks.fee  # kept for later
    ledger.withdraw_all()  # everyone else is paid
    ledger.check(submitter=-(tasks.due + tasks.fee), provider=tasks.due, contract=tasks.fee)
    ledger.send_to(actors.stranger, receiver, "setRefuse", False)
    ledger.send_to(
        actors.stranger, receiver, "execute", market.address, 0, _calldata(market, "withdraw")
    )
    ledger.check(submitter=-(tasks.due + tasks.fee), provider=tasks.due, receiver=tasks.fee)
