"""A development chain on loopback: anvil from npm, or an embedded eth-tester node.

``start_devchain`` starts whichever is available and returns a
:class:`Devchain` with its JSON-RPC URL, chain id and funded dev accounts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

__all__ = [
    "DEV_MNEMONIC",
    "Devchain",
    "anvil_binary",
    "dev_accounts",
    "launch_node",
    "start_anvil",
    "start_devchain",
]

DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""The well-known development mnemonic (anvil's and hardhat's default): never hold real funds."""

_READY_TIMEOUT = 30.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """The first ``count`` accounts of :data:`DEV_MNEMONIC` (m/44'/60'/0'/0/i)."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    ]


def anvil_binary() -> Path | None:
    """The anvil executable: ``$GENSYN_ANVIL``, the npm package next to the project, or PATH."""
    env = os.environ.get("GENSYN_ANVIL")
    if env:
        path = Path(env)
        return path if path.is_file() else None
    for root in (_PACKAGE_ROOT, Path.cwd()):
        for candidate in sorted(root.glob("node_modules/@foundry-rs/anvil-*/bin/anvil")):
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Devchain:
    """A running development chain."""

    rpc_url: str
    chain_id: int
    kind: str
    """``"anvil"`` or ``"embedded"``."""
    accounts: list[LocalAccount] = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)
    _stop_embedded: object = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Stop the node (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        stop = self._stop_embedded
        if callable(stop):
            stop()
            self._stop_embedded = None

    def __enter__(self) -> Devchain:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _rpc(url: str, method: str, params: list[object] | None = None) -> object:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=2
    )
    body = reply.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


def start_anvil(
    *,
    port: int = 0,
    chain_id: int = 31337,
    accounts: int = 10,
    balance_eth: int = 10_000,
    log_path: Path | None = None,
    binary: Path | None = None,
) -> Devchain:
    """Start anvil on 127.0.0.1 and wait until it answers JSON-RPC.

    Raises
    ------
    FileNotFoundError
        When no anvil binary is installed (``npm install`` puts one under
        ``node_modules/@foundry-rs/``).
    RuntimeError
        When anvil exits or does not answer within 30 s.
    """
    exe = binary or anvil_binary()
    if exe is None:
        raise FileNotFoundError(
            "no anvil binary: run `npm install` in the project (it installs @foundry-rs/anvil) "
            "or set GENSYN_ANVIL to its path"
        )
    port = port or _free_port()
    command = [
        str(exe),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance_eth),
        "--mnemonic",
        DEV_MNEMONIC,
    ]
    return launch_node(
        "anvil", command, port=port, chain_id=chain_id, accounts=accounts, log_path=log_path
    )


def _log_tail(log: IO[bytes], log_path: Path | None, limit: int = 4000) -> str:
    """The end of the node's log, read without moving the offset it shares with the child."""
    log.flush()
    if log_path is not None:
        data = log_path.read_bytes()[-limit:]
    else:
        size = os.fstat(log.fileno()).st_size
        data = os.pread(log.fileno(), limit, max(0, size - limit))
    return data.decode(errors="replace").strip()


def launch_node(
    kind: str,
    command: list[str],
    *,
    port: int,
    chain_id: int,
    accounts: int,
    log_path: Path | None,
) -> Devchain:
    """Run a node's ``command`` listening on ``port`` and wait until it answers JSON-RPC.

    Raises
    ------
    RuntimeError
        When it exits or does not answer ``eth_chainId`` within 30 s; the
        message carries the end of its log.
    """
    url = f"http://127.0.0.1:{port}"
    log: IO[bytes] = (
        open(log_path, "ab") if log_path is not None else tempfile.TemporaryFile()  # noqa: SIM115
    )
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    chain = Devchain(
        rpc_url=url,
        chain_id=chain_id,
        kind=kind,
        accounts=dev_accounts(accounts),
        _process=proc,
        _log=log,
    )
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(log, log_path)
            chain.stop()
            raise RuntimeError(f"the {kind} node exited with code {proc.returncode}: {tail}")
        try:
            _rpc(url, "eth_chainId")
            return chain
        except (httpx.HTTPError, ValueError):
            time.sleep(0.02)
    tail = _log_tail(log, log_path)
    chain.stop()
    raise RuntimeError(
        f"the {kind} node did not answer on {url} within {_READY_TIMEOUT:.0f} s: {tail}"
    )


def start_devchain(*, port: int = 0, log_path: Path | None = None) -> Devchain:
    """Anvil when installed, else the embedded eth-tester node; same accounts either way."""
    if anvil_binary() is not None:
        return start_anvil(port=port, log_path=log_path)
    from ._embedded import start_embedded

    return start_embedded(port=port, log_path=log_path)
