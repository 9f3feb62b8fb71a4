"""The embedded dev chain: eth-tester's py-evm node behind JSON-RPC on loopback, like anvil.

Where no anvil binary is installed, :func:`start_embedded` starts
``python -m gensyn_jupyter.chain._embedded_rpc`` as a subprocess: the same dev accounts
(``DEV_MNEMONIC``), chain id, automine (one block per transaction) and the JSON-RPC methods
web3.py and our tests use, including anvil's ``evm_*`` dev methods. Reverts answer as anvil's
do, so web3 raises the same ``ContractCustomError`` on both nodes. Importing this module is
cheap: py-evm is imported only by the subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._devchain import Devchain, _free_port, launch_node

__all__ = ["start_embedded"]

_MODULE = "gensyn_jupyter.chain._embedded_rpc"
"""The server's module: not imported by the package, so ``python -m`` runs it cleanly."""


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
    return launch_node(
        "embedded", command, port=port, chain_id=chain_id, accounts=accounts, log_path=log_path
    )


if __name__ == "__main__":
    # ``python -m gensyn_jupyter.chain._embedded`` works too (runpy warns that the package
    # imported this module first); start_embedded runs the server module directly.
    from gensyn_jupyter.chain._embedded_rpc import main

    raise SystemExit(main())
