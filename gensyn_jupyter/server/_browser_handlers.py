"""The browser wallet's routes: ``wallet/browser/...`` and ``approvals/{id}/{prepare,order}``.

The wallet (EIP-1193, in the page) signs; these routes relay the sign-in to
the coordinator, hand the panel what to sign and send, and post the signed
order once its escrow is on chain (:mod:`._browser_wallet`).
"""

from __future__ import annotations

import re
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ._browser_orders import post_order, prepare, withdrawal
from ._errors import ApiError
from ._handlers import API_PREFIX, _Handler
from ._wallet_handlers import _address, _text, _WalletHandler

__all__ = ["browser_handlers"]

_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_MAX_MESSAGE = 4000  # what the coordinator's login takes


def _signature(body: dict[str, Any]) -> str:
    value = _text(body, "signature")
    assert value is not None
    if not _SIGNATURE.fullmatch(value):
        raise ApiError(
            400, "signature must be 0x followed by 130 hex digits (65 bytes)", "signature"
        )
    return value


def _chain_id(body: dict[str, Any]) -> int:
    value = body.get("chain_id")
    if value is None:
        raise ApiError(422, "chain_id is required (the chain the wallet is on)", "chain_id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**64:
        raise ApiError(422, "chain_id must be a positive integer", "chain_id")
    return value


class ChallengeHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/browser/challenge {"address", "chain_id", "network"?}``.

    Answers ``{"message", "address", "chain_id", "network", "expiration_time"}``:
    the EIP-4361 text the wallet signs with ``personal_sign``.
    """

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"address", "chain_id", "network"})
        address = _address(body)
        chain_id = _chain_id(body)
        assert address is not None
        network = self.body_network(body)
        browser = self.wallet.browser
        self.reply(await self.wallet.run(browser.challenge, network.url, address, chain_id))


class LoginHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/browser/login {"address", "message", "signature", "network"?}``.

    Opens the coordinator session, stores it for the kernel, makes the
    browser account the one in use; answers the wallet state.
    """

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"address", "message", "signature", "network"})
        address = _address(body)
        message = _text(body, "message")
        assert address is not None and message is not None
        if not message or len(message) > _MAX_MESSAGE:
            raise ApiError(422, f"message must be 1 to {_MAX_MESSAGE} characters", "message")
        signature = _signature(body)
        network = self.body_network(body)
        wallet = self.wallet
        await wallet.run(wallet.browser.login, network.url, address, message, signature)
        wallet.browser_in_use = True
        self.reply(await self.state(body))


class LogoutHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/browser/logout {"network"?}``: forget the browser account."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"network"})
        network = self.body_network(body)
        await self.wallet.run(self.wallet.browser_logout, network.url)
        self.reply(await self.state(body))


class WithdrawalHandler(_WalletHandler):
    """``GET /gensyn/api/wallet/browser/withdrawal``: the call that withdraws the refunds."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        network = self.network()
        self.reply(await self.wallet.run(withdrawal, self.wallet.browser, network.url))


class PrepareHandler(_WalletHandler):
    """``GET /gensyn/api/approvals/{task_id}/prepare``: the order to sign, the call to send."""

    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        self.task_path(task_id)
        network = self.network()
        browser = self.wallet.browser
        self.reply(await self.wallet.run(prepare, browser, network.url, task_id))


class OrderHandler(_WalletHandler):
    """``POST /gensyn/api/approvals/{task_id}/order {"signature", "tx_hash"?, "network"?}``.

    Checks the funding transaction and the escrow on chain, then posts the
    signed order with the browser account's session; answers the task.
    """

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        self.task_path(task_id)
        body = self.json_body({"signature", "tx_hash", "network"})
        signature = _signature(body)
        tx_hash = _text(body, "tx_hash", required=False)
        if tx_hash is not None and not _TX_HASH.fullmatch(tx_hash):
            raise ApiError(400, "tx_hash must be 0x followed by 64 hex digits", "tx_hash")
        network = self.body_network(body)
        browser = self.wallet.browser
        task = await self.wallet.run(post_order, browser, network.url, task_id, signature, tx_hash)
        self.reply(task.model_dump_json())


def browser_handlers(backend: Any) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The browser wallet's routes, relative to the server's ``base_url``."""
    kwargs: dict[str, Any] = {"backend": backend}
    routes: list[tuple[str, type[_Handler]]] = [
        ("wallet/browser/challenge", ChallengeHandler),
        ("wallet/browser/login", LoginHandler),
        ("wallet/browser/logout", LogoutHandler),
        ("wallet/browser/withdrawal", WithdrawalHandler),
        ("approvals/([^/]+)/prepare", PrepareHandler),
        ("approvals/([^/]+)/order", OrderHandler),
    ]
    return [(f"{API_PREFIX}/{pattern}", handler, kwargs) for pattern, handler in routes]
