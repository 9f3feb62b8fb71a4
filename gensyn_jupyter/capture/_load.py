"""Provider side of a bundle: rebuild the captured values from its blobs."""

from __future__ import annotations

import functools
import importlib
import pickle
import sys
import weakref
from collections.abc import Callable
from typing import Any

from ..protocol import Bundle, sha256_hex
from ._decode import _Decoder

__all__ = ["load_inputs", "was_loaded"]

_LOADED: dict[int, weakref.ref[Any]] = {}
"""Objects :func:`load_inputs` unpickled in this process (id -> weak reference)."""


def _remember_loaded(value: Any) -> None:
    key = id(value)

    def forget(_: weakref.ref[Any]) -> None:
        _LOADED.pop(key, None)

    try:
        _LOADED[key] = weakref.ref(value, forget)
    except TypeError:  # not weak-referenceable: encode_results falls back to ``initial``
        return


def was_loaded(value: Any) -> bool:
    """True when ``value`` is an object :func:`load_inputs` unpickled (it came from the kernel)."""
    ref = _LOADED.get(id(value))
    return ref is not None and ref() is value


def load_inputs(bundle: Bundle, read_blob: Callable[[str], bytes]) -> dict[str, Any]:
    """Rebuild the captured values of ``bundle`` (provider side).

    Parameters
    ----------
    bundle : Bundle
        The bundle as built by :func:`build_bundle`.
    read_blob : callable
        sha256 hex -> blob bytes. Each blob is read once and checked against
        its name.

    Returns
    -------
    dict of str to Any
        Name -> value, in the bundle's input order: modules imported, trees
        decoded (tensors on the CPU; inputs that shared a tensor share it
        again), objects unpickled together (shared references kept).

    Raises
    ------
    ValueError
        When a blob does not match its sha256 or a reference is malformed.
    ImportError
        When a module input cannot be imported here.
    """
    raw: dict[str, bytes] = {}
    decoders: dict[str | None, _Decoder] = {}
    groups: dict[str, dict[str, Any]] = {}

    def blob(sha: str) -> bytes:
        if sha not in raw:
            data = read_blob(sha)
            if sha256_hex(data) != sha:
                raise ValueError(f"blob {sha} does not match its sha256")
            raw[sha] = data
        return raw[sha]

    out: dict[str, Any] = {}
    for ref in bundle.inputs:
        if ref.kind == "module":
            if not ref.module:
                raise ValueError(f"input `{ref.name}` is a module without a name")
            out[ref.name] = importlib.import_module(ref.module)
        elif ref.kind == "tree":
            if ref.blob not in decoders:
                tensors: dict[str, Any] = {}
                if ref.blob is not None:
                    from safetensors.torch import load

                    try:
                        tensors = load(blob(ref.blob))
                    except Exception as exc:  # SafetensorError and friends: malformed bytes
                        raise ValueError(
                            f"input `{ref.name}`: blob {ref.blob} is not valid safetensors: {exc}"
                        ) from exc
                decoders[ref.blob] = _Decoder(tensors)
            out[ref.name] = decoders[ref.blob].decode(ref.structure)
        else:
            if ref.blob is None:
                raise ValueError(f"input `{ref.name}` is an object without a blob")
            if ref.blob not in groups:
                group = pickle.loads(blob(ref.blob))
                if not isinstance(group, dict):
                    raise ValueError(f"blob {ref.blob} does not hold a dict of objects")
                groups[ref.blob] = group
            if ref.name not in groups[ref.blob]:
                raise ValueError(f"input `{ref.name}` is missing from blob {ref.blob}")
            out[ref.name] = groups[ref.blob][ref.name]
            _remember_loaded(out[ref.name])
    for group in groups.values():
        for value in group.values():
            _track_scheduled_steps(value)
    return out


def _track_scheduled_steps(value: Any) -> None:
    """Wrap the optimizer step of an unpickled LR scheduler again, as its constructor did.

    The scheduler's wrapper (which marks that ``optimizer.step()`` ran) holds
    a weak reference and does not survive pickling; without it every
    ``scheduler.step()`` on the provider warns that ``optimizer.step()`` "has
    been overridden after learning rate scheduler initialization".
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.optim.lr_scheduler.LRScheduler):
        return
    opt = value.optimizer
    if hasattr(opt.step, "_wrapped_by_lr_sched"):
        return
    func = type(opt).step
    opt_ref = weakref.ref(opt)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = opt_ref()
        target._opt_called = True  # type: ignore[union-attr]
        return func.__get__(target, target.__class__)(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    opt.step = wrapper
