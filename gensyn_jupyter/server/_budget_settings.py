"""The auto-approve budget of the server's wallet: a JSON file next to the keystore's keys.

``budget.json`` holds the policy (on/off, per-task and per-day caps in wei);
what was auto-approved is counted by :class:`~gensyn_jupyter.chain.BudgetLedger`
in ``budget-ledger.json`` beside it. Neither is ever read by a kernel.
"""

from __future__ import annotations

import json
import os
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..chain import BudgetPolicy
from ._errors import ApiError

__all__ = ["BudgetSettings", "eth_text", "parse_eth"]

_WEI_PER_ETH = 10**18
_MAX_WEI = 2**96 - 1  # what an escrow amount can be at most (uint96)


def parse_eth(value: Any, field: str) -> int:
    """An amount of ETH from a request (a number or a decimal string) in wei.

    Raises
    ------
    ApiError
        422 naming ``field`` for anything but a non-negative amount with at
        most 18 decimals and below 2**96 wei.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(422, f"{field} must be an amount of ETH (a number or a string)", field)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ApiError(422, f"{field} must be an amount of ETH, got {value!r}", field) from None
    if not amount.is_finite() or amount < 0:
        raise ApiError(422, f"{field} must be a non-negative amount of ETH, got {value!r}", field)
    wei = amount.scaleb(18)
    if wei != wei.to_integral_value():
        raise ApiError(422, f"{field} has more than 18 decimals (1 wei = 1e-18 ETH)", field)
    if wei > _MAX_WEI:
        raise ApiError(422, f"{field} is too large (at most {eth_text(_MAX_WEI)} ETH)", field)
    return int(wei)


def eth_text(wei: int) -> str:
    """``wei`` in ETH as an exact decimal string: ``"0.05"``, ``"1"``."""
    text = format(Decimal(wei).scaleb(-18), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class BudgetSettings:
    """The policy file (``budget.json``), written atomically with mode 0600.

    Parameters
    ----------
    path
        The JSON file; missing means auto-approve is off.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> tuple[BudgetPolicy, str | None]:
        """The stored policy, and why it could not be read (then: off)."""
        try:
            raw: Any = json.loads(self.path.read_text())
            policy = BudgetPolicy(
                enabled=raw["enabled"] is True,
                per_task_wei=int(raw["per_task_wei"]),
                per_day_wei=int(raw["per_day_wei"]),
            )
        except FileNotFoundError:
            return BudgetPolicy.off(), None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return BudgetPolicy.off(), (
                f"the budget file {self.path} cannot be read ({exc}); auto-approve is off "
                "until the budget is saved again"
            )
        return policy, None

    def save(self, policy: BudgetPolicy) -> None:
        """Replace the stored policy.

        Raises
        ------
        ApiError
            507 when the file cannot be written (the message says why).
        """
        data = {
            "enabled": policy.enabled,
            "per_task_wei": str(policy.per_task_wei),
            "per_day_wei": str(policy.per_day_wei),
        }
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".budget-", suffix=".json")
            try:
                with os.fdopen(fd, "w") as out:
                    os.fchmod(out.fileno(), 0o600)
                    json.dump(data, out, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise ApiError(507, f"the budget file {self.path} cannot be written ({exc})") from exc
