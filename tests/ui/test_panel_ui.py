"""The Gensyn sidebar panel in a real JupyterLab: a wallet signs for a notebook's task.

A JupyterLab of its own (``panel_lab``: an empty keystore in a temporary
directory, the auto-approve budget off) on the session devnet (anvil, a
TaskMarket, providers, and the devnet's signer, which approves only dev
account 0's tasks). The user imports dev account 6 (a key the devnet's signer
does not hold) in the panel and unlocks it: that signs in, so the kernel's
``%%gensyn_train`` now submits as account 6 and its task waits in the panel's
approvals until it is approved (funded and signed) or rejected there.

Other tests of the session rely on the devnet signer's session file (kernels
submit as account 0): the ``own_account`` fixture saves its bytes and restores
them afterwards, locks the wallet and empties the keystore.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from playwright.sync_api import expect
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market, dev_accounts, format_eth
from gensyn_jupyter.config import session_file

from .._devnet import Devnet
from .conftest import ARTIFACTS, PanelLab

PASSPHRASE = "panel test passphrase"
ACCOUNT: LocalAccount = dev_accounts(7)[6]  # not the devnet signer's (account 0)
KEY = "0x" + bytes(ACCOUNT.key).hex()
NOTEBOOK_USER = dev_accounts(1)[0].address

SETUP = (
    "%load_ext gensyn_jupyter\n"
    "import torch\n"
    "model = torch.nn.Linear(4, 1)\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)"
)
TRAIN = (
    "%%gensyn_train -o {name}\n"
    "for step in range(30):\n"
    "    loss = model(torch.ones(8, 4)).pow(2).mean()\n"
    "    opt.zero_grad(); loss.backward(); opt.step()\n"
)


# ----------------------------------------------------------------------------- helpers


class LabApi:
    """``/gensyn/api`` of the lab, called as the panel does: login cookie and XSRF header."""

    def __init__(self, lab: PanelLab) -> None:
        self.http = httpx.Client(base_url=f"{lab.url}gensyn/api/", timeout=30)
        page = self.http.get(f"{lab.url}lab", params={"token": lab.token})
        assert page.status_code == 200, page.text[:500]
        assert "_xsrf" in self.http.cookies, "the lab page set no _xsrf cookie"

    def post(self, path: str, body: dict[str, Any], *, expect: int = 200) -> Any:
        headers = {"X-XSRFToken": self.http.cookies["_xsrf"]}
        r = self.http.post(path, json=body, headers=headers)
        assert r.status_code == expect, (path, r.status_code, r.text)
        return r.json()

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class Chain:
    w3: Web3
    market: Market

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def credits(self, address: str) -> int:
        return int(self.market.call("credits", Web3.to_checksum_address(address)))

    def gas_paid(self, address: str, first: int, last: int) -> int:
        """Wei ``address`` spent on gas in blocks ``first..last``."""
        total = 0
        for number in range(first, last + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                assert not isinstance(tx, bytes)
                if str(tx["from"]).lower() == address.lower():
                    receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                    total += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        return total


def _chain(devnet: Devnet) -> Chain:
    info = httpx.get(f"{devnet.url}/v1/chain").json()
    w3 = Web3(HTTPProvider(info["rpc_url"]))
    return Chain(w3=w3, market=Market(w3=w3, address=info["market"]))


def _task(devnet: Devnet, task_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{devnet.url}/v1/tasks/{task_id}", headers=devnet.auth()).json())


def _escrow_moves(task: dict[str, Any]) -> bool:
    """True while a funded escrow is about to pay out (commit, finalize or refund).

    A task the coordinator failed with no provider result (its provider was
    killed by a fault test) has no commit: its escrow stays put until its
    deadline passes, an hour later, so it moves nothing during these tests.
    """
    payment = task.get("payment")
    if not payment or not payment["funded"] or payment["outcome"] is not None:
        return False
    committed = any(tx["kind"] == "commit" for tx in payment.get("transactions", []))
    return committed or task["state"] not in ("failed", "cancelled")


def _quiet(devnet: Devnet, chain: Chain, timeout: float = 150) -> None:
    """Wait until no escrow moves: every funded task settled, providers' credits withdrawn.

    Generous: on a loaded 2-core CI machine a task an earlier test left running
    (or its finalize after the challenge window) can take a minute to settle.
    """
    providers = [p["address"] for p in httpx.get(f"{devnet.url}/v1/providers").json()]
    deadline = time.monotonic() + timeout
    while True:
        listed = httpx.get(f"{devnet.url}/v1/tasks", params={"limit": 200}, headers=devnet.auth())
        tasks = listed.json()
        moving = [t["id"] for t in tasks if _escrow_moves(t)]
        owed = [a for a in (NOTEBOOK_USER, *providers) if a and chain.credits(a)]
        if not moving and not owed:
            return
        if time.monotonic() >= deadline:
            states = {t["id"]: (t["state"], t.get("label")) for t in tasks if t["id"] in moving}
            raise AssertionError(f"escrow still moving: {states}, credits of {owed}")
        time.sleep(0.2)


def _notebook(*cells: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(cells)
        ],
    }


def _tid(name: str) -> str:
    return f"[data-testid='{name}']"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def lab_api(panel_lab: PanelLab) -> Iterator[LabApi]:
    api = LabApi(panel_lab)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def own_account(
    panel_lab: PanelLab, devnet: Devnet, lab_api: LabApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalAccount]:
    """Dev account 6 for this test; afterwards the devnet's kernels submit as account 0 again.

    Saves the devnet signer's session file; at teardown locks the wallet,
    removes the imported key, and puts the session file back byte for byte.
    """
    monkeypatch.setenv("GENSYN_HOME", str(devnet.home))
    path = session_file(devnet.url)
    saved = path.read_bytes() if path.exists() else None
    try:
        yield ACCOUNT
    finally:
        try:
            assert lab_api.post("wallet/lock", {})["unlocked"] == []
        finally:
            for keyfile in panel_lab.keystore.glob("0x*.json"):  # the keys, not budget.json
                keyfile.unlink()
            if saved is None:
                path.unlink(missing_ok=True)
            else:
                tmp = path.with_suffix(".restore.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(saved)
                os.replace(tmp, path)


@pytest.fixture
def page(panel_lab: PanelLab, browser: Any) -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        yield page
    finally:
        page.close()


# ----------------------------------------------------------------------------- the lab


def _open_notebook(page: Any, lab: PanelLab, name: str, *cells: str) -> None:
    (lab.root / name).write_text(json.dumps(_notebook(*cells)))
    page.goto(f"{lab.page_url(name)}&reset")  # no tab or panel left open by another test
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)


def _run_cell(page: Any, index: int, *, wait_done: bool) -> None:
    """Select cell ``index`` and run it (Shift+Enter), retrying if the key press was lost."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(3):
        prompt.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "([i, done]) => {"
                " const p = document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
                "   .querySelector('.jp-InputPrompt').innerText;"
                " return done ? /\\[\\d+\\]/.test(p) : /\\[(\\*|\\d+)\\]/.test(p); }",
                arg=[index, wait_done],
                timeout=30_000,
            )
            return
        except Exception:  # the key press was lost (focus): select the cell again
            continue
    raise AssertionError(f"cell {index} did not run: {prompt.inner_text()!r}")


def _wait_cell_done(page: Any, index: int, timeout_ms: int) -> None:
    page.wait_for_function(
        "(i) => /\\[\\d+\\]/.test(document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
        ".querySelector('.jp-InputPrompt').innerText)",
        arg=index,
        timeout=timeout_ms,
    )


# ----------------------------------------------------------------------------- the panel


def _open_panel(page: Any, devnet: Devnet) -> Any:
    """Click the Gensyn tab of the left sidebar; the panel shows the devnet."""
    tab = page.locator(".jp-SideBar.jp-mod-left").get_by_title("Gensyn", exact=True)
    hint = "no Gensyn tab: build the panel (npm run build:lib && npm run build:labextension:dev)"
    expect(tab, hint).to_be_visible(timeout=30_000)
    panel = page.locator("#gensyn-panel")
    if not panel.is_visible():  # a restored layout may show it already; a click would hide it
        tab.click()
    expect(panel).to_be_visible(timeout=10_000)
    expect(panel.locator(_tid("gensyn-network"))).to_contain_text(devnet.url, timeout=15_000)
    return panel


def _import_and_unlock(panel: Any, chain: Chain) -> None:
    """Import dev account 6 with a passphrase, lock it, unlock it again; check what shows."""
    message = panel.locator(_tid("gensyn-panel-message"))
    address = panel.locator(_tid("gensyn-wallet-address"))
    panel.locator(_tid("gensyn-import-key")).fill(KEY)
    panel.locator(_tid("gensyn-passphrase")).fill(PASSPHRASE)
    panel.locator(_tid("gensyn-import")).click()
    expect(message).to_contain_text(f"imported and unlocked {ACCOUNT.address}", timeout=20_000)
    expect(panel.locator(_tid("gensyn-import-key"))).to_have_value("")  # never kept
    expect(address).to_have_text(ACCOUNT.address, timeout=10_000)

    panel.locator(_tid("gensyn-lock")).click()
    expect(message).to_contain_text(f"locked {ACCOUNT.address}", timeout=10_000)
    expect(address).to_have_text("no account", timeout=10_000)
    select = panel.locator(_tid("gensyn-address-select"))
    select.select_option(ACCOUNT.address)
    panel.locator(_tid("gensyn-passphrase")).fill(PASSPHRASE)
    panel.locator(_tid("gensyn-unlock")).click()
    expect(message).to_contain_text(f"unlocked {ACCOUNT.address}", timeout=20_000)
    expect(address).to_have_text(ACCOUNT.address, timeout=10_000)
    expect(select).to_contain_text(f"{ACCOUNT.address} (unlocked)")

    balance = panel.locator(_tid("gensyn-wallet-balance"))
    expect(balance).to_contain_text(" ETH", timeout=10_000)
    shown = float(balance.inner_text().split()[0])
    assert shown == pytest.approx(chain.balance(ACCOUNT.address) / 10**18, abs=1e-5)


def _approval(panel: Any, timeout_ms: int = 90_000) -> tuple[Any, str]:
    """The one task that waits in the panel's approvals, and its id."""
    item = panel.locator(f"{_tid('gensyn-approvals')} {_tid('gensyn-approval')}")
    expect(item).to_have_count(1, timeout=timeout_ms)
    task_id = item.get_attribute("data-task-id")
    assert task_id
    expect(item).to_contain_text(task_id)
    return item, task_id


def _submitted_as_account_6(devnet: Devnet, cell: Any, task_id: str) -> None:
    """The kernel's task is account 6's, and the cell says it waits for an approval."""
    task = _task(devnet, task_id)
    assert task["state"] == "awaiting_approval"
    assert task["payment"]["order"]["submitter"].lower() == ACCOUNT.address.lower()
    monitor = cell.locator(_tid("gensyn-monitor"))
    expect(monitor).to_have_attribute("data-state", "awaiting_approval", timeout=20_000)
    expect(cell).to_contain_text("approv")


# ----------------------------------------------------------------------------- tests


@pytest.mark.timeout(240)
def test_a_task_approved_in_the_panel_runs_settles_and_is_paid_by_the_account(
    panel_lab: PanelLab, devnet: Devnet, page: Any, lab_api: LabApi, own_account: LocalAccount
) -> None:
    chain = _chain(devnet)
    _quiet(devnet, chain)
    _open_notebook(page, panel_lab, "panel-approve.ipynb", SETUP, TRAIN.format(name="approved"))
    panel = _open_panel(page, devnet)
    _import_and_unlock(panel, chain)
    stored = json.loads(session_file(devnet.url).read_text())
    assert stored["address"].lower() == own_account.address.lower()  # the kernel's session

    start = int(chain.w3.eth.block_number)
    before = {a: chain.balance(a) for a in (own_account.address, chain.market.address)}
    _run_cell(page, 0, wait_done=True)
    _run_cell(page, 1, wait_done=False)
    item, task_id = _approval(panel)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    _submitted_as_account_6(devnet, cell, task_id)
    page.screenshot(path=str(ARTIFACTS / "panel-awaiting-approval.png"))

    order = _task(devnet, task_id)["payment"]["order"]
    item.locator(_tid("gensyn-approve")).click()
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(message).to_contain_text(f"approved {task_id}", timeout=30_000)
    expect(item).to_have_count(0, timeout=10_000)

    monitor = cell.locator(_tid("gensyn-monitor"))
    expect(monitor).to_have_attribute("data-state", "settled", timeout=120_000)
    _wait_cell_done(page, 1, 30_000)
    output = cell.locator(".jp-OutputArea")
    expect(output).to_contain_text(f"approved: {format_eth(order['max_price_wei'])} in escrow")
    expect(output).to_contain_text("settled: provider paid")
    expect(output.locator("[data-mime-type*='error']")).to_have_count(0)
    row = panel.locator(f"{_tid('gensyn-tasks')} {_tid('gensyn-task')}[data-task-id='{task_id}']")
    expect(row).to_have_attribute("data-state", "settled", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "panel-settled.png"))
    cell.screenshot(path=str(ARTIFACTS / "panel-cell-settled.png"))
    panel.screenshot(path=str(ARTIFACTS / "panel-after-approval.png"))

    payment = _task(devnet, task_id)["payment"]
    paid, refunded = int(payment["provider_paid_wei"]), int(payment["refunded_wei"])
    assert paid > 0 and paid + refunded == order["max_price_wei"] + order["verifier_fee_wei"]
    _quiet(devnet, chain)
    # The refund is a credit of the market (a pull payment): the server's wallet
    # withdraws it for the unlocked account within a few seconds.
    deadline = time.monotonic() + 30
    while chain.credits(own_account.address) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert chain.credits(own_account.address) == 0, "the wallet did not withdraw the refund"
    assert refunded > 0
    end = int(chain.w3.eth.block_number)
    gas = chain.gas_paid(own_account.address, start + 1, end)
    assert gas > 0
    assert chain.balance(own_account.address) == before[own_account.address] - paid - gas
    assert chain.balance(chain.market.address) == before[chain.market.address]


@pytest.mark.timeout(180)
def test_a_task_rejected_in_the_panel_ends_cancelled_and_the_cell_says_so(
    panel_lab: PanelLab, devnet: Devnet, page: Any, lab_api: LabApi, own_account: LocalAccount
) -> None:
    chain = _chain(devnet)
    _open_notebook(page, panel_lab, "panel-reject.ipynb", SETUP, TRAIN.format(name="rejected"))
    panel = _open_panel(page, devnet)
    _import_and_unlock(panel, chain)
    balance = chain.balance(own_account.address)

    _run_cell(page, 0, wait_done=True)
    _run_cell(page, 1, wait_done=False)
    item, task_id = _approval(panel)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
    _submitted_as_account_6(devnet, cell, task_id)

    item.locator(_tid("gensyn-reject")).click()
    message = panel.locator(_tid("gensyn-panel-message"))
    expect(message).to_contain_text(f"rejected {task_id}: cancelled", timeout=30_000)
    expect(item).to_have_count(0, timeout=10_000)
    monitor = cell.locator(_tid("gensyn-monitor"))
    expect(monitor).to_have_attribute("data-state", "cancelled", timeout=60_000)
    _wait_cell_done(page, 1, 30_000)
    expect(cell.locator(".jp-OutputArea")).to_contain_text(f"task {task_id} was cancelled")
    expect(cell.locator(".jp-OutputArea")).to_contain_text("its escrow was never funded")
    row = panel.locator(f"{_tid('gensyn-tasks')} {_tid('gensyn-task')}[data-task-id='{task_id}']")
    expect(row).to_have_attribute("data-state", "cancelled", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "panel-rejected.png"))
    cell.screenshot(path=str(ARTIFACTS / "panel-cell-cancelled.png"))

    task = _task(devnet, task_id)
    assert task["state"] == "cancelled" and not task["payment"]["funded"]
    assert chain.balance(own_account.address) == balance  # nothing paid, not even gas
