"""A browser wallet (EIP-1193) in a real JupyterLab signs in, and signs and pays for a task.

The page gets a ``window.ethereum`` of its own before JupyterLab loads
(``page.add_init_script``): its ``request`` goes to Python through
``page.expose_function``, where eth-account signs with dev account 10 (a
key no other test, no devnet process and not anvil holds) and everything
else is forwarded to the devnet's node, as a wallet extension does. The
user connects it in the panel (which signs in: the kernel's tasks become
its), runs a ``%%gensyn_train`` cell, and approves the task in the panel:
the wallet signs the EIP-712 order and sends ``createTask``, the cell runs
and settles, the money moved on chain, and the refund of the unused escrow
comes back with the wallet's ``withdraw`` (Withdraw refunds). A user who rejects in the wallet
(code 4001) is told so, and the task keeps waiting.

The devnet signer's session file (other tests' kernels submit as account 0)
is saved and put back afterwards, byte for byte.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from playwright.sync_api import expect
from web3 import Web3

from gensyn_jupyter.chain import dev_accounts, format_eth
from gensyn_jupyter.config import session_file

from .._devnet import Devnet
from .conftest import ARTIFACTS, PanelLab
from .test_panel_ui import (
    SETUP,
    TRAIN,
    Chain,
    LabApi,
    _approval,
    _chain,
    _open_notebook,
    _open_panel,
    _quiet,
    _run_cell,
    _task,
    _tid,
    _wait_cell_done,
)

ACCOUNT: LocalAccount = dev_accounts(11)[10]  # no other test's, no devnet process's
REJECTED = "you rejected the request in your wallet; nothing was signed or sent"

# The injected wallet: every request goes to Python (window.__gensynWallet), which
# answers {result} or {error: {code, message}} (code 4001: the user rejected).
PROVIDER_JS = """
(() => {
  const listeners = {};
  window.ethereum = {
    isGensynInjectedWallet: true,
    async request({ method, params }) {
      const answer = await window.__gensynWallet(method, JSON.stringify(params ?? []));
      if (answer.error) {
        const error = new Error(answer.error.message);
        error.code = answer.error.code;
        throw error;
      }
      return answer.result;
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); },
    removeListener(event, fn) {
      listeners[event] = (listeners[event] || []).filter(f => f !== fn);
    }
  };
})();
"""


class InjectedWallet:
    """The Python side of the injected wallet: signs with ``account``, forwards the rest."""

    def __init__(self, account: LocalAccount, w3: Web3) -> None:
        self.account = account
        self.w3 = w3
        self.chain_id = int(w3.eth.chain_id)
        self.reject: set[str] = set()
        self.methods: list[str] = []
        self.authorized = False
        self._lock = threading.Lock()

    def handle(self, method: str, params_json: str) -> dict[str, Any]:
        self.methods.append(method)
        if method in self.reject:
            return {"error": {"code": 4001, "message": "User rejected the request."}}
        params: list[Any] = json.loads(params_json)
        try:
            return {"result": self._answer(method, params)}
        except Exception as exc:  # a wallet answers errors, it does not crash the page
            return {"error": {"code": -32603, "message": f"{type(exc).__name__}: {exc}"}}

    def _answer(self, method: str, params: list[Any]) -> Any:
        address = self.account.address
        if method == "eth_requestAccounts":
            self.authorized = True
            return [address.lower()]
        if method == "eth_accounts":
            return [address.lower()] if self.authorized else []
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "wallet_switchEthereumChain":
            if int(params[0]["chainId"], 16) != self.chain_id:
                raise ValueError("this test wallet knows only the devnet's chain")
            return None
        if method == "personal_sign":
            assert params[1].lower() == address.lower()
            signed = self.account.sign_message(encode_defunct(hexstr=params[0]))
            return "0x" + bytes(signed.signature).hex()
        if method == "eth_signTypedData_v4":
            assert params[0].lower() == address.lower()
            typed = encode_typed_data(full_message=json.loads(params[1]))
            return "0x" + bytes(self.account.sign_message(typed).signature).hex()
        if method == "eth_sendTransaction":
            return self._send(params[0])
        answer: Any = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in answer:
            raise RuntimeError(answer["error"].get("message", answer["error"]))
        return answer["result"]

    def _send(self, request: dict[str, Any]) -> str:
        """Fill nonce, gas and fees as a wallet does, sign and send it raw."""
        assert request["from"].lower() == self.account.address.lower()
        tx: dict[str, Any] = {
            "from": self.account.address,
            "to": Web3.to_checksum_address(request["to"]),
            "data": request.get("data", "0x"),
            "value": int(request.get("value", "0x0"), 16),
            "chainId": self.chain_id,
        }
        with self._lock:
            tx["nonce"] = self.w3.eth.get_transaction_count(self.account.address, "pending")
            tx["gas"] = int(self.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
            tx["maxPriorityFeePerGas"] = int(self.w3.eth.max_priority_fee)
            base = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
            tx["maxFeePerGas"] = 2 * base + tx["maxPriorityFeePerGas"]
            signed = self.account.sign_transaction(tx)
            return self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def lab_api(panel_lab: PanelLab) -> Iterator[LabApi]:
    api = LabApi(panel_lab)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def browser_account(
    devnet: Devnet, lab_api: LabApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAccount]:
    """Dev account 10 in the browser; afterwards the devnet's kernels submit as account 0 again."""
    monkeypatch.setenv("GENSYN_HOME", str(devnet.home))
    path = session_file(devnet.url)
    saved = path.read_bytes() if path.exists() else None
    try:
        yield ACCOUNT
    finally:
        try:
            state = lab_api.post("wallet/browser/logout", {})
            assert state["browser"] is None
        finally:
            if saved is None:
                path.unlink(missing_ok=True)
            else:
                tmp = path.with_suffix(".restore.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(saved)
                os.replace(tmp, path)


@pytest.fixture
def chain(devnet: Devnet) -> Chain:
    return _chain(devnet)


@pytest.fixture
def wallet(chain: Chain, browser_account: LocalAccount) -> InjectedWallet:
    return InjectedWallet(browser_account, chain.w3)


@pytest.fixture
def page(panel_lab: PanelLab, browser: Any, wallet: InjectedWallet) -> Iterator[Any]:
    """A page with the test wallet injected before JupyterLab loads."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.expose_function("__gensynWallet", wallet.handle)
    page.add_init_script(PROVIDER_JS)
    try:
        yield page
    finally:
        page.close()


# ----------------------------------------------------------------------------- steps


def _connect(panel: Any, devnet: Devnet, wallet: InjectedWallet) -> None:
    """Connect the browser wallet in the panel: it signs in, and is the account in use."""
    account = wallet.account
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(panel.locator(_tid("gensyn-browser-address"))).to_have_text("not connected")
    panel.locator(_tid("gensyn-connect-browser")).click()
    expect(message).to_contain_text(
        f"signed in as {account.address} with your browser wallet", timeout=30_000
    )
    expect(panel.locator(_tid("gensyn-browser-address"))).to_have_text(account.address)
    expect(panel.locator(_tid("gensyn-browser-chain"))).to_have_text(f"chain {wallet.chain_id}")
    session = panel.locator(_tid("gensyn-browser-session"))
    expect(session).to_have_attribute("data-signed-in", "true", timeout=10_000)
    expect(session).to_have_attribute("data-in-use", "true")
    expect(panel.locator(_tid("gensyn-wallet-address"))).to_have_text(account.address)
    stored = json.loads(session_file(devnet.url).read_text())
    assert stored["address"] == account.address  # the kernel submits as the browser account


def _fund(panel: Any, chain: Chain, account: LocalAccount) -> None:
    """The devnet faucet, from the panel, for the browser account (in use)."""
    if chain.balance(account.address) >= 10**18:
        return
    panel.locator(_tid("gensyn-faucet")).click()
    expect(panel.locator(_tid("gensyn-panel-message"))).to_contain_text(
        f"faucet sent 10 ETH to {account.address}", timeout=30_000
    )
    expect(panel.locator(_tid("gensyn-browser-balance"))).not_to_have_text("0 ETH", timeout=10_000)


def _waiting_task(page: Any, panel: Any, devnet: Devnet, account: LocalAccount) -> tuple[Any, str]:
    """Run the notebook's cells; the task waits in the panel, as the browser account's."""
    _run_cell(page, 0, wait_done=True)
    _run_cell(page, 1, wait_done=False)
    item, task_id = _approval(panel)
    task = _task(devnet, task_id)
    assert task["state"] == "awaiting_approval"
    assert task["payment"]["order"]["submitter"] == account.address
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    monitor = cell.locator(_tid("gensyn-monitor"))
    expect(monitor).to_have_attribute("data-state", "awaiting_approval", timeout=20_000)
    return item, task_id


# ----------------------------------------------------------------------------- tests


@pytest.mark.timeout(360)
def test_a_task_approved_with_the_browser_wallet_runs_settles_and_is_paid_from_it(
    panel_lab: PanelLab,
    devnet: Devnet,
    page: Any,
    chain: Chain,
    wallet: InjectedWallet,
    browser_account: LocalAccount,
) -> None:
    account = browser_account
    _quiet(devnet, chain)
    _open_notebook(page, panel_lab, "browser-approve.ipynb", SETUP, TRAIN.format(name="paid"))
    panel = _open_panel(page, devnet)
    _connect(panel, devnet, wallet)
    _fund(panel, chain, account)
    page.screenshot(path=str(ARTIFACTS / "browser-wallet-connected.png"))

    start = int(chain.w3.eth.block_number)
    before = {a: chain.balance(a) for a in (account.address, chain.market.address)}
    credits_before = chain.credits(account.address)
    item, task_id = _waiting_task(page, panel, devnet, account)
    order = _task(devnet, task_id)["payment"]["order"]
    total = order["max_price_wei"] + order["verifier_fee_wei"]
    page.screenshot(path=str(ARTIFACTS / "browser-wallet-awaiting-approval.png"))

    item.locator(_tid("gensyn-approve")).click()
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(message).to_contain_text(
        f"approved {task_id}: {format_eth(total)} in escrow, signed and paid from your browser "
        "wallet",
        timeout=90_000,
    )
    expect(item).to_have_count(0, timeout=10_000)
    signing = [m for m in wallet.methods if m in ("eth_signTypedData_v4", "eth_sendTransaction")]
    assert signing == ["eth_signTypedData_v4", "eth_sendTransaction"]

    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    monitor = cell.locator(_tid("gensyn-monitor"))
    expect(monitor).to_have_attribute("data-state", "settled", timeout=120_000)
    _wait_cell_done(page, 1, 30_000)
    output = cell.locator(".jp-OutputArea")
    expect(output).to_contain_text(f"approved: {format_eth(order['max_price_wei'])} in escrow")
    expect(output).to_contain_text("settled: provider paid")
    expect(output.locator("[data-mime-type*='error']")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "browser-wallet-settled.png"))

    payment = _task(devnet, task_id)["payment"]
    assert payment["funded"] and payment["signed"]
    assert any(t["kind"] == "fund" for t in payment["transactions"])
    paid, refunded = int(payment["provider_paid_wei"]), int(payment["refunded_wei"])
    assert paid > 0 and refunded > 0 and paid + refunded == total
    _quiet(devnet, chain)
    # The escrow left the browser account; its refund waits in the market as a
    # credit (no server key withdraws for a browser wallet): the user withdraws it.
    gas = chain.gas_paid(account.address, start + 1, int(chain.w3.eth.block_number))
    assert gas > 0  # the createTask the wallet sent
    assert chain.balance(account.address) == before[account.address] - total - gas
    assert chain.credits(account.address) - credits_before == refunded
    assert chain.balance(chain.market.address) - before[chain.market.address] == refunded
    session = panel.locator(_tid("gensyn-browser-session"))
    expect(session).to_contain_text("refunds to withdraw", timeout=15_000)
    panel.screenshot(path=str(ARTIFACTS / "browser-wallet-panel-after-approval.png"))

    panel.locator(_tid("gensyn-browser-withdraw")).click()
    expect(message).to_contain_text(f"of refunds to {account.address}", timeout=60_000)
    expect(message).to_contain_text("withdrew ")
    expect(session).not_to_contain_text("refunds to withdraw", timeout=15_000)
    expect(panel.locator(_tid("gensyn-browser-withdraw"))).to_be_hidden()
    assert wallet.methods.count("eth_sendTransaction") == 2
    gas = chain.gas_paid(account.address, start + 1, int(chain.w3.eth.block_number))
    assert chain.credits(account.address) == 0
    assert chain.balance(account.address) == before[account.address] - paid - gas + credits_before
    assert chain.balance(chain.market.address) == before[chain.market.address] - credits_before


@pytest.mark.timeout(240)
def test_rejecting_in_the_wallet_says_so_and_the_task_keeps_waiting(
    panel_lab: PanelLab,
    devnet: Devnet,
    page: Any,
    chain: Chain,
    wallet: InjectedWallet,
    browser_account: LocalAccount,
) -> None:
    account = browser_account
    _open_notebook(page, panel_lab, "browser-reject.ipynb", SETUP, TRAIN.format(name="kept"))
    panel = _open_panel(page, devnet)
    _connect(panel, devnet, wallet)
    _fund(panel, chain, account)
    item, task_id = _waiting_task(page, panel, devnet, account)
    balance = chain.balance(account.address)

    wallet.reject.add("eth_signTypedData_v4")
    item.locator(_tid("gensyn-approve")).click()
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(message).to_have_text(REJECTED, timeout=30_000)
    expect(message).to_have_attribute("data-kind", "error")
    page.screenshot(path=str(ARTIFACTS / "browser-wallet-rejected.png"))
    assert "eth_sendTransaction" not in wallet.methods
    expect(item).to_have_count(1)  # still waiting for a click
    assert _task(devnet, task_id)["state"] == "awaiting_approval"
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    expect(cell.locator(_tid("gensyn-monitor"))).to_have_attribute(
        "data-state", "awaiting_approval"
    )
    assert chain.balance(account.address) == balance  # nothing paid, not even gas

    # The user decides against it: Reject cancels the task and the cell ends.
    item.locator(_tid("gensyn-reject")).click()
    expect(message).to_contain_text(f"rejected {task_id}: cancelled", timeout=30_000)
    expect(cell.locator(_tid("gensyn-monitor"))).to_have_attribute(
        "data-state", "cancelled", timeout=60_000
    )
    _wait_cell_done(page, 1, 30_000)
    assert chain.balance(account.address) == balance
