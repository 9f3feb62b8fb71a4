"""The wallet's loop: while an account is unlocked, sign its orders within the budget
(when the budget is on) and collect its refunds (always).

A tornado ``PeriodicCallback`` on the server's event loop, every
:data:`~._sessions.AUTO_APPROVE_SECONDS`; each round runs in the wallet's
threads and calls :meth:`gensyn_jupyter.chain.Signer.approve_pending` (the
same decisions, ``BudgetLedger.decide``/``record``, as ``gensyn signer``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from tornado.ioloop import PeriodicCallback

from ..chain import KeystoreError, MarketError
from ..protocol import CoordinatorError
from ._errors import ApiError
from ._sessions import AUTO_APPROVE_SECONDS

if TYPE_CHECKING:
    from ._wallet import Wallet

__all__ = ["AutoApprover"]

_SWEEP_SECONDS = 2.0  # how often refunds are collected for the account in use
_RETRY_SECONDS = 5.0  # a network that could not be signed in to is tried again after this


class AutoApprover:
    """Approves the waiting tasks of the wallet's account in use, within the budget.

    Parameters
    ----------
    wallet
        The server's wallet.
    default_network
        The network the kernel would use now, or ``None``; the loop signs in there too.
    """

    def __init__(self, wallet: Wallet, default_network: Callable[[], str | None]) -> None:
        self._wallet = wallet
        self._default_network = default_network
        self._skip: dict[tuple[str, str], float] = {}
        self._sweep_due: dict[tuple[str, str], float] = {}
        self._callback: PeriodicCallback | None = None

    def start(self) -> None:
        """Start the loop (call on the server's event loop; idempotent)."""
        if self._callback is None:
            self._callback = PeriodicCallback(self._tick, AUTO_APPROVE_SECONDS * 1000)
            self._callback.start()

    def stop(self) -> None:
        """Stop the loop."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def retry_now(self) -> None:
        """Forget the networks that failed recently (a key was just unlocked)."""
        self._skip.clear()

    async def _tick(self) -> None:
        try:
            await self._wallet.run(self.round)
        except Exception:  # the loop must outlive any one round
            self._wallet.log.exception("gensyn auto-approve round failed")

    def round(self) -> int:
        """One round (blocking); returns how many tasks were approved."""
        wallet = self._wallet
        wallet.sessions.prune()
        address = wallet.account_in_use()
        if address is None:
            return 0
        networks = {link.network for link in wallet.sessions.of(address)}
        default = self._default_network()
        if default is not None:
            networks.add(default)
        return sum(self._approve_on(network, address) for network in sorted(networks))

    def _approve_on(self, network: str, address: str) -> int:
        key = (network, address)
        if self._skip.get(key, 0.0) > time.monotonic():
            return 0
        sessions, log = self._wallet.sessions, self._wallet.log
        try:
            link = sessions.link(network, address)
        except (ApiError, KeystoreError) as exc:
            log.debug("gensyn auto-approve: no session on %s: %s", network, exc)
            link = None
        if link is None:  # unreachable, refused, or a free network
            self._skip[key] = time.monotonic() + _RETRY_SECONDS
            return 0
        if not link.lock.acquire(blocking=False):
            return 0  # a person is approving by hand right now
        refused = False
        try:
            approved = link.signer.approve_pending() if self._wallet.policy().enabled else 0
            if self._sweep_due.get(key, 0.0) <= time.monotonic():
                # refunds are pull payments: take back cancelled escrows and withdraw
                # credits for the account in use, budget or not
                self._sweep_due[key] = time.monotonic() + _SWEEP_SECONDS
                link.signer.refund_cancelled()
                link.signer.withdraw()
            return approved
        except (httpx.HTTPError, CoordinatorError, MarketError, ValueError) as exc:
            log.warning("gensyn auto-approve on %s: %s", network, exc)
            refused = isinstance(exc, httpx.TransportError) or (
                isinstance(exc, CoordinatorError) and exc.status == 401
            )
            return 0
        finally:
            link.lock.release()
            if refused:
                sessions.drop(link)
