"""Readable errors from the TaskMarket's reverts, decoded in one place.

A node reports a revert differently (anvil: a JSON-RPC error whose ``data`` is
the revert data, which web3 turns into ``ContractCustomError``; the embedded
eth-tester node: the same JSON-RPC shape; a mined transaction: a receipt with
status 0), so everything here works from the raw revert bytes and the ABI,
never from the exception's class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_names, get_abi_input_types
from eth_utils.address import to_checksum_address

__all__ = ["MarketError", "TaskStatus", "decode_revert", "revert_data"]


class TaskStatus(IntEnum):
    """A task's status; mirrors ``TaskMarket.Status`` (same order, same numbers)."""

    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    COMMITTED = 3
    CHALLENGED = 4
    DISPUTED = 5
    FINALIZED = 6
    CANCELLED = 7
    EXPIRED = 8
    SLASHED = 9


_EXPLANATIONS: dict[str, str] = {
    "ZeroAddress": "the operator, referee and treasury must be non-zero addresses",
    "ZeroAmount": "the amount must be more than zero",
    "AmountTooLarge": "amounts are held as uint96: at most 2**96 - 1 wei",
    "NotOperator": "only the market's operator can assign providers",
    "NotReferee": "only the market's referee can resolve challenges and disputes",
    "NotSubmitter": "only the task's submitter can cancel it",
    "TaskExists": "a task with this id exists already",
    "UnknownTask": "there is no task with this id",
    "WrongPayment": "the value sent must be exactly maxPayment + verifierFee",
    "DeadlinePassed": "the task's deadline is not in the future",
    "DeadlineNotReached": "a task can only expire after its deadline",
    "WrongStatus": "the task's status does not allow this call",
    "InvalidProvider": (
        "a provider must be a non-zero address, and the two providers of a replicated task differ"
    ),
    "InvalidVerifier": "the verifier cannot be one of the task's providers",
    "StakeTooLow": "the provider's bonded stake is below the minimum to be assigned",
    "PriceAboveMaximum": "price times the number of providers exceeds the task's maxPayment",
    "NotAssignedProvider": "only the provider the task was assigned to can commit",
    "InvalidCheater": "the cheater named must be one of the task's providers",
    "AlreadyCommitted": "this provider has committed already",
    "AmountAboveMaximum": "the amount due cannot exceed the price set at assignment",
    "ChallengeWindowOpen": "the challenge window is still open; finalize once it has closed",
    "ChallengeWindowClosed": "the challenge window has closed",
    "BondTooLow": "a challenge needs a bond of at least minBond",
    "InsufficientStake": "cannot unstake more than the bonded stake",
    "StillUnbonding": "the stake is still unbonding; withdraw it once the delay is over",
    "NothingToWithdraw": "there is nothing to withdraw",
    "TransferFailed": "the receiver rejected the payment; the credit stays until it accepts",
    "BadProgressSignature": (
        "the progress claim is not signed by the provider being replaced; only its own "
        "signed checkpoint claim can hand the task over"
    ),
    "TooManyHandovers": "this task was handed over the most times allowed; it can only expire",
    "NotReassignable": (
        "only an unreplicated task whose provider has not committed can be handed over"
    ),
}

_PANICS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x22: "bad storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an invalid internal function",
}

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")


class MarketError(Exception):
    """The contract refused a call or transaction.

    Attributes
    ----------
    name
        The Solidity error's name (``"NotAssignedProvider"``), ``"Error"`` for a
        ``require`` message, ``"Panic"``, ``"Reverted"`` when the node gave no
        revert data (e.g. out of gas), or ``"UnknownError"``.
    args_by_name
        The error's arguments by their Solidity names; bytes as ``bytes``,
        addresses checksummed.
    explanation
        What the error means, in words.
    data
        The raw revert data.
    tx_hash
        The transaction's hash when it was mined and failed (receipt status 0).
    """

    def __init__(
        self,
        name: str,
        args_by_name: Mapping[str, Any] | None = None,
        *,
        explanation: str = "",
        data: bytes = b"",
        contract: str = "TaskMarket",
        tx_hash: str | None = None,
    ) -> None:
        self.name = name
        self.args_by_name: dict[str, Any] = dict(args_by_name or {})
        self.explanation = explanation
        self.data = bytes(data)
        self.contract = contract
        self.tx_hash = tx_hash
        super().__init__(self._message())

    def _message(self) -> str:
        shown = ", ".join(f"{k}={_show(k, v)}" for k, v in self.args_by_name.items())
        text = f"{self.contract} refused: {self.name}({shown})"
        if self.explanation:
            text += f": {self.explanation}"
        if self.tx_hash:
            text += f" (transaction {self.tx_hash})"
        return text

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "explanation": self.explanation,
            "data": self.data,
            "contract": self.contract,
            "tx_hash": self.tx_hash,
        }
        return (_rebuild, (self.name, self.args_by_name, kwargs))


def _rebuild(name: str, args_by_name: dict[str, Any], kwargs: dict[str, Any]) -> MarketError:
    return MarketError(name, args_by_name, **kwargs)


def _show(key: str, value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if key == "status" and isinstance(value, int) and value in TaskStatus._value2member_map_:
        return TaskStatus(value).name
    return str(value)


def _normalise(abi_type: str, value: Any) -> Any:
    if abi_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return bytes(value)
    return value


def _error_table(
    abi: Iterable[Mapping[str, Any]],
) -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        element = cast(Any, entry)
        selector = bytes(function_abi_to_4byte_selector(element))
        table[selector] = (
            str(entry["name"]),
            [name or "" for name in get_abi_input_names(element)],
            list(get_abi_input_types(element)),
        )
    return table


def decode_revert(
    data: bytes | str,
    abi: Sequence[Mapping[str, Any]],
    *,
    contract: str = "TaskMarket",
    tx_hash: str | None = None,
) -> MarketError:
    """Turn raw revert data into a :class:`MarketError`.

    Parameters
    ----------
    data
        The revert data, as bytes or ``0x`` hex.
    abi
        The ABI whose ``error`` entries name the custom errors.
    contract
        Name shown in the message.
    tx_hash
        The failed transaction, when there is one.
    """
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    selector, body = raw[:4], raw[4:]

    def error(name: str, args: Mapping[str, Any] | None, explanation: str) -> MarketError:
        return MarketError(
            name, args, explanation=explanation, data=raw, contract=contract, tx_hash=tx_hash
        )

    if not raw:
        return error("Reverted", None, "reverted without a reason (out of gas?)")
    try:
        if selector == _ERROR_STRING:
            (message,) = abi_decode(["string"], body)
            return error("Error", {"message": message}, str(message))
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], body)
            return error("Panic", {"code": hex(code)}, _PANICS.get(int(code), "panic"))
        known = _error_table(abi).get(selector)
        if known is not None:
            name, names, types = known
            values = abi_decode(types, body)
            args = {
                key or f"arg{i}": _normalise(t, v)
                for i, (key, t, v) in enumerate(zip(names, types, values, strict=True))
            }
            return error(name, args, _EXPLANATIONS.get(name, ""))
    except DecodingError:
        pass
    return error(
        "UnknownError", {"data": raw}, "revert data that this contract's ABI does not describe"
    )


def _hex_bytes(value: Any) -> bytes | None:
    if isinstance(value, str) and _HEX.match(value):
        return bytes.fromhex(value[2:])
    if isinstance(value, Mapping):
        return _hex_bytes(value.get("data"))
    return None


def revert_data(exc: BaseException) -> bytes | None:
    """The revert data an exception from web3 carries, or ``None`` if it carries none.

    Looks at the exception's ``data`` attribute, the JSON-RPC error of its
    ``rpc_response`` and its positional arguments, in that order, for ``0x`` hex
    (a bare ``0x`` is an empty revert).
    """
    found = _hex_bytes(getattr(exc, "data", None))
    if found is not None:
        return found
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, Mapping):
        found = _hex_bytes(response.get("error"))
        if found is not None:
            return found
    for arg in exc.args:
        found = _hex_bytes(arg)
        if found is not None:
            return found
    return None
