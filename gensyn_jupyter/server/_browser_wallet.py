"""A browser wallet (EIP-1193, e.g. MetaMask) signing for the panel; its key never comes here.

The server relays the sign-in: it asks the coordinator for the nonce and
builds the EIP-4361 message exactly as :func:`gensyn_jupyter.chain.sign_in`
does, the wallet signs it in the browser, and the server opens the
coordinator session with that signature and stores the token where the
kernel finds it (:func:`gensyn_jupyter.config.write_session`) and in memory,
one browser account per network. Approving with it is in
:mod:`._browser_orders`. Blocking (httpx, web3): call through
:meth:`~._wallet.Wallet.run`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from pydantic import ValidationError
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception

from ..chain import Market, SiweError, SiweMessage
from ..config import write_session
from ..protocol import ChainInfo, Session, SiweChallenge
from ._calls import request_json
from ._errors import ApiError

__all__ = ["SIGN_IN_AGAIN", "BrowserSession", "BrowserWallet", "wrong_chain"]

SIGN_IN_AGAIN = "connect and sign in with your browser wallet again (Gensyn panel, Wallet)"
_CHAIN_ERRORS = (Web3Exception, OSError, ValueError)


def wrong_chain(actual: int, expected: int) -> str:
    """What the panel says when the wallet is on another chain than the network."""
    return (
        f"your wallet is on chain {actual}, this network is chain {expected}: "
        f"switch your wallet to chain {expected}"
    )


@dataclass(frozen=True)
class BrowserSession:
    """A browser account signed in to one network (the token stays in this process and the file)."""

    network: str
    address: str
    token: str
    expires_at: float

    @property
    def valid(self) -> bool:
        return self.expires_at > time.time()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class BrowserWallet:
    """The browser accounts signed in through the panel: one per network, in memory.

    Parameters
    ----------
    timeout
        Seconds to wait for a coordinator.
    """

    def __init__(self, *, timeout: float) -> None:
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)
        self._sessions: dict[str, BrowserSession] = {}
        self._chains: dict[str, tuple[ChainInfo, Market]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sessions

    def stored(self, network: str) -> BrowserSession | None:
        """The browser session of ``network``, expired or not."""
        with self._lock:
            return self._sessions.get(network)

    def session(self, network: str) -> BrowserSession | None:
        """The browser session of ``network`` while it is valid."""
        session = self.stored(network)
        return session if session is not None and session.valid else None

    def require(self, network: str) -> BrowserSession:
        """The valid browser session of ``network``, or 401 saying to sign in again."""
        session = self.session(network)
        if session is None:
            raise ApiError(
                401, f"your browser wallet is not signed in to {network}: {SIGN_IN_AGAIN}"
            )
        return session

    def logout(self, network: str) -> BrowserSession | None:
        """Forget the browser session of ``network``; the one forgotten, if any."""
        with self._lock:
            return self._sessions.pop(network, None)

    def chain(self, network: str) -> tuple[ChainInfo, Market]:
        """The network's chain and escrow contract (409 on a network without a chain)."""
        with self._lock:
            known = self._chains.get(network)
        if known is not None:
            return known
        try:
            body = request_json(self.http, network, "GET", "/v1/chain")
        except ApiError as exc:
            if exc.status_code == 404:
                raise ApiError(
                    409, f"{network} runs without a chain: there is nothing to sign in to or pay"
                ) from None
            raise
        try:
            info = ChainInfo.model_validate(body)
        except ValidationError as exc:
            raise ApiError(502, f"{network} answered GET /v1/chain with something else") from exc
        w3 = Web3(HTTPProvider(info.rpc_url, request_kwargs={"timeout": 10}))
        known = (info, Market(w3=w3, address=info.market))
        with self._lock:
            self._chains[network] = known
        return known

    def challenge(self, network: str, address: str, chain_id: int) -> dict[str, Any]:
        """The EIP-4361 message ``address`` signs to sign in (the coordinator's nonce)."""
        with self._lock:  # read the chain again at each sign-in: a devnet may have restarted
            self._chains.pop(network, None)
        info, _ = self.chain(network)
        if chain_id != info.chain_id:
            raise ApiError(409, wrong_chain(chain_id, info.chain_id), "chain_id")
        body = request_json(self.http, network, "POST", "/v1/auth/nonce")
        try:
            challenge = SiweChallenge.model_validate(body)
        except ValidationError as exc:
            raise ApiError(
                502, f"{network} answered POST /v1/auth/nonce with something else"
            ) from exc
        message = SiweMessage.create(
            domain=challenge.domain,
            address=address,
            uri=challenge.uri,
            chain_id=challenge.chain_id,
            statement=challenge.statement,
            nonce=challenge.nonce,
            expires_in=timedelta(minutes=5),
        )
        return {
            "message": message.to_text(),
            "address": message.address,
            "chain_id": message.chain_id,
            "network": network,
            "expiration_time": message.expiration_time,
        }

    def login(self, network: str, address: str, message: str, signature: str) -> BrowserSession:
        """Open the coordinator session with the signed message; store it for the kernel."""
        try:
            parsed = SiweMessage.parse(message)
        except SiweError as exc:
            raise ApiError(400, f"not a sign-in message: {exc}", "message") from None
        if parsed.address.lower() != address.lower():
            raise ApiError(400, f"the message signs in {parsed.address}, not {address}", "message")
        body = request_json(
            self.http,
            network,
            "POST",
            "/v1/auth/login",
            json={"message": message, "signature": signature},
        )
        try:
            opened = Session.model_validate(body)
        except ValidationError as exc:
            raise ApiError(
                502, f"{network} answered POST /v1/auth/login with something else"
            ) from exc
        session = BrowserSession(network, opened.address, opened.token, opened.expires_at)
        try:
            write_session(
                network, token=session.token, address=session.address, expires_at=session.expires_at
            )
        except OSError as exc:
            raise ApiError(507, f"cannot store the session for the kernel: {exc}") from exc
        with self._lock:
            self._sessions[network] = session
        return session

    def view(self, network: str) -> dict[str, Any] | None:
        """The browser account of ``network`` as ``GET /gensyn/api/wallet`` shows it."""
        session = self.stored(network)
        if session is None:
            return None
        out: dict[str, Any] = {
            "address": session.address,
            "network": network,
            "signed_in": session.valid,
            "expires_at": session.expires_at,
            "chain_id": None,
            "balance_wei": None,
            "credits_wei": None,
            "error": None,
        }
        try:
            info, market = self.chain(network)
            out["chain_id"] = info.chain_id
            address = Web3.to_checksum_address(session.address)
            out["balance_wei"] = int(market.w3.eth.get_balance(address))
            out["credits_wei"] = int(market.call("credits", session.address))
        except ApiError as exc:
            out["error"] = exc.detail
        except _CHAIN_ERRORS as exc:
            out["error"] = f"cannot read the balance from the chain: {exc}"
        return out

    def close(self) -> None:
        """Forget every session and close the HTTP client."""
        with self._lock:
            self._sessions.clear()
            self._chains.clear()
        self.http.close()
