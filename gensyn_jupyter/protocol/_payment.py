"""Money and identity at the API: chain facts, sessions, a task's payment and its transactions."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._orders import Address, TaskOrder

__all__ = [
    "ChainInfo",
    "Handover",
    "LoginRequest",
    "Payment",
    "Session",
    "SiweChallenge",
    "TxKind",
    "TxRef",
    "format_eth",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChainInfo(_Model):
    """``GET /v1/chain``: where the escrow lives and what it costs."""

    rpc_url: str
    chain_id: int
    market: Address
    operator: Address
    min_stake_wei: int
    challenge_window_s: int
    rate_wei_per_gpu_second: int = Field(description="price of one GPU-second on this network")
    faucet: bool = Field(description="true on a devnet: POST /v1/faucet funds an address")


class SiweChallenge(_Model):
    """``POST /v1/auth/nonce``: what to put in the Sign-In with Ethereum message."""

    nonce: str
    domain: str
    uri: str
    chain_id: int
    statement: str


class LoginRequest(_Model):
    """``POST /v1/auth/login``: the EIP-4361 message text and its signature."""

    message: str = Field(max_length=4000)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")


class Session(_Model):
    """A signed-in account: send ``Authorization: Bearer <token>``."""

    token: str
    address: Address
    expires_at: float


TxKind = Literal[
    "fund", "assign", "reassign", "commit", "finalize", "cancel", "expire", "challenge", "resolve"
]


class TxRef(_Model):
    """A transaction that moved the task on chain."""

    kind: TxKind
    hash: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    block: int | None = None


class Handover(_Model):
    """A provider lost mid-run on a paid task, and what it is paid for its checkpointed work."""

    provider_address: Address
    step: int = Field(ge=0, description="the checkpoint step the next provider resumed from")
    amount_wei: int = Field(ge=0, description="what it signed for the work up to that step")


class Payment(_Model):
    """A paid task's escrow, as the coordinator read it from the chain.

    ``order`` is what the owner's wallet signs; the amounts after it are
    filled in from contract events.
    """

    order: TaskOrder
    task_key: str = Field(description="0x-hex keccak256 of the task id: its id on chain")
    rate_wei_per_gpu_second: int
    signed: bool = False
    funded: bool = False
    provider_address: Address | None = None
    provider2_address: Address | None = Field(
        default=None, description="replicate: the second provider's address"
    )
    price_wei: int | None = Field(
        default=None,
        description="the most the current provider may claim (what is left of it after a handover)",
    )
    handovers: list[Handover] = Field(
        default_factory=list, description="providers lost mid-run, paid for their checkpoints"
    )
    amount_due_wei: int | None = None
    challenge_ends_at: int | None = None
    outcome: Literal["finalized", "cancelled", "expired", "slashed"] | None = None
    provider_paid_wei: int = 0
    verifier_paid_wei: int = 0
    refunded_wei: int = 0
    transactions: list[TxRef] = Field(default_factory=list)


def format_eth(wei: int, *, digits: int = 6) -> str:
    """An amount in ETH for people: at most ``digits`` significant digits after the point.

    Parameters
    ----------
    wei
        The amount in wei.
    digits
        Significant digits kept in the fraction; the integer part is never rounded.

    Returns
    -------
    str
        For example ``"0.0012 ETH"``, ``"1 ETH"``, ``"2.5 ETH"``.

    Examples
    --------
    >>> format_eth(1_200_000_000_000_000)
    '0.0012 ETH'
    >>> format_eth(10**18)
    '1 ETH'
    """
    eth = Decimal(wei).scaleb(-18)
    whole = abs(int(eth))
    if whole:
        places = max(0, digits - len(str(whole)))
    else:
        places = digits - 1 - eth.adjusted() if wei else 0
    text = format(eth.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} ETH"
