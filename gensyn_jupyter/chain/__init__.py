"""The EVM side: contract artifacts, a web3 client of the market, the dev chain, wallet helpers.

Imports only ``protocol/`` (and ``config``) of ours. The kernel never imports
this package: no key and no signing happen in the kernel.
"""

import sys as _sys

# py_ecc (imported by web3 and eth-account) raises the interpreter's recursion
# limit to 100000 at import; a deep recursion then overflows the C stack and
# crashes the process instead of raising RecursionError (a deeply nested JSON
# body could take a coordinator down). Processes of ours keep their limit.
_RECURSION_LIMIT = _sys.getrecursionlimit()

from ._budget import BudgetDecision, BudgetError, BudgetLedger, BudgetPolicy, format_eth
from ._devchain import (
    DEV_MNEMONIC,
    Devchain,
    anvil_binary,
    dev_accounts,
    start_anvil,
    start_devchain,
)
from ._embedded import start_embedded
from ._keystore import (
    DEFAULT_SCRYPT_N,
    Keystore,
    KeystoreError,
    KeystoreLocked,
    WrongPassphrase,
    default_keystore_dir,
)
from ._market import Market, MarketConfig, MarketError, MarketEvent, OnchainTask, TaskStatus
from ._progress import progress_hash, recover_progress_signer, sign_progress
from ._receipt import check_receipt_onchain
from ._session import chain_info, sign_in
from ._signer import Signer, approve_task
from ._signer_env import SignerConfigError, account_from_env
from ._signing import OrderRejected, check_order, recover_order_signer, sign_order
from ._siwe import SiweError, SiweMessage, new_nonce, sign_siwe, verify_siwe

_sys.setrecursionlimit(_RECURSION_LIMIT)

__all__ = [
    "DEFAULT_SCRYPT_N",
    "DEV_MNEMONIC",
    "BudgetDecision",
    "BudgetError",
    "BudgetLedger",
    "BudgetPolicy",
    "Devchain",
    "Keystore",
    "KeystoreError",
    "KeystoreLocked",
    "Market",
    "MarketConfig",
    "MarketError",
    "MarketEvent",
    "OnchainTask",
    "OrderRejected",
    "Signer",
    "SignerConfigError",
    "SiweError",
    "SiweMessage",
    "TaskStatus",
    "WrongPassphrase",
    "account_from_env",
    "anvil_binary",
    "approve_task",
    "chain_info",
    "check_order",
    "check_receipt_onchain",
    "default_keystore_dir",
    "dev_accounts",
    "format_eth",
    "new_nonce",
    "progress_hash",
    "recover_order_signer",
    "recover_progress_signer",
    "sign_in",
    "sign_order",
    "sign_progress",
    "sign_siwe",
    "start_anvil",
    "start_devchain",
    "start_embedded",
    "verify_siwe",
]
