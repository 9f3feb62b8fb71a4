"""Unlocked accounts signed in to networks: one :class:`~gensyn_jupyter.chain.Signer` each.

Signing in stores the session token where the kernel finds it
(:func:`gensyn_jupyter.config.write_session`), so a ``%%gensyn_train`` cell can
submit tasks; the key itself never leaves this process. A link whose account
is no longer unlocked is dropped (:meth:`Sessions.prune`), so a decrypted key
lives no longer in a signer than in the keystore. Blocking: call from the
wallet's threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from pydantic import ValidationError

from ..chain import BudgetLedger, Keystore, Market, Signer
from ..config import session_file
from ._calls import coordinator_errors
from ._errors import ApiError

__all__ = ["AUTO_APPROVE_SECONDS", "Link", "Sessions"]

AUTO_APPROVE_SECONDS = 0.5
"""How often the auto-approve loop looks for waiting tasks (also the signers' poll time)."""

_REFRESH_BEFORE = 600.0  # sign in again this long before a session expires


@dataclass
class Link:
    """An unlocked account signed in to one network: its signer, session and HTTP client."""

    network: str
    address: str
    signer: Signer
    http: httpx.Client
    expires_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def market(self) -> Market:
        """The network's escrow contract."""
        return self.signer.market

    def close(self) -> None:
        """Close the HTTP clients; waits for an approval in progress to finish."""
        with self.lock:
            self.signer.close()
            self.http.close()


class Sessions:
    """The links of the server's wallet, by (network, address).

    Parameters
    ----------
    keystore
        Where the unlocked keys are.
    ledger
        The auto-approve budget the signers decide with.
    timeout
        Seconds to wait for a coordinator.
    log
        The extension's logger.
    """

    def __init__(
        self, *, keystore: Keystore, ledger: BudgetLedger, timeout: float, log: logging.Logger
    ) -> None:
        self.keystore = keystore
        self.ledger = ledger
        self._timeout = timeout
        self._log = log
        self._links: dict[tuple[str, str], Link] = {}
        self._lock = threading.Lock()

    def link(self, network: str, address: str) -> Link | None:
        """``address`` signed in to ``network`` (signing in now if needed); ``None`` if free.

        Raises
        ------
        KeystoreLocked
            If ``address`` is not unlocked.
        ApiError
            When the coordinator cannot be reached or refuses the sign-in.
        """
        account = self.keystore.account(address)
        key = (network, account.address)
        stale: Link | None = None
        with self._lock:
            link = self._links.get(key)
            if link is not None and link.expires_at - _REFRESH_BEFORE > time.time():
                return link
            if link is not None:
                stale = self._links.pop(key)
            link = self._sign_in(network, account)
            if link is not None:
                self._links[key] = link
        if stale is not None:
            stale.close()
        return link

    def of(self, address: str) -> list[Link]:
        """The links of ``address`` (the networks it is signed in to)."""
        with self._lock:
            return [link for (_, a), link in self._links.items() if a == address]

    def on(self, network: str) -> list[Link]:
        """The links signed in to ``network`` now (no sign-in is made)."""
        with self._lock:
            return [link for (n, _), link in self._links.items() if n == network]

    def drop(self, link: Link) -> None:
        """Forget ``link`` (its session was refused): the next call signs in again."""
        with self._lock:
            if self._links.get((link.network, link.address)) is link:
                del self._links[(link.network, link.address)]
        link.close()

    def prune(self) -> None:
        """Drop the links of accounts that are no longer unlocked (locked, or unlock expired)."""
        with self._lock:
            gone = [k for k in self._links if not self.keystore.is_unlocked(k[1])]
            dropped = [self._links.pop(k) for k in gone]
        for link in dropped:
            link.close()

    def close(self) -> None:
        """Close every link at once (the server is shutting down)."""
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.signer.close()
            link.http.close()

    def _sign_in(self, network: str, account: LocalAccount) -> Link | None:
        signer = Signer(
            network=network,
            account=account,
            ledger=self.ledger,
            log=self._log.info,
            poll_seconds=AUTO_APPROVE_SECONDS,
        )
        try:
            with coordinator_errors(network):
                try:
                    signer.connect(timeout=0)
                except ValidationError as exc:
                    raise ApiError(
                        502, f"{network} answered GET /v1/chain with something unexpected: {exc}"
                    ) from exc
                except ValueError:
                    signer.close()
                    return None  # a free network: nothing to sign in to
                signer.sign_in()
            token, expires_at = _stored_session(network)
        except BaseException:
            signer.close()
            raise
        http = httpx.Client(
            base_url=network,
            timeout=self._timeout,
            follow_redirects=False,
            headers={"Authorization": f"Bearer {token}"},
        )
        return Link(network, account.address, signer, http, expires_at)


def _stored_session(network: str) -> tuple[str, float]:
    """The token and expiry the signer just stored for ``network`` (where the kernel reads it)."""
    path = session_file(network)
    try:
        raw: Any = json.loads(path.read_text())
        return str(raw["token"]), float(raw["expires_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(507, f"the session file {path} cannot be read back ({exc})") from exc
