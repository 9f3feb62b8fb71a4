"""The class service of a JupyterHub: one devnet account and budget per Hub user.

An instructor adds it to ``jupyterhub_config.py`` as a managed service
(``python -m gensyn_jupyter.hub --config jupyterhub_config.py``, see
``docs/jupyterhub.md``). Students' kernels use it as their network: it
relays the coordinator's API scoped to the caller's account, signs in and
approves their tasks with their own key within ``c.GensynClass`` budgets,
and shows instructors the class view.

Uses ``chain/`` (keys, sign-in, the signer) and ``protocol/``; reaches the
coordinator only over HTTP.
"""

from ._app import create_app
from ._config import DEFAULT_BUDGET_WEI, GensynClass
from ._keys import StudentKeys
from ._ledger import ClassLedger, LedgerEntry, Spend
from ._service import GensynClassApp, main

__all__ = [
    "DEFAULT_BUDGET_WEI",
    "ClassLedger",
    "GensynClass",
    "GensynClassApp",
    "LedgerEntry",
    "Spend",
    "StudentKeys",
    "create_app",
    "main",
]
