"""The EVM side: contract artifacts, a web3 client of the market, the dev chain, wallet helpers.

Imports only ``protocol/`` of ours. The kernel never imports this package:
no key and no signing happen in the kernel.
"""

from ._devchain import (
    DEV_MNEMONIC,
    Devchain,
    anvil_binary,
    dev_accounts,
    start_anvil,
    start_devchain,
)

__all__ = [
    "DEV_MNEMONIC",
    "Devchain",
    "anvil_binary",
    "dev_accounts",
    "start_anvil",
    "start_devchain",
]
