"""The students as the coordinator knows them: an account, a session, a signer each.

For every JupyterHub user the service holds a :class:`gensyn_jupyter.chain.Signer`
of the user's own account (the same code as ``gensyn signer``), signed in to
the coordinator with Sign-In with Ethereum, plus a session token of that
account that the service uses to submit and cancel the user's tasks. All of
it is blocking: call it in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from ..chain import BudgetLedger, BudgetPolicy, Signer, sign_in
from ..protocol import raise_for_error
from ._keys import StudentKeys

__all__ = ["Roster", "Student"]

_log = logging.getLogger("gensyn_jupyter.hub")

_RENEW_BEFORE = 600.0
_GAS_MARGIN_WEI = 10**16
_MAX_FAUCET_CALLS = 10


@dataclass
class Student:
    """One JupyterHub user's account on the class's network.

    ``lock`` serialises the account's transactions (one nonce at a time) and
    its budget decisions; ``token`` is the account's coordinator session,
    kept only in memory.
    """

    user: str
    account: LocalAccount
    signer: Signer
    token: str = ""
    expires_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        """The account's checksum address."""
        return str(self.account.address)


class Roster:
    """Students by user name, made and signed in on first use.

    Parameters
    ----------
    coordinator_url
        The coordinator the service talks to.
    keys
        Where the students' keys are kept.
    budget_for
        The budget (wei) of a user: a new account is funded to cover it.
    fund_from_faucet
        Whether to ask the coordinator's faucet (a devnet's) for coins.
    timeout
        Seconds to wait for the coordinator.
    """

    def __init__(
        self,
        *,
        coordinator_url: str,
        keys: StudentKeys,
        budget_for: Callable[[str], int],
        fund_from_faucet: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.coordinator_url = coordinator_url.rstrip("/")
        self.keys = keys
        self._budget_for = budget_for
        self._fund = fund_from_faucet
        self._timeout = timeout
        self._students: dict[str, Student] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.coordinator_url, timeout=timeout)

    def __repr__(self) -> str:
        return f"Roster(coordinator_url={self.coordinator_url!r}, users={sorted(self._students)})"

    def get(self, user: str, *, renew: bool = False) -> Student:
        """The signed-in student ``user``: key made, account funded, sessions open.

        ``renew`` signs in again even when the sessions look valid (the
        coordinator answered 401: it forgot them).

        Raises
        ------
        httpx.HTTPError, protocol.CoordinatorError, ValueError
            When the coordinator cannot be reached, refuses the sign-in, or
            runs without a chain.
        """
        with self._lock:
            user_lock = self._locks.setdefault(user, threading.Lock())
        with user_lock:
            student = self._students.get(user)
            fresh = student is not None and time.time() < student.expires_at - _RENEW_BEFORE
            if student is not None and fresh and not renew:
                return student
            if student is None:
                student = self._new(user)
            self._sign_in(student)
            with self._lock:
                self._students[user] = student
            return student

    def close(self) -> None:
        """Close every HTTP client of the roster."""
        with self._lock:
            for student in self._students.values():
                student.signer.close()
            self._http.close()

    def _new(self, user: str) -> Student:
        account = self.keys.account(user)
        # The service keeps the budget itself (ClassLedger); the signer's own stays off.
        ledger = BudgetLedger(path=Path("/dev/null"), policy=BudgetPolicy.off())
        signer = Signer(
            network=self.coordinator_url,
            account=account,
            ledger=ledger,
            log=lambda line: _log.info("%s: %s", user, line),
        )
        try:
            signer.connect(timeout=self._timeout)
            self._top_up(user, signer)
        except BaseException:
            signer.close()
            raise
        return Student(user=user, account=account, signer=signer)

    def _top_up(self, user: str, signer: Signer) -> None:
        if not self._fund:
            return
        address = signer.account.address
        need = self._budget_for(user) + _GAS_MARGIN_WEI
        for _ in range(_MAX_FAUCET_CALLS):
            if int(signer.market.w3.eth.get_balance(address)) >= need:
                return
            response = self._http.post("/v1/faucet", json={"address": address})
            if response.status_code == 404:
                _log.warning(
                    "%s: no faucet at %s; fund %s by hand", user, self._http.base_url, address
                )
                return
            raise_for_error(response)
            _log.info("%s: funded %s from the faucet", user, address)

    def _sign_in(self, student: Student) -> None:
        student.signer.sign_in(store=False)
        session = sign_in(self._http, student.account)
        student.token = session.token
        student.expires_at = session.expires_at
