"""Compiled contract artifacts (ABI + bytecode) shipped inside the package.

The JSON files under ``gensyn_jupyter/chain/artifacts/`` are written by
``npm run build:contracts`` (``contracts/build.mjs``, solc-js, offline) and
committed; ``node contracts/build.mjs --check`` tells whether they still match
the Solidity sources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import EncodingError
from eth_utils.abi import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    get_abi_output_types,
)
from eth_utils.address import to_checksum_address

__all__ = ["AbiFunction", "Artifact", "load_artifact", "read_artifact"]


def _checksummed(param: Mapping[str, Any], value: Any) -> Any:
    """``value`` decoded for ABI parameter ``param``, with addresses checksummed."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [_checksummed(inner, item) for item in value]
    if kind == "address":
        return to_checksum_address(value)
    if kind == "tuple":
        return tuple(_checksummed(c, v) for c, v in zip(param["components"], value, strict=True))
    if isinstance(value, bytes):
        return bytes(value)
    return value


@dataclass(frozen=True)
class AbiFunction:
    """One contract function: its selector and how to encode a call and decode the result.

    A light stand-in for web3's contract-function objects (which rebuild and
    validate the ABI on every call, several milliseconds each).
    """

    name: str
    selector: bytes
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    outputs: tuple[Mapping[str, Any], ...] = field(repr=False)

    @classmethod
    def from_abi(cls, entry: Mapping[str, Any]) -> AbiFunction:
        element = cast(Any, entry)
        return cls(
            name=str(entry["name"]),
            selector=bytes(function_abi_to_4byte_selector(element)),
            input_types=tuple(get_abi_input_types(element)),
            output_types=tuple(get_abi_output_types(element)),
            outputs=tuple(entry.get("outputs", ())),
        )

    def encode(self, args: Sequence[Any]) -> str:
        """Calldata (``0x`` hex) of a call with ``args``.

        Raises
        ------
        TypeError
            When the arguments do not fit the function's parameters.
        """
        if len(args) != len(self.input_types):
            raise TypeError(
                f"{self.name}({','.join(self.input_types)}) takes {len(self.input_types)} "
                f"arguments, got {len(args)}"
            )
        try:
            body = abi_encode(list(self.input_types), list(args))
        except (EncodingError, ValueError, TypeError) as exc:
            raise TypeError(f"{self.name}({','.join(self.input_types)}): {exc}") from exc
        return "0x" + (self.selector + body).hex()

    def decode(self, data: bytes) -> Any:
        """The call's result: one value, or a list when the function returns several."""
        values = abi_decode(list(self.output_types), bytes(data))
        decoded = [_checksummed(p, v) for p, v in zip(self.outputs, values, strict=True)]
        return decoded[0] if len(decoded) == 1 else decoded


@dataclass(frozen=True)
class Artifact:
    """One compiled contract.

    Attributes
    ----------
    contract_name
        The Solidity contract's name, e.g. ``"TaskMarket"``.
    abi
        The contract's ABI (functions, events, errors), as solc emits it.
    bytecode
        Creation bytecode, ``0x``-prefixed hex.
    deployed_bytecode
        Runtime bytecode, ``0x``-prefixed hex (what ``eth_getCode`` returns).
    compiler
        The solc version that built it.
    settings
        The compiler settings (optimizer, EVM version) it was built with.
    source_sha256
        sha256 over the contract's source files (see ``contracts/build.mjs``).
    """

    contract_name: str
    abi: list[dict[str, Any]] = field(repr=False)
    bytecode: str = field(repr=False)
    deployed_bytecode: str = field(repr=False)
    compiler: str
    settings: dict[str, Any] = field(repr=False)
    source_sha256: str
    _functions: dict[str, AbiFunction] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for entry in self.abi:
            if entry.get("type") == "function":
                self._functions[str(entry["name"])] = AbiFunction.from_abi(entry)

    def function(self, name: str) -> AbiFunction:
        """The ABI function ``name``.

        Raises
        ------
        KeyError
            When the contract has no such function.
        """
        try:
            return self._functions[name]
        except KeyError:
            raise KeyError(f"{self.contract_name} has no function {name!r}") from None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        """Build an artifact from the JSON object ``contracts/build.mjs`` writes.

        Raises
        ------
        ValueError
            When a field is missing or the bytecode is not hex.
        """
        try:
            artifact = cls(
                contract_name=str(data["contractName"]),
                abi=list(data["abi"]),
                bytecode=str(data["bytecode"]),
                deployed_bytecode=str(data["deployedBytecode"]),
                compiler=str(data["compiler"]),
                settings=dict(data["settings"]),
                source_sha256=str(data["sourceSha256"]),
            )
        except KeyError as exc:
            raise ValueError(f"contract artifact has no field {exc.args[0]!r}") from exc
        for name in ("bytecode", "deployed_bytecode"):
            code: str = getattr(artifact, name)
            try:
                ok = code.startswith("0x") and len(code) > 2 and bytes.fromhex(code[2:]) != b""
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"{artifact.contract_name}: {name} is not 0x-prefixed hex")
        return artifact


def read_artifact(path: Path) -> Artifact:
    """Read an artifact JSON file written by ``contracts/build.mjs``.

    Parameters
    ----------
    path
        The ``<ContractName>.json`` file.
    """
    return Artifact.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def load_artifact(name: str = "TaskMarket") -> Artifact:
    """The packaged artifact of contract ``name``.

    Parameters
    ----------
    name
        Contract name; the file is ``gensyn_jupyter/chain/artifacts/<name>.json``.

    Raises
    ------
    FileNotFoundError
        When no artifact of that name ships with the package (run
        ``npm run build:contracts``).
    """
    if not name.isidentifier():
        raise ValueError(f"not a contract name: {name!r}")
    resource = resources.files(__package__ or "gensyn_jupyter.chain") / "artifacts" / f"{name}.json"
    if not resource.is_file():
        raise FileNotFoundError(
            f"no compiled artifact for contract {name!r} in gensyn_jupyter/chain/artifacts/ "
            "(run `npm run build:contracts`)"
        )
    return Artifact.from_json(json.loads(resource.read_text(encoding="utf-8")))
