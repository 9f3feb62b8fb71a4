"""The Python client of the TaskMarket: errors, views, events, nonces, both dev nodes."""

from __future__ import annotations

import pickle
import threading
from dataclasses import replace

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

from gensyn_jupyter.chain import (
    Market,
    MarketConfig,
    MarketError,
    TaskStatus,
    start_embedded,
)
from gensyn_jupyter.chain._artifacts import load_artifact
from gensyn_jupyter.chain._errors import decode_revert, revert_data

ROOT = b"\xc0" * 32
ZERO = "0x" + "00" * 20
OUT = b"\x0f" * 32
ABI = load_artifact().abi


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_a_mined_failure_is_decoded_from_the_receipt(ledger, tasks, actors, market):
    task_id = tasks.assigned()
    block = market.w3.eth.block_number
    with pytest.raises(MarketError) as caught:
        # a gas limit skips the estimate, so the transaction is mined and fails
        market.transact(actors.stranger, "commit", task_id, ROOT, OUT, 1, gas=200_000)
    err = caught.value
    assert market.w3.eth.block_number == block + 1
    assert err.name == "NotAssignedProvider"
    assert err.args_by_name == {"taskId": task_id, "caller": actors.stranger.address}
    assert err.tx_hash is not None and err.tx_hash in str(err)
    receipt = market.w3.eth.get_transaction_receipt(err.tx_hash)
    assert receipt["status"] == 0
    ledger.paid_gas(actors.stranger, receipt)
    ledger.check(submitter=-(tasks.max_payment + tasks.fee))


def test_decode_revert_covers_strings_panics_and_strangers() -> None:
    message = decode_revert(b"\x08\xc3\x79\xa0" + encode(["string"], ["no way"]), ABI)
    assert (message.name, message.args_by_name, message.explanation) == (
        "Error",
        {"message": "no way"},
        "no way",
    )
    panic = decode_revert("0x4e487b71" + encode(["uint256"], [0x11]).hex(), ABI)
    assert panic.name == "Panic" and "overflow" in str(panic)
    empty = decode_revert(b"", ABI)
    assert empty.name == "Reverted" and "out of gas" in str(empty)
    stranger = decode_revert(b"\xde\xad\xbe\xef\x00", ABI)
    assert stranger.name == "UnknownError" and stranger.args_by_name["data"].hex() == "deadbeef00"
    truncated = decode_revert(_selector("WrongPayment(uint256,uint256)") + b"\x00" * 8, ABI)
    assert truncated.name == "UnknownError"
    status = decode_revert(
        _selector("WrongStatus(bytes32,uint8)") + encode(["bytes32", "uint8"], [b"\x01" * 32, 6]),
        ABI,
    )
    assert str(status) == (
        f"TaskMarket refused: WrongStatus(taskId=0x{'01' * 32}, status=FINALIZED): "
        "the task's status does not allow this call"
    )
    again = pickle.loads(pickle.dumps(status))
    assert (again.name, again.args_by_name, str(again)) == (
        status.name,
        status.args_by_name,
        str(status),
    )


def test_revert_data_is_found_in_any_exception_shape() -> None:
    class WithData(Exception):
        data = "0x12345678"

    class WithResponse(Exception):
        def __init__(self) -> None:
            self.rpc_response = {"error": {"code": 3, "message": "reverted", "data": "0xabcdef01"}}

    assert revert_data(WithData()) == bytes.fromhex("12345678")
    assert revert_data(WithResponse()) == bytes.fromhex("abcdef01")
    assert revert_data(Exception({"code": 3, "data": "0x"})) == b""
    assert revert_data(Exception("execution reverted", "0x01020304")) == b"\x01\x02\x03\x04"
    assert revert_data(Exception("nothing here")) is None


def test_a_client_of_an_existing_deployment(chain_w3, market, cfg, actors):
    again = Market(w3=chain_w3, address=market.address.lower())
    assert again.address == market.address
    assert again.config() == MarketConfig(
        operator=actors.operator.address,
        referee=actors.referee.address,
        treasury=actors.treasury.address,
        min_stake=cfg.min_stake,
        min_bond=cfg.min_bond,
        unbonding_delay=cfg.unbonding,
        challenge_window=cfg.window,
    )
    assert again.call("slashAmount") == cfg.slash
    assert again.call("expiryPenalty") == cfg.penalty
    unknown = again.task(b"\x42" * 32)
    assert (unknown.status, unknown.submitter, unknown.escrow) == (TaskStatus.NONE, ZERO, 0)


def test_the_task_view_follows_the_task(ledger, tasks, actors, cfg):
    task_id = tasks.assigned(replicated=True)
    task = tasks.task(task_id)
    assert task.status is TaskStatus.ASSIGNED
    assert (task.provider, task.provider2, task.verifier) == (
        actors.provider.address,
        actors.provider2.address,
        actors.verifier.address,
    )
    assert (task.price, task.amount_due, task.amount_due2) == (tasks.price, 0, 0)
    assert task.replicated and not task.provider_committed
    assert task.escrow == tasks.max_payment + tasks.fee
    ledger.send(actors.provider, "commit", task_id, ROOT, OUT, tasks.due)
    task = tasks.task(task_id)
    assert (task.amount_due, task.amount_due2, task.replica_root) == (tasks.due, 0, ROOT)
    assert task.provider_committed and not task.provider2_committed
    ledger.send(actors.provider2, "commit", task_id, ROOT, OUT, 7)
    task = tasks.task(task_id)
    assert (task.status, task.amount_due2) == (TaskStatus.COMMITTED, 7)
    assert task.challenge_end == tasks.now() + cfg.window


def test_concurrent_senders_share_one_nonce_sequence(ledger, actors, market):
    errors: list[BaseException] = []

    def stake() -> None:
        try:
            ledger.send(actors.stranger, "stake", value=1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stake) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert market.call("stakeOf", actors.stranger.address)[0] == 8
    ledger.check(stranger=-8, contract=8)


def test_a_refused_deployment_raises_market_error(chain_w3, actors, market):
    config = MarketConfig(
        operator="0x" + "00" * 20,
        referee=actors.referee.address,
        treasury=actors.treasury.address,
        min_stake=1,
        min_bond=1,
        unbonding_delay=1,
        challenge_window=1,
    )
    with pytest.raises(MarketError) as caught:
        Market.deploy(w3=chain_w3, deployer=actors.deployer, config=config)
    assert caught.value.name == "ZeroAddress"
    with pytest.raises(MarketError) as caught:
        Market.deploy(
            w3=chain_w3,
            deployer=actors.deployer,
            config=replace(config, operator=actors.operator.address, challenge_window=2**32),
        )
    assert caught.value.name == "DurationTooLong"


def test_the_embedded_node_gives_the_same_errors() -> None:
    chain = start_embedded()
    try:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        deployer, operator, referee, treasury, submitter, provider = chain.accounts[:6]
        config = MarketConfig(
            operator=operator.address,
            referee=referee.address,
            treasury=treasury.address,
            min_stake=10**18,
            min_bond=10**17,
            unbonding_delay=60,
            challenge_window=60,
        )
        market = Market.deploy(w3=w3, deployer=deployer, config=config)
        market.transact(provider, "stake", value=10**18)
        deadline = int(w3.eth.get_block("latest")["timestamp"]) + 600
        task_id = keccak(text="embedded")
        with pytest.raises(MarketError) as caught:
            market.transact(submitter, "createTask", task_id, OUT, 100, 1, deadline, value=100)
        assert (caught.value.name, caught.value.args_by_name) == (
            "WrongPayment",
            {"expected": 101, "sent": 100},
        )
        market.transact(submitter, "createTask", task_id, OUT, 100, 1, deadline, value=101)
        market.transact(
            operator, "assign", task_id, provider.address, "0x" + "00" * 20, "0x" + "00" * 20, 50
        )
        with pytest.raises(MarketError) as caught:
            market.transact(submitter, "commit", task_id, ROOT, OUT, 1, gas=200_000)
        assert caught.value.name == "NotAssignedProvider"
        assert caught.value.tx_hash is not None
        with pytest.raises(MarketError) as caught:
            market.call("withdraw")
        assert caught.value.name == "NothingToWithdraw"
        assert market.task(task_id).status is TaskStatus.ASSIGNED
        assert [e.name for e in market.events(from_block=0)] == [
            "Staked",
            "TaskCreated",
            "TaskAssigned",
        ]
    finally:
        chain.stop()
