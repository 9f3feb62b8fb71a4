"""The embedded dev chain: eth-tester's py-evm node behind JSON-RPC on loopback, like anvil.

Where no anvil binary is installed, :func:`start_embedded` starts
``python -m gensyn_jupyter.chain._embedded_rpc`` as a subprocess: the same dev accounts
(``DEV_MNEMONIC``), chain id, automine (one block per transaction) and the JSON-RPC methods
web3.py and our tests use, including anvil's ``evm_*`` dev methods. Reverts answer as anvil's
do, so web3 raises the same ``ContractCustomError`` on both nodes. Importing this module is
cheap: py-evm is imported only by the subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from ._devchain import Devchain, _free_port, _rpc, dev_accounts

__all__ = ["start_embedded"]

_READY_TIMEOUT = 30.0
_MODULE = "gensyn_jupyter.chain._embedded_rpc"
"""The server's module: not imported by the package, so ``python -m`` runs it cleanly."""


def _log_tail(log: IO[bytes], log_path: Path | None, limit: int = 4000) -> str:
    """The end of the node's log, read without moving the offset it shares with the child."""
    log.flush()
    if log_path is not None:
        data = log_path.read_bytes()[-limit:]
    else:
        size = os.fstat(log.fileno()).st_size
        data = os.pread(log.fileno(), limit, max(0, size - limit))
    return data.decode(errors="replace").strip()


def start_embedded(
    *,
    port: int = 0,
    chain_id: int = 31337,
    accounts: int = 10,
    balance_eth: int = 10_000,
    log_path: Path | None = None,
) -> Devchain:
    """Start the embedded JSON-RPC node on 127.0.0.1 and wait until it answers.

    Parameters
    ----------
    port
        TCP port; 0 picks a free one.
    chain_id
        The chain id it reports and requires of signed transactions.
    accounts
        How many accounts of ``DEV_MNEMONIC`` to fund (the first is
        ``0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266``, as on anvil).
    balance_eth
        Each dev account's balance at genesis, in ether.
    log_path
        File the node's output is appended to; a temporary file when omitted.

    Returns
    -------
    Devchain
        ``kind="embedded"``; ``stop()`` (or leaving the ``with`` block) terminates the node.

    Raises
    ------
    RuntimeError
        When the node exits or does not answer ``eth_chainId`` within 30 s; the message
        carries the end of its log.
    """
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    log: IO[bytes] = (
        open(log_path, "ab") if log_path is not None else tempfile.TemporaryFile()  # noqa: SIM115
    )
    command = [
        sys.executable,
        "-m",
        _MODULE,
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
    ]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    chain = Devchain(
        rpc_url=url,
        chain_id=chain_id,
        kind="embedded",
        accounts=dev_accounts(accounts),
        _process=proc,
        _log=log,
    )
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(log, log_path)
            chain.stop()
            raise RuntimeError(f"the embedded chain exited with code {proc.returncode}: {tail}")
        try:
            _rpc(url, "eth_chainId")
            return chain
        except (httpx.HTTPError, ValueError):
            time.sleep(0.05)
    tail = _log_tail(log, log_path)
    chain.stop()
    raise RuntimeError(f"the embedded chain did not answer on {url} within 30 s: {tail}")


if __name__ == "__main__":
    # ``python -m gensyn_jupyter.chain._embedded`` works too (runpy warns that the package
    # imported this module first); start_embedded runs the server module directly.
    from gensyn_jupyter.chain._embedded_rpc import main

    raise SystemExit(main())
