"""The results codec: what a provider sends back, as JSON plus one safetensors blob.

The kernel never unpickles provider data: :func:`decode_results` uses
``json.loads`` and ``safetensors.torch.load`` only, and the tree decoder's
allow-list.
"""

from __future__ import annotations

import json
import keyword
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..protocol import OutputInfo, OutputKind
from ._decode import _Decoder, tree_equal
from ._load import was_loaded
from ._tree import NotATreeError, _Encoder, is_tree
from ._util import canonical_json, type_name

__all__ = ["RESULTS_VERSION", "EncodedResults", "decode_results", "encode_results"]

RESULTS_VERSION = 1
_STATE_KINDS = frozenset({"module_state", "optimizer_state", "scheduler_state"})
_VALUE_KINDS = _STATE_KINDS | {"tree"}
_BACK = "only modules, optimizers, schedulers, tensors and plain data come back"
_WHY = "(the kernel never unpickles provider data)"


@dataclass
class EncodedResults:
    """What a provider uploads after a run.

    Attributes
    ----------
    values_json : bytes
        Canonical JSON ``{"version": 1, "outputs": {name: {"kind", "structure"}}}``.
    tensors : bytes or None
        One safetensors blob with every output's tensors (keys start with the
        output's name), ``None`` when there are none.
    outputs : list of OutputInfo
        One entry per name sent back or refused (refused ones carry a note).
    """

    values_json: bytes
    tensors: bytes | None
    outputs: list[OutputInfo]


def _stateful_kind(value: Any) -> OutputKind | None:
    import torch

    if isinstance(value, torch.nn.Module):
        return "module_state"
    if isinstance(value, torch.optim.Optimizer):
        return "optimizer_state"
    schedulers: tuple[type, ...] = (torch.optim.lr_scheduler.LRScheduler,)
    plateau = getattr(torch.optim.lr_scheduler, "ReduceLROnPlateau", None)
    if isinstance(plateau, type):
        schedulers += (plateau,)
    if isinstance(value, schedulers):
        return "scheduler_state"
    return None


def _sendable_name(name: Any) -> bool:
    """A variable the kernel may assign: an identifier, not a keyword, not ``__dunder__``."""
    return (
        isinstance(name, str)
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and not (name.startswith("__") and name.endswith("__"))
    )


def _is_code(value: Any) -> bool:
    return isinstance(
        value,
        types.FunctionType | types.BuiltinFunctionType | types.MethodType | type,
    )


def encode_results(
    final: Mapping[str, Any],
    names: Iterable[str],
    *,
    initial: Mapping[str, Any] | None = None,
) -> EncodedResults:
    """Encode what a cell left in its namespace for the kernel (provider side).

    Parameters
    ----------
    final : Mapping of str to Any
        The namespace after the cell ran.
    names : Iterable of str
        Names to send back (the bundle's ``outputs`` and ``returns``); names
        absent from ``final`` (``del x``), ``__dunder__`` names and repeats are
        skipped.
    initial : Mapping of str to Any, optional
        The inputs as loaded before the run. For plain data and tensors this
        must be a *snapshot* (e.g. a second :func:`load_inputs` of the tree
        inputs): a tree value equal to its snapshot is not sent, while a tree
        value that *is* its ``initial`` entry (the same object, maybe changed
        in place) is sent. Any other value that is its ``initial`` entry, or
        that :func:`load_inputs` unpickled in this process, is the kernel's own
        object (a function, a dataset, a loader) and is skipped silently.

    Returns
    -------
    EncodedResults
        ``nn.Module`` -> ``module_state`` (its ``state_dict()``), optimizer ->
        ``optimizer_state``, LR scheduler -> ``scheduler_state`` (these are
        always sent, changed or not), plain data and tensors -> ``tree``.
        Modules (``import``) and the kernel's own objects are skipped; anything
        else (a dataset, function or class made by the cell) is ``refused``
        with a note.

    Raises
    ------
    RuntimeError
        When safetensors cannot write the tensors (should not happen: shared
        storage is cloned, dtypes are checked).
    """
    encoder = _Encoder()
    entries: dict[str, dict[str, Any]] = {}
    outputs: list[OutputInfo] = []
    before = initial if initial is not None else {}
    for name in dict.fromkeys(names):
        if name not in final or not _sendable_name(name):
            continue
        value = final[name]
        tname = type_name(value)
        kind = _stateful_kind(value)
        if kind is not None:
            try:
                state = value.state_dict()
                structure = encoder.encode(state, root=f"{name}.state_dict()", prefix=name)
            except Exception as exc:  # NotATreeError, or a state_dict() that fails
                note = (
                    f"`{name}` ({tname}) has a state_dict that is not plain data: {exc}; "
                    f"{_BACK} {_WHY}. Rebuild it in the kernel instead."
                )
                outputs.append(OutputInfo(name=name, kind="refused", type_name=tname, note=note))
                continue
        elif isinstance(value, types.ModuleType):
            continue
        elif name in before and before[name] is value and not is_tree(value):
            continue  # the kernel's own object (a function, a dataset): it already has it
        elif was_loaded(value) and not is_tree(value):
            # Same, recognised without ``initial``. A tensor that travelled in the pickle
            # (an optimizer holds it) is data the cell may have trained: it comes back.
            continue
        elif _is_code(value):
            note = (
                f"`{name}` is a {tname} defined on the provider; functions and classes do not "
                f"come back {_WHY}. Define it in a cell that runs in the kernel."
            )
            outputs.append(OutputInfo(name=name, kind="refused", type_name=tname, note=note))
            continue
        else:
            try:
                _Encoder(dry=True).encode(value, root=name)
            except NotATreeError as exc:
                outputs.append(
                    OutputInfo(
                        name=name, kind="refused", type_name=tname, note=_refusal(name, value, exc)
                    )
                )
                continue
            if name in before and before[name] is not value and tree_equal(before[name], value):
                continue
            kind = "tree"
            structure = encoder.encode(value, root=name, prefix=name)
        entries[name] = {"kind": kind, "structure": structure}
        outputs.append(OutputInfo(name=name, kind=kind, type_name=tname))
    tensors: bytes | None = None
    if encoder.tensors:
        from safetensors.torch import save

        tensors = save(encoder.tensors)
    values_json = canonical_json({"version": RESULTS_VERSION, "outputs": entries})
    return EncodedResults(values_json=values_json, tensors=tensors, outputs=outputs)


def _refusal(name: str, value: Any, error: NotATreeError) -> str:
    tname = type_name(value)
    if error.path == name:
        return (
            f"`{name}` is a {tname} created on the provider; {_BACK} {_WHY}. "
            "Return its tensors or state_dict instead."
        )
    return (
        f"`{name}` ({tname}) cannot come back: {error}; {_BACK} {_WHY}. "
        "Return its tensors or state_dict instead."
    )


def decode_results(values_json: bytes, tensors: bytes | None) -> dict[str, Any]:
    """Decode what :func:`encode_results` produced (kernel side; no pickle).

    Parameters
    ----------
    values_json : bytes
        The JSON blob.
    tensors : bytes or None
        The safetensors blob, if any.

    Returns
    -------
    dict of str to Any
        Output name -> value: a state dict (``dict``) for modules, optimizers
        and schedulers, the value itself for trees (tensors on the CPU).
        Refused outputs are absent.

    Raises
    ------
    ValueError
        On anything malformed: bad JSON, an unknown version, kind or tag, a
        tensor key that is missing, a broken safetensors blob, an output name
        that is not a plain identifier (``__builtins__``, ``a.b``).
    """
    try:
        document = json.loads(values_json)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"results are not valid JSON: {exc}") from exc
    if type(document) is not dict or set(document) != {"version", "outputs"}:
        raise ValueError("results must be an object with exactly 'version' and 'outputs'")
    version = document["version"]
    if type(version) is not int or version != RESULTS_VERSION:
        raise ValueError(f"unsupported results version {version!r} (expected {RESULTS_VERSION})")
    entries = document["outputs"]
    if type(entries) is not dict:
        raise ValueError("results 'outputs' must be an object")
    tensor_map: dict[str, Any] = {}
    if tensors is not None:
        from safetensors.torch import load

        try:
            tensor_map = load(tensors)
        except Exception as exc:  # SafetensorError and friends: malformed input
            raise ValueError(f"results tensors are not valid safetensors: {exc}") from exc
    decoder = _Decoder(tensor_map)
    out: dict[str, Any] = {}
    for name, entry in entries.items():
        if not _sendable_name(name):
            raise ValueError(f"output name {name!r} is not a plain variable name")
        if type(entry) is not dict or set(entry) != {"kind", "structure"}:
            raise ValueError(f"output {name!r} must have exactly 'kind' and 'structure'")
        kind = entry["kind"]
        if kind == "refused":
            continue
        if kind not in _VALUE_KINDS:
            raise ValueError(f"output {name!r} has an unknown kind {kind!r}")
        try:
            value = decoder.decode(entry["structure"])
        except ValueError as exc:
            raise ValueError(f"output {name!r}: {exc}") from exc
        if kind in _STATE_KINDS and type(value) is not dict:
            raise ValueError(f"output {name!r} of kind {kind} must be a dict")
        out[name] = value
    return out
