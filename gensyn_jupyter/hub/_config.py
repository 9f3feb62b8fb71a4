"""What the instructor sets: ``c.GensynClass.*`` in ``jupyterhub_config.py``.

The class service reads the same file as the Hub (``--config``), so one file
holds the whole class: the Hub's users and spawner, and the network, budgets
and data directory of the service.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Bool, Dict, Float, Int, Set, Unicode, validate
from traitlets.config import Configurable

__all__ = ["DEFAULT_BUDGET_WEI", "GensynClass"]

DEFAULT_BUDGET_WEI = 10**17
"""0.1 ETH a student: about 28 GPU-hours at the devnet's rate of 10**12 wei per GPU-second."""


class GensynClass(Configurable):
    """The class: which coordinator, how much each student may spend, where keys live.

    Every trait is set in ``jupyterhub_config.py`` as ``c.GensynClass.<name>``;
    the service reads that file with ``python -m gensyn_jupyter.hub --config
    jupyterhub_config.py``. Budgets are in wei (``10**18`` wei = 1 ETH) and
    count what a student's orders put in escrow until each task settles, then
    what was actually paid (a refund gives budget back).
    """

    coordinator_url = Unicode(
        "",
        help="The class's coordinator, e.g. http://127.0.0.1:8765 (a devnet's URL). "
        "Only the service talks to it; students reach it through the service.",
    ).tag(config=True)

    budget_wei = Int(
        DEFAULT_BUDGET_WEI,
        help="What each student may spend in all (wei): escrow held for unfinished tasks "
        "plus what finished tasks paid.",
    ).tag(config=True)

    budget_overrides = Dict(
        value_trait=Int(),
        key_trait=Unicode(),
        help="Per-student budgets (wei) by JupyterHub user name, instead of budget_wei.",
    ).tag(config=True)

    per_task_wei = Int(
        0,
        help="The most one task's order may put in escrow (wei); 0: no cap besides the budget.",
    ).tag(config=True)

    instructors = Set(
        Unicode(),
        help="Users besides JupyterHub admins who may read the class view (/api/class).",
    ).tag(config=True)

    data_dir = Unicode(
        "",
        help="Where the service keeps the students' keys (mode 0600) and the spend ledger. "
        "Default: gensyn-class/ beside the config file (or in the working directory).",
    ).tag(config=True)

    fund_from_faucet = Bool(
        True,
        help="Fund each new student account from the coordinator's faucet (a devnet's dev "
        "account 7, 10 ETH). Off on a real network: send ETH to the addresses in /api/class.",
    ).tag(config=True)

    sweep_seconds = Float(
        1.0,
        help="How often settled tasks are counted, cancelled escrows refunded, refunds withdrawn.",
    ).tag(config=True)

    timeout_seconds = Float(
        30.0, help="How long to wait for the coordinator before answering 504."
    ).tag(config=True)

    @validate("budget_wei", "per_task_wei")
    def _non_negative(self, proposal: dict[str, object]) -> object:
        value = proposal["value"]
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"a budget is a non-negative number of wei, got {value!r}")
        return value

    @validate("budget_overrides")
    def _overrides_non_negative(self, proposal: dict[str, object]) -> object:
        value = proposal["value"]
        assert isinstance(value, dict)
        for user, wei in value.items():
            if not isinstance(wei, int) or wei < 0:
                raise ValueError(f"budget_overrides[{user!r}] must be a non-negative int (wei)")
        return value

    def budget_for(self, user: str) -> int:
        """The budget of ``user`` in wei: their override, else ``budget_wei``."""
        overrides: dict[str, int] = self.budget_overrides
        return overrides.get(user, self.budget_wei)

    def resolved_data_dir(self, config_file: str | None) -> Path:
        """``data_dir`` as an absolute path (relative ones are taken from the config's folder)."""
        base = Path(config_file).resolve().parent if config_file else Path(os.getcwd())
        raw = self.data_dir or "gensyn-class"
        path = Path(raw).expanduser()
        return path if path.is_absolute() else base / path
