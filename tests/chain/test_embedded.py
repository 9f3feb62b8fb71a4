"""The embedded dev chain behaves like anvil for what web3.py does with it.

Every behaviour test runs against both nodes: anvil (skipped where no binary is installed)
and the embedded eth-tester node, through ``Web3(HTTPProvider(url))``. The contract is
``fixtures/Probe.sol``, compiled by npm ``solc`` into ``fixtures/probe.json``; regenerate
that with ``python tests/chain/test_embedded.py`` after editing the source.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import FilterParams, TxReceipt, Wei

from gensyn_jupyter.chain import (
    Devchain,
    anvil_binary,
    start_anvil,
    start_devchain,
    start_embedded,
)

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
ETHER = 10**18
TOO_SMALL = "0xe94fe3af"  # selector of TooSmall(uint256,uint256)

_COMPILE_JS = """
const solc = require(process.argv[1]);
const source = require('fs').readFileSync(process.argv[2], 'utf8');
const input = {language: 'Solidity', sources: {'Probe.sol': {content: source}},
  settings: {optimizer: {enabled: true, runs: 200},
             outputSelection: {'*': {'*': ['abi', 'evm.bytecode.object']}}}};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length) { console.error(JSON.stringify(errors)); process.exit(1); }
const c = out.contracts['Probe.sol'].Probe;
process.stdout.write(JSON.stringify(
  {compiler: solc.version(), abi: c.abi, bytecode: '0x' + c.evm.bytecode.object}));
"""


def _compile() -> dict[str, Any]:
    """Compile ``Probe.sol`` with the project's npm solc (about 1 s)."""
    done = subprocess.run(
        [
            "node",
            "-e",
            _COMPILE_JS,
            str(ROOT / "node_modules" / "solc"),
            str(FIXTURES / "Probe.sol"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    compiled: dict[str, Any] = json.loads(done.stdout)
    return compiled


@functools.cache
def _artifact() -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads((FIXTURES / "probe.json").read_text())
    return artifact


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["anvil", "embedded"])
def node(request: pytest.FixtureRequest) -> Iterator[Devchain]:
    """A running node of each kind, shared by the module's tests."""
    if request.param == "anvil":
        if anvil_binary() is None:
            why = "no anvil binary (npm install puts one under node_modules/@foundry-rs/)"
            if os.environ.get("CI"):
                pytest.fail(f"{why}: the project's set-up must install it")
            pytest.skip(why)
        chain = start_anvil()
    else:
        chain = start_embedded()
    with chain:
        yield chain


def _rpc(url: str, method: str, params: list[Any] | None = None) -> dict[str, Any]:
    """The whole JSON-RPC answer (``result`` or ``error``)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    answer: dict[str, Any] = httpx.post(url, json=body, timeout=10).json()
    return answer


@pytest.fixture
def w3(node: Devchain) -> Iterator[Web3]:
    """web3 on ``node``; what a test changes is reverted after it (evm_snapshot/evm_revert)."""
    snapshot = _rpc(node.rpc_url, "evm_snapshot")["result"]
    yield Web3(HTTPProvider(node.rpc_url))
    assert _rpc(node.rpc_url, "evm_revert", [snapshot])["result"] is True


def _fees(w3: Web3) -> dict[str, int]:
    tip = w3.eth.max_priority_fee
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}


def _send(w3: Web3, account: LocalAccount, tx: dict[str, Any]) -> TxReceipt:
    """Sign ``tx`` with ``account`` (nonce, chain id and fees filled in), send, wait."""
    full = {
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        **_fees(w3),
        **tx,
    }
    signed = account.sign_transaction(full)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)


def _deploy(w3: Web3, account: LocalAccount) -> Contract:
    factory = w3.eth.contract(abi=_artifact()["abi"], bytecode=_artifact()["bytecode"])
    tx = factory.constructor().build_transaction({"from": account.address})
    receipt = _send(w3, account, dict(tx))
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=_artifact()["abi"])


@pytest.fixture
def probe(w3: Web3, node: Devchain) -> Contract:
    return _deploy(w3, node.accounts[0])


def _call_tx(contract: Contract, account: LocalAccount, fn: str, *args: Any) -> dict[str, Any]:
    tx = getattr(contract.functions, fn)(*args).build_transaction({"from": account.address})
    return dict(tx)


# -- the chain ------------------------------------------------------------------------------


def test_chain_id_is_the_requested_one_for_rpc_and_evm(w3: Web3, probe: Contract) -> None:
    assert w3.eth.chain_id == 31337
    assert w3.net.version == "31337"
    assert probe.functions.chain().call() == 31337  # the CHAINID opcode


def test_dev_accounts_are_anvils_and_funded(w3: Web3, node: Devchain) -> None:
    assert list(w3.eth.accounts) == [a.address for a in node.accounts]
    assert w3.eth.accounts[0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    for account in node.accounts:
        assert w3.eth.get_balance(account.address) == 10_000 * ETHER


def test_value_transfer_changes_balances_by_value_plus_gas(w3: Web3, node: Devchain) -> None:
    sender, recipient = node.accounts[1], Account.create().address
    before = w3.eth.get_balance(sender.address)
    height = w3.eth.block_number
    receipt = _send(w3, sender, {"to": recipient, "value": 12345, "gas": 21_000})
    assert receipt["status"] == 1
    assert receipt["gasUsed"] == 21_000
    cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(sender.address) == before - 12345 - cost
    assert w3.eth.get_balance(recipient) == 12345
    # automine: a block of its own, right away
    assert receipt["blockNumber"] == height + 1 == w3.eth.block_number
    block = w3.eth.get_block(receipt["blockNumber"])
    assert block["transactions"] == [receipt["transactionHash"]]
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    assert (tx["from"], tx["to"], tx["value"]) == (sender.address, recipient, 12345)
    assert w3.eth.get_transaction_count(sender.address, "pending") == 1


def test_send_transaction_from_a_dev_account(w3: Web3, node: Devchain) -> None:
    recipient = Account.create().address
    tx_hash = w3.eth.send_transaction(
        {"from": node.accounts[2].address, "to": recipient, "value": Wei(7)}
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)["status"] == 1
    assert w3.eth.get_balance(recipient) == 7


def test_fee_fields_web3_reads(w3: Web3) -> None:
    assert w3.eth.max_priority_fee == 10**9
    assert w3.eth.gas_price > 10**9
    history = w3.eth.fee_history(1, "latest", [50])
    assert len(history["baseFeePerGas"]) == 2
    assert len(history["reward"]) == 1


# -- contracts ------------------------------------------------------------------------------


def test_event_is_returned_by_get_logs(w3: Web3, node: Devchain, probe: Contract) -> None:
    who = node.accounts[0]
    receipt = _send(w3, who, _call_tx(probe, who, "store", 42))
    assert receipt["status"] == 1
    assert probe.functions.value().call() == 42

    events = probe.events.Stored().get_logs(from_block=receipt["blockNumber"])
    assert [(e["args"]["who"], e["args"]["value"]) for e in events] == [(who.address, 42)]
    assert events[0]["transactionHash"] == receipt["transactionHash"]

    topic0 = receipt["logs"][0]["topics"][0]
    mine = "0x" + bytes(12).hex() + who.address[2:].lower()

    def logs(**changes: Any) -> list[Any]:
        query = {"address": probe.address, "fromBlock": 0, "toBlock": "latest", **changes}
        return list(w3.eth.get_logs(cast(FilterParams, query)))

    assert len(logs(topics=[topic0, mine])) == 1
    assert len(logs(topics=[None, [mine]])) == 1
    assert logs(topics=[topic0, "0x" + "00" * 32]) == []
    assert logs(address=Account.create().address) == []
    with pytest.raises(Web3RPCError, match="BlockOutOfRangeError"):  # as anvil
        logs(fromBlock=receipt["blockNumber"] + 1)


def _too_small(got: int, want: int) -> str:
    return TOO_SMALL + abi_encode(["uint256", "uint256"], [got, want]).hex()


def test_custom_error_raises_contract_custom_error(
    w3: Web3, node: Devchain, probe: Contract
) -> None:
    with pytest.raises(ContractCustomError) as called:
        probe.functions.check(3).call()
    assert called.value.data == _too_small(3, 10)
    with pytest.raises(ContractCustomError) as estimated:
        probe.functions.store(4).estimate_gas({"from": node.accounts[0].address})
    assert estimated.value.data == _too_small(4, 10)
    with pytest.raises(ContractLogicError, match="execution reverted: plain message"):
        probe.functions.fail().call()
    with pytest.raises(ContractPanicError):
        probe.functions.boom(0).call()


@pytest.mark.parametrize(
    ("fn", "args", "code", "message", "data"),
    [
        (
            "check",
            [3],
            3,
            "execution reverted: custom error 0xe94fe3af: "
            + abi_encode(["uint256", "uint256"], [3, 10]).decode(errors="replace"),
            _too_small(3, 10),
        ),
        (
            "fail",
            [],
            3,
            "execution reverted: plain message",
            "0x08c379a0" + abi_encode(["string"], ["plain message"]).hex(),
        ),
        ("bare", [], 3, "execution reverted", "0x"),
        (
            "boom",
            [1],
            3,
            "execution reverted: panic: division or modulo by zero (0x12)",
            "0x4e487b71" + abi_encode(["uint256"], [0x12]).hex(),
        ),
    ],
)
def test_revert_answers_are_anvils(
    node: Devchain, probe: Contract, fn: str, args: list[Any], code: int, message: str, data: str
) -> None:
    call = {"to": probe.address, "data": probe.encode_abi(fn, args)}
    sender = {"from": node.accounts[0].address}
    for method, params in (
        ("eth_call", [call, "latest"]),
        ("eth_estimateGas", [{**call, **sender}]),
    ):
        assert _rpc(node.rpc_url, method, params)["error"] == {
            "code": code,
            "message": message,
            "data": data,
        }


def test_reverting_transaction_is_mined_with_status_0(
    w3: Web3, node: Devchain, probe: Contract
) -> None:
    who = node.accounts[0]
    tx = _call_tx(probe, who, "store", 50)
    tx["data"] = probe.encode_abi("store", [3])
    receipt = _send(w3, who, tx)
    assert receipt["status"] == 0
    assert receipt["logs"] == []
    assert w3.eth.get_transaction_count(who.address) == 2
    # its revert data, as the market reads it
    trace = _rpc(
        node.rpc_url,
        "debug_traceTransaction",
        [receipt["transactionHash"].to_0x_hex(), {"tracer": "callTracer"}],
    )["result"]
    assert trace["output"] == _too_small(3, 10)
    assert trace["error"] == "execution reverted"
    assert trace["gasUsed"] == hex(receipt["gasUsed"])


def test_concurrent_senders_are_all_mined(w3: Web3, node: Devchain) -> None:
    recipient = Account.create().address
    errors: list[BaseException] = []

    def send_five(account: LocalAccount) -> None:
        try:
            own = Web3(HTTPProvider(node.rpc_url))
            for _ in range(5):
                assert _send(own, account, {"to": recipient, "value": 1, "gas": 21_000})["status"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send_five, args=(a,)) for a in node.accounts[6:10]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert w3.eth.get_balance(recipient) == 20


def test_rejected_transactions_are_worded_like_anvil(w3: Web3, node: Devchain) -> None:
    sender, to = node.accounts[3], node.accounts[4].address
    base: dict[str, Any] = {
        "to": to,
        "value": 1,
        "gas": 21_000,
        **_fees(w3),
        "nonce": 0,
        "chainId": 31337,
    }

    def send(**changes: Any) -> dict[str, Any]:
        raw = sender.sign_transaction({**base, **changes}).raw_transaction
        return _rpc(node.rpc_url, "eth_sendRawTransaction", [raw.to_0x_hex()])

    assert send(chainId=5)["error"] == {"code": -32003, "message": "invalid chain id for signer"}
    assert "result" in send()
    assert send()["error"] == {"code": -32003, "message": "nonce too low"}
    assert send(nonce=1, value=10**30)["error"] == {
        "code": -32003,
        "message": "Insufficient funds for gas * price + value",
    }
    assert send(nonce=1, gas=20_000)["error"] == {
        "code": -32000,
        "message": "intrinsic gas too low",
    }
    assert _rpc(node.rpc_url, "eth_sendRawTransaction", ["0x1234"])["error"]["code"] == -32602


# -- anvil's dev methods --------------------------------------------------------------------


def test_increase_time_moves_block_timestamp(w3: Web3, node: Devchain, probe: Contract) -> None:
    before = w3.eth.get_block("latest")["timestamp"]
    assert isinstance(_rpc(node.rpc_url, "evm_increaseTime", [3600])["result"], int)
    assert _rpc(node.rpc_url, "evm_mine")["result"] == "0x0"
    latest = w3.eth.get_block("latest")
    assert latest["timestamp"] >= before + 3600
    assert probe.functions.clock().call() == latest["timestamp"]
    assert probe.functions.height().call() == latest["number"]


def test_snapshot_and_revert_restore_balances(w3: Web3, node: Devchain) -> None:
    url = node.rpc_url
    rich, fresh = node.accounts[5], Account.create().address
    height = w3.eth.block_number
    snapshot = _rpc(url, "evm_snapshot")["result"]
    assert _rpc(url, "anvil_setBalance", [rich.address, hex(1)])["result"] is None
    assert w3.eth.get_balance(rich.address) == 1
    assert _rpc(url, "anvil_setBalance", [rich.address, hex(ETHER)])["result"] is None
    receipt = _send(w3, rich, {"to": fresh, "value": 99, "gas": 21_000})
    assert w3.eth.get_balance(fresh) == 99

    assert _rpc(url, "evm_revert", [snapshot])["result"] is True
    assert w3.eth.get_balance(rich.address) == 10_000 * ETHER
    assert w3.eth.get_balance(fresh) == 0
    assert w3.eth.block_number == height
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt(receipt["transactionHash"])
    assert _rpc(url, "evm_revert", [snapshot])["result"] is False  # used up
    # the chain goes on from there, with the same chain id (reverting to genesis makes a
    # new py-evm chain object)
    assert _send(w3, rich, {"to": fresh, "value": 5, "gas": 21_000})["status"] == 1
    assert _deploy(w3, rich).functions.chain().call() == 31337


def test_unknown_method_is_a_json_rpc_error(node: Devchain) -> None:
    error = _rpc(node.rpc_url, "eth_noSuchMethod")["error"]
    assert error["code"] == -32601
    if node.kind == "embedded":
        assert "eth_noSuchMethod" in error["message"]


def test_batch_requests(node: Devchain) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "net_version", "params": []},
    ]
    answers = httpx.post(node.rpc_url, json=batch, timeout=10).json()
    assert sorted((a["id"], a["result"]) for a in answers) == [(1, "0x7a69"), (2, "31337")]


def test_browser_pages_may_call_it(node: Devchain) -> None:
    origin = {"Origin": "http://127.0.0.1:8888"}
    preflight = httpx.options(
        node.rpc_url,
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    answer = httpx.post(node.rpc_url, json=body, headers=origin)
    assert answer.headers["access-control-allow-origin"] == "*"


# -- starting and stopping ------------------------------------------------------------------


def test_start_devchain_falls_back_to_embedded_without_anvil(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENSYN_ANVIL", str(tmp_path / "no-anvil-here"))
    assert anvil_binary() is None
    with start_devchain() as chain:
        assert chain.kind == "embedded"
        assert Web3(HTTPProvider(chain.rpc_url)).eth.chain_id == 31337
        process = chain._process
        assert process is not None
    assert process.returncode == 0  # SIGTERM ends it cleanly


def test_embedded_start_failure_shows_the_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="chain id must be positive"):
        start_embedded(chain_id=0, log_path=tmp_path / "node.log")


@pytest.mark.skipif(
    not os.environ.get("CI")
    and (shutil.which("node") is None or not (ROOT / "node_modules" / "solc").is_dir()),
    reason="needs node and npm solc (never skipped under CI: the set-up installs them)",
)
def test_fixture_is_the_compiled_source() -> None:
    compiled = _compile()
    assert compiled["bytecode"] == _artifact()["bytecode"], (
        "run: python tests/chain/test_embedded.py"
    )
    assert compiled["abi"] == _artifact()["abi"]


if __name__ == "__main__":
    (FIXTURES / "probe.json").write_text(json.dumps(_compile(), indent=1) + "\n")
    sys.exit(0)
