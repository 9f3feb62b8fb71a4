"""The wallet and approval routes: ``/gensyn/api/{chain,wallet,approvals,faucet,budget}``.

The backend of the sidebar panel's Wallet and Approvals sections. Keys stay
in the server's keystore; the kernel only gets the session token the wallet
stores when it signs in. Everything blocking runs in the wallet's threads.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from jupyter_server.auth.decorator import authorized
from pydantic import TypeAdapter
from tornado import web

from ..chain import KeystoreError
from ..protocol import ChainInfo, Task, TaskState
from ._approvals import approve, faucet, pending, reject
from ._budget_settings import parse_eth
from ._calls import session_headers
from ._errors import ApiError
from ._handlers import API_PREFIX, Backend, _Handler, _validated
from ._network import Network
from ._wallet import Wallet

__all__ = ["WalletBackend", "wallet_handlers"]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_CHAIN = TypeAdapter(ChainInfo)
_TASKS = TypeAdapter(list[Task])
_NO_ACCOUNT = (
    "no account is unlocked: unlock one in the Gensyn panel (Wallet) or with "
    "POST /gensyn/api/wallet/unlock {address, passphrase}"
)


class WalletBackend(Backend, Protocol):
    """What the wallet handlers need from the extension app."""

    @property
    def wallet(self) -> Wallet: ...


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string", name)
    return value


def _address(body: dict[str, Any], name: str = "address", *, required: bool = True) -> str | None:
    value = _text(body, name, required=required)
    if value is not None and not _ADDRESS.fullmatch(value):
        raise ApiError(422, f"{name} must be an address (0x followed by 40 hex digits)", name)
    return value


class _WalletHandler(_Handler):
    backend: WalletBackend

    @property
    def wallet(self) -> Wallet:
        return self.backend.wallet

    def body_network(self, body: dict[str, Any]) -> Network:
        """The network named by the body's or the query's ``network`` (not both, differently)."""
        requested = _text(body, "network", required=False)
        query = self.get_query_argument("network", None)
        if requested is not None and query is not None and requested != query:
            raise ApiError(400, "network given twice, differently (body and query)", "network")
        return self.network(requested if requested is not None else query)

    def unwritable(self, exc: OSError) -> ApiError:
        """507 for a keystore directory that cannot be written (says which and why)."""
        directory = self.wallet.keystore.directory
        return ApiError(507, f"cannot write the keystore {directory}: {exc.strerror or exc}")

    async def state(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The wallet state on the request's network (none when no network is available)."""
        try:
            network = self.body_network(body or {})
            url, problem = network.url, None
        except ApiError as exc:
            if exc.status_code != 503:
                raise
            url, problem = None, exc.detail
        return await self.wallet.run(self.wallet.state, url, problem)


class ChainHandler(_WalletHandler):
    """``GET /gensyn/api/chain``: the coordinator's ``/v1/chain`` (404 on a free network)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        network = self.network()
        body = await self.backend.proxy.call(network.url, "GET", "/v1/chain")
        self.reply(_validated(_CHAIN, body, network, "chain information"))


class WalletHandler(_WalletHandler):
    """``GET /gensyn/api/wallet``: keys, the unlocked ones, the account in use and its money."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.state())


class CreateHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/create {"passphrase"}`` → 201 ``{"address"}``."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        passphrase = _text(self.json_body({"passphrase"}), "passphrase")
        assert passphrase is not None
        try:
            address = await self.wallet.run(self.wallet.keystore.create, passphrase)
        except KeystoreError as exc:
            raise ApiError(422, str(exc), "passphrase") from None
        except OSError as exc:
            raise self.unwritable(exc) from None
        self.reply({"address": address}, 201)


class ImportHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/import {"private_key", "passphrase"}`` → 201 ``{"address"}``.

    The key is never repeated in an answer or a log.
    """

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"private_key", "passphrase"})
        key, passphrase = _text(body, "private_key"), _text(body, "passphrase")
        assert key is not None and passphrase is not None
        try:
            address = await self.wallet.run(self.wallet.keystore.import_key, key, passphrase)
        except KeystoreError as exc:
            message = str(exc)
            if "already in the keystore" in message:
                raise ApiError(409, message, "private_key") from None
            if message.startswith("not a private key"):
                raise ApiError(400, message, "private_key") from None
            raise ApiError(422, message, "passphrase") from None
        except OSError as exc:
            raise self.unwritable(exc) from None
        self.reply({"address": address}, 201)


class UnlockHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/unlock {"address", "passphrase", "ttl_seconds"?}``.

    Unlocks the key, signs in to the network's coordinator (when it has a
    chain) and stores the session for the kernel; answers the wallet state.
    """

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"address", "passphrase", "ttl_seconds", "network"})
        address = _address(body)
        passphrase = _text(body, "passphrase")
        assert address is not None and passphrase is not None
        if not passphrase:
            raise ApiError(422, "passphrase must not be empty", "passphrase")
        ttl = body.get("ttl_seconds")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise ApiError(422, "ttl_seconds must be a number of seconds", "ttl_seconds")
        if ttl is not None and not 0 < ttl <= 10**9:
            raise ApiError(422, "ttl_seconds must be positive (at most 1e9)", "ttl_seconds")
        await self.wallet.run(self.wallet.unlock, address, passphrase, ttl)
        self.wallet.auto.start()
        self.reply(await self.state(body))


class LockHandler(_WalletHandler):
    """``POST /gensyn/api/wallet/lock {"address"?}``: lock one account, or all."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"address", "network"})
        address = _address(body, required=False)
        await self.wallet.run(self.wallet.lock, address)
        self.reply(await self.state(body))


class ApprovalsHandler(_WalletHandler):
    """``GET /gensyn/api/approvals?account=``: the account's tasks awaiting approval."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        query = {"account": self.get_query_argument("account", None)}
        account = _address(query, "account", required=False)
        network = self.network()
        browser = self.wallet.browser.session(network.url) if self.wallet.browser_in_use else None
        if account is None and browser is not None:
            account = browser.address
        if account is None:
            account = await self.wallet.run(self.wallet.account_in_use)
        if account is None:
            raise ApiError(409, _NO_ACCOUNT, "account")
        params: dict[str, str | int] = {
            "state": TaskState.AWAITING_APPROVAL.value,
            "account": account,
            "limit": 1000,
        }
        # the coordinator lists an account's tasks to that account's session only
        headers = session_headers(network.url)
        for link in self.wallet.sessions.on(network.url):  # a keystore account signed in
            if link.address.lower() == account.lower():
                headers = {"Authorization": link.http.headers["Authorization"]}
        if browser is not None and browser.address.lower() == account.lower():
            headers = browser.headers
        body = await self.backend.proxy.call(network.url, "GET", "/v1/tasks", params, headers)
        tasks = _TASKS.validate_json(_validated(_TASKS, body, network, "a list of tasks"))
        self.reply(await self.wallet.run(pending, self.wallet, tasks, self.root_dir))


class ApproveHandler(_WalletHandler):
    """``POST /gensyn/api/approvals/{task_id}/approve``: fund, sign, post; answers the task."""

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        self.task_path(task_id)
        network = self.body_network(self.json_body({"network"}))
        task = await self.wallet.run(approve, self.wallet, network.url, task_id)
        self.reply(task.model_dump_json())


class RejectHandler(_WalletHandler):
    """``POST /gensyn/api/approvals/{task_id}/reject``: cancel the task; answers it."""

    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        self.task_path(task_id)
        network = self.body_network(self.json_body({"network"}))
        task = await self.wallet.run(reject, self.wallet, network.url, task_id)
        self.reply(task.model_dump_json())


class FaucetHandler(_WalletHandler):
    """``POST /gensyn/api/faucet {"address"?}``: devnet coins (default: the account in use)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body({"address", "network"})
        address = _address(body, required=False)
        network = self.body_network(body)
        if address is None:
            address = await self.wallet.run(self.wallet.account_in_use)
        if address is None:
            raise ApiError(422, f"no address given, and {_NO_ACCOUNT}", "address")
        self.reply(await self.wallet.run(faucet, self.wallet, network.url, address))


class BudgetHandler(_WalletHandler):
    """``GET/PUT /gensyn/api/budget {"enabled", "per_task_eth", "per_day_eth"}``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.wallet.run(self.wallet.budget))

    @web.authenticated
    @authorized
    async def put(self) -> None:
        body = self.json_body({"enabled", "per_task_eth", "per_day_eth"})
        changes: dict[str, Any] = {}
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise ApiError(422, "enabled must be true or false", "enabled")
            changes["enabled"] = body["enabled"]
        for name, target in (("per_task_eth", "per_task_wei"), ("per_day_eth", "per_day_wei")):
            if name in body:
                changes[target] = parse_eth(body[name], name)
        view = await self.wallet.run(self.wallet.set_budget, changes)
        self.wallet.auto.start()
        self.reply(view)


def wallet_handlers(backend: WalletBackend) -> list[tuple[str, type[_Handler], dict[str, Any]]]:
    """The wallet and approval routes, relative to the server's ``base_url``."""
    kwargs: dict[str, Any] = {"backend": backend}
    routes: list[tuple[str, type[_Handler]]] = [
        ("chain", ChainHandler),
        ("wallet", WalletHandler),
        ("wallet/create", CreateHandler),
        ("wallet/import", ImportHandler),
        ("wallet/unlock", UnlockHandler),
        ("wallet/lock", LockHandler),
        ("approvals", ApprovalsHandler),
        ("approvals/([^/]+)/approve", ApproveHandler),
        ("approvals/([^/]+)/reject", RejectHandler),
        ("faucet", FaucetHandler),
        ("budget", BudgetHandler),
    ]
    from ._browser_handlers import browser_handlers  # it builds on this module's handlers

    own = [(f"{API_PREFIX}/{pattern}", handler, kwargs) for pattern, handler in routes]
    return own + browser_handlers(backend)
