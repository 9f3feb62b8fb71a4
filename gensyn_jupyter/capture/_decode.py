"""Decoding side of the tree codec: the allow-list the kernel trusts (see ``_tree``)."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._tree import _DEVICE_RE, _SCALAR_SET, _SCALARS, _TAGS, _TENSOR_FLAGS, MAX_DEPTH, MAX_NODES

if TYPE_CHECKING:
    import torch

__all__ = ["decode_tree", "tree_equal"]


@functools.cache
def _dtype_names() -> dict[str, torch.dtype]:
    import torch

    return {
        str(v).removeprefix("torch."): v for v in vars(torch).values() if isinstance(v, torch.dtype)
    }


class _Decoder:
    """Decodes structures against one tensor namespace (same key -> same object)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self._cache: dict[tuple[str, str, bool, bool], Any] = {}
        self._nodes = 0
        self._dtypes: dict[str, torch.dtype] | None = None

    def decode(self, structure: Any, depth: int = 0, *, counted: bool = False) -> Any:
        if not counted:
            self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ValueError(f"structure holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise ValueError(f"structure is nested deeper than {MAX_DEPTH} levels")
        cls = type(structure)
        if structure is None or cls in _SCALARS:
            return structure
        if cls is list:
            return self._decode_list(structure, depth)
        if cls is not dict:
            raise ValueError(f"unexpected {cls.__name__} in a structure")
        tags = [k for k in structure if type(k) is not str or k.startswith("$")]
        if not tags:
            values = self._decode_list(list(structure.values()), depth)
            return dict(zip(structure, values, strict=True))
        if len(tags) != 1 or tags[0] not in _TAGS:
            raise ValueError(f"unknown tag(s) {sorted(map(str, tags))} in a structure")
        tag = tags[0]
        extra = set(structure) - {tag}
        if extra and (tag != "$tensor" or not extra <= _TENSOR_FLAGS):
            raise ValueError(f"unexpected keys {sorted(extra)} beside {tag}")
        body = structure[tag]
        if tag == "$tuple":
            if type(body) is not list:
                raise ValueError("$tuple must hold a list")
            return tuple(self.decode(item, depth + 1) for item in body)
        if tag == "$items":
            return self._decode_items(body, depth)
        if tag == "$tensor":
            rg, param = structure.get("requires_grad", False), structure.get("parameter", False)
            if type(rg) is not bool or type(param) is not bool:
                raise ValueError("$tensor flags must be booleans")
            return self._tensor(body, "tensor", rg, param)
        if tag == "$ndarray":
            return self._tensor(body, "ndarray", False, False)
        if tag == "$device":
            return _decode_device(body)
        return self._decode_dtype(body)

    def _decode_list(self, items: list[Any], depth: int) -> list[Any]:
        self._nodes += len(items)
        if self._nodes > MAX_NODES:
            raise ValueError(f"structure holds more than {MAX_NODES} values")
        scalars = _SCALAR_SET
        return [
            item
            if item is None or type(item) in scalars
            else self.decode(item, depth + 1, counted=True)
            for item in items
        ]

    def _decode_items(self, body: Any, depth: int) -> dict[Any, Any]:
        if type(body) is not list:
            raise ValueError("$items must hold a list of [key, value] pairs")
        out: dict[Any, Any] = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("$items must hold a list of [key, value] pairs")
            key = self._decode_key(pair[0], depth + 1)
            if key in out:
                raise ValueError(f"duplicate key {key!r} in $items")
            out[key] = self.decode(pair[1], depth + 1)
        return out

    def _decode_key(self, key: Any, depth: int) -> Any:
        self._nodes += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"structure is nested deeper than {MAX_DEPTH} levels")
        if key is None or type(key) in _SCALARS:
            return key
        if type(key) is dict and set(key) == {"$tuple"} and type(key["$tuple"]) is list:
            return tuple(self._decode_key(k, depth + 1) for k in key["$tuple"])
        raise ValueError(f"unexpected dict key {key!r} in $items")

    def _tensor(self, key: Any, kind: str, requires_grad: bool, parameter: bool) -> Any:
        import torch

        if type(key) is not str:
            raise ValueError(f"${kind} must name a tensor key")
        cache_key = (key, kind, requires_grad, parameter)
        if cache_key in self._cache:
            return self._cache[cache_key]
        if key not in self.tensors:
            raise ValueError(f"tensor {key!r} is missing from the tensors")
        tensor = self.tensors[key]
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"tensor {key!r} is not a tensor")
        value: Any
        if kind == "ndarray":
            try:
                value = tensor.detach().cpu().numpy()
            except (TypeError, RuntimeError) as exc:
                raise ValueError(f"tensor {key!r} cannot be a numpy array: {exc}") from exc
        else:
            if requires_grad and not (tensor.is_floating_point() or tensor.is_complex()):
                raise ValueError(f"tensor {key!r} of dtype {tensor.dtype} cannot require grad")
            if parameter:
                value = torch.nn.Parameter(tensor, requires_grad=requires_grad)
            elif requires_grad:
                value = tensor.detach().requires_grad_(True)
            else:
                value = tensor
        self._cache[cache_key] = value
        return value

    def _decode_dtype(self, body: Any) -> Any:
        if self._dtypes is None:
            self._dtypes = _dtype_names()
        if type(body) is not str or body not in self._dtypes:
            raise ValueError(f"unknown dtype {body!r}")
        return self._dtypes[body]


def _decode_device(body: Any) -> Any:
    import torch

    if type(body) is not str or not _DEVICE_RE.match(body):
        raise ValueError(f"bad device {body!r}")
    try:
        return torch.device(body)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"bad device {body!r}: {exc}") from exc


def decode_tree(structure: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Rebuild a value from :func:`encode_tree`'s output (allow-list only).

    Parameters
    ----------
    structure : Any
        A JSON structure as produced by :func:`encode_tree` (or parsed JSON).
    tensors : Mapping of str to torch.Tensor
        The tensors it refers to, e.g. from ``safetensors.torch.load``.

    Returns
    -------
    Any
        The value; dicts come back as ``dict``, numpy arrays as numpy arrays,
        and a key used twice as one tensor object.

    Raises
    ------
    ValueError
        On anything the encoder does not produce: unknown tags, a missing
        tensor key, a bad device or dtype, too deep or too large a structure.
    """
    try:
        return _Decoder(tensors).decode(structure)
    except RecursionError as exc:  # pragma: no cover - depth is limited well below
        raise ValueError("structure is nested too deeply") from exc


def tree_equal(a: Any, b: Any, depth: int = 0) -> bool:
    """True when two tree values are equal: same types, tensors equal in dtype, shape, data.

    Tensors on different devices are compared after moving ``b`` to ``a``'s
    device; NaN floats equal NaN floats (NaN inside tensors does not).
    """
    if depth > MAX_DEPTH or type(a) is not type(b):
        return False
    if a is None or type(a) in (bool, int, str):
        return bool(a == b)
    if type(a) is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(
            tree_equal(x, y, depth + 1) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tree_equal(a[k], b[k], depth + 1) for k in a)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(a, torch.Tensor):
        return bool(
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.requires_grad == b.requires_grad
            and torch.equal(a.detach(), b.detach().to(a.device))
        )
    np = sys.modules.get("numpy")
    if np is not None and isinstance(a, np.ndarray):
        return bool(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b))
    return bool(a == b)
