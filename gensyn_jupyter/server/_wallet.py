"""The server's wallet: the keystore, the account in use, its sessions and its budget.

Every method that reads files, derives keys (scrypt) or talks to a
coordinator or a chain is blocking: handlers call them through
:meth:`Wallet.run`, in the wallet's own threads, so the server's event loop
never waits.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

import httpx

from ..chain import (
    BudgetError,
    BudgetLedger,
    BudgetPolicy,
    Keystore,
    KeystoreError,
    WrongPassphrase,
)
from ..config import session_file, write_session
from ._autoapprove import AutoApprover
from ._browser_wallet import BrowserWallet
from ._budget_settings import BudgetSettings, eth_text
from ._errors import ApiError
from ._sessions import Sessions

__all__ = ["Wallet"]

P = ParamSpec("P")
T = TypeVar("T")


class Wallet:
    """What the extension keeps for signing: one per server.

    Parameters
    ----------
    keystore
        The encrypted keys (``c.GensynServer.keystore_dir``).
    timeout
        Seconds to wait for a coordinator.
    log
        The extension's logger.
    default_network
        The network the kernel would use now, or ``None`` (for the auto-approve loop).
    """

    def __init__(
        self,
        *,
        keystore: Keystore,
        timeout: float,
        log: logging.Logger,
        default_network: Callable[[], str | None],
    ) -> None:
        self.keystore = keystore
        self.log = log
        self.settings = BudgetSettings(keystore.directory / "budget.json")
        self.ledger = BudgetLedger(
            path=keystore.directory / "budget-ledger.json", policy=BudgetPolicy.off()
        )
        self.budget_problem: str | None = None
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)
        self.sessions = Sessions(keystore=keystore, ledger=self.ledger, timeout=timeout, log=log)
        self.auto = AutoApprover(self, default_network)
        self.browser = BrowserWallet(timeout=timeout)
        self.browser_in_use = False
        """True after a browser wallet signed in, until a keystore key is unlocked again."""
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gensyn-wallet")
        self._in_use: str | None = None
        self._policy_loaded = False

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking ``fn(*args, **kwargs)`` in the wallet's threads and await it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def account_in_use(self) -> str | None:
        """The unlocked account that signs: the last one unlocked, else any unlocked one."""
        if self._in_use is not None and self.keystore.is_unlocked(self._in_use):
            return self._in_use
        return next((a for a in self.keystore.addresses() if self.keystore.is_unlocked(a)), None)

    def unlock(self, address: str, passphrase: str, ttl_seconds: float | None) -> str:
        """Unlock ``address`` (scrypt: blocking) and make it the account in use.

        Raises
        ------
        ApiError
            404 for an address that is not in the keystore (listing the known
            ones), 403 ``wrong passphrase for 0x…``, 409 for an unreadable file.
        """
        known = self.keystore.addresses()
        match = next((a for a in known if a.lower() == address.lower()), None)
        if match is None:
            where = f"the keystore {self.keystore.directory}"
            listed = f"known: {', '.join(known)}" if known else "it is empty: create or import one"
            raise ApiError(404, f"{address} is not in {where}; {listed}", "address")
        try:
            self.keystore.unlock(match, passphrase, ttl_seconds=ttl_seconds)
        except KeystoreError as exc:
            if isinstance(exc, WrongPassphrase):
                raise ApiError(403, str(exc), "passphrase") from None
            raise ApiError(409, str(exc), "address") from None
        self._in_use = match
        self.browser_in_use = False
        for link in self.sessions.of(match):  # the kernel submits as this account again
            token = link.http.headers["Authorization"].removeprefix("Bearer ")
            write_session(link.network, token=token, address=match, expires_at=link.expires_at)
        self.auto.retry_now()
        return match

    def browser_logout(self, network: str) -> None:
        """Forget the browser account of ``network``; the kernel's session goes with it.

        The session file becomes the account in use's again where it is signed
        in to ``network``, and is removed otherwise.
        """
        gone = self.browser.logout(network)
        self.browser_in_use = False
        path = session_file(network)
        try:
            stored = json.loads(path.read_text()).get("address", "")
        except (OSError, ValueError, AttributeError):
            return
        if gone is None or str(stored).lower() != gone.address.lower():
            return
        account = self.account_in_use()
        links = self.sessions.of(account) if account is not None else []
        link = next((k for k in links if k.network == network), None)
        if link is not None:
            token = link.http.headers["Authorization"].removeprefix("Bearer ")
            write_session(network, token=token, address=link.address, expires_at=link.expires_at)
        else:
            path.unlink(missing_ok=True)

    def lock(self, address: str | None) -> None:
        """Lock ``address`` (every account when ``None``) and drop its signers."""
        self.keystore.lock(address)
        self.sessions.prune()

    def policy(self) -> BudgetPolicy:
        """The auto-approve policy (read from ``budget.json`` on first use)."""
        if not self._policy_loaded:
            self.ledger.policy, self.budget_problem = self.settings.load()
            self._policy_loaded = True
        return self.ledger.policy

    def set_budget(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Store the policy with ``changes`` (``BudgetPolicy`` fields); answers :meth:`budget`.

        Used from the next auto-approve round on.
        """
        policy = replace(self.policy(), **changes)
        self.settings.save(policy)
        self.ledger.policy, self.budget_problem = policy, None
        return self.budget()

    def budget(self) -> dict[str, Any]:
        """The budget as ``GET /gensyn/api/budget`` answers it."""
        policy = self.policy()
        error = self.budget_problem
        spent: int | None = None
        try:
            spent = self.ledger.spent_today()
        except BudgetError as exc:
            error = str(exc)
        return {
            "enabled": policy.enabled,
            "per_task_eth": eth_text(policy.per_task_wei),
            "per_day_eth": eth_text(policy.per_day_wei),
            "per_task_wei": policy.per_task_wei,
            "per_day_wei": policy.per_day_wei,
            "spent_today_eth": None if spent is None else eth_text(spent),
            "spent_today_wei": spent,
            "file": str(self.settings.path),
            "error": error,
        }

    def state(self, network: str | None, problem: str | None) -> dict[str, Any]:
        """The wallet as ``GET /gensyn/api/wallet`` answers it (signs in if needed).

        Parameters
        ----------
        network
            The request's coordinator, or ``None`` when there is none.
        problem
            Why there is no network (shown as ``error``).
        """
        self.sessions.prune()
        known = self.keystore.addresses()
        account = self.account_in_use()
        out: dict[str, Any] = {
            "keystore": known,
            "unlocked": [a for a in known if self.keystore.is_unlocked(a)],
            "account": account,
            "network": network,
            "balance_wei": None,
            "credits_wei": None,
            "session": False,
            "error": problem,
            "source": "keystore" if account else None,
            "browser": None if network is None else self.browser.view(network),
        }
        browser = out["browser"]
        if self.browser_in_use and browser is not None and browser["signed_in"]:
            out.update(account=browser["address"], session=True, source="browser")
            out.update(balance_wei=browser["balance_wei"], credits_wei=browser["credits_wei"])
            out["error"] = browser["error"] or problem
            return out
        if account is None or network is None:
            return out
        try:
            link = self.sessions.link(network, account)
        except (ApiError, KeystoreError) as exc:
            out["error"] = exc.detail if isinstance(exc, ApiError) else str(exc)
            return out
        if link is None:
            return out  # a free network: no session, no balance
        out["session"] = True
        try:
            out["balance_wei"] = int(link.market.w3.eth.get_balance(link.signer.account.address))
            out["credits_wei"] = int(link.market.call("credits", account))
        except Exception as exc:  # web3 and the node raise many kinds; the panel shows it
            out["error"] = f"cannot read the balance from the chain: {exc}"
        return out

    def close(self) -> None:
        """Stop the loop, close the connections, and forget every decrypted key."""
        self.auto.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.keystore.lock()
        self.sessions.close()
        self.browser.close()
        self.http.close()
