"""The tree codec: plain data and tensors <-> a JSON structure plus named tensors.

This is the security boundary of the kernel: provider data is decoded here, by
an allow-list of JSON shapes and tags, and tensors come from safetensors. The
encoder is the only producer of these shapes.

JSON shapes
-----------
``None``, ``bool``, ``int``, ``float`` (NaN/inf too), ``str``
    as is.
``list``
    a JSON array.
``dict`` with ``str`` keys, none starting with ``$`` (``OrderedDict`` too)
    a JSON object (decoded as a ``dict``; canonical JSON sorts its keys).
any other ``dict``
    ``{"$items": [[key, value], ...]}``; keys are ``str``, ``int``, ``float``,
    ``bool``, ``None`` or tuples of those.
``tuple`` (``torch.Size`` too)
    ``{"$tuple": [...]}``.
``torch.Tensor`` / ``nn.Parameter``
    ``{"$tensor": key}`` plus ``"requires_grad": true`` for a leaf tensor that
    requires grad and ``"parameter": true`` for an ``nn.Parameter``. The same
    tensor object met twice gets the same key (and decodes to one object);
    distinct tensors sharing storage are cloned (safetensors refuses shared
    memory).
``numpy.ndarray``
    ``{"$ndarray": key}``, stored as a tensor, decoded back to numpy.
numpy scalar
    the Python number.
``torch.device`` / ``torch.dtype``
    ``{"$device": "cuda:0"}`` / ``{"$dtype": "float32"}``.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._util import type_name

if TYPE_CHECKING:
    import torch

__all__ = ["MAX_DEPTH", "MAX_NODES", "NotATreeError", "encode_tree", "is_tree"]

MAX_DEPTH = 100
"""Deepest nesting of containers the codec accepts (both directions)."""
MAX_NODES = 10_000_000
"""Most values (containers, leaves, keys) in one tree (both directions)."""

_TAGS = frozenset({"$tuple", "$items", "$tensor", "$ndarray", "$device", "$dtype"})
_TENSOR_FLAGS = frozenset({"requires_grad", "parameter"})
_DEVICE_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}(:[0-9]{1,4})?$")
_SCALARS = (bool, int, float, str)
_SCALAR_SET = frozenset(_SCALARS)


class NotATreeError(TypeError):
    """A value holds something the tree codec cannot carry.

    Attributes
    ----------
    path : str
        Where the offending value sits, e.g. ``value['a'][2]``.
    problem : str
        What is wrong with it, e.g. ``is a generator``.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} {problem}")


@functools.cache
def _safetensors_dtypes() -> frozenset[torch.dtype]:
    import torch

    names = [
        *("float64", "float32", "float16", "bfloat16", "complex64", "bool"),
        *("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8"),
        *("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"),
    ]
    return frozenset(d for n in names if isinstance(d := getattr(torch, n, None), torch.dtype))


def _describe(value: Any) -> str:
    name = type_name(value)
    article = "an" if name.lstrip("_")[:1].lower() in ("a", "e", "i", "o", "u") else "a"
    return f"{article} {name}"


class _Encoder:
    """Encodes one or several trees into one tensor namespace.

    Several values may share an encoder (each under its own key ``prefix``):
    their tensors then go into one safetensors file, the same tensor object
    keeps one key, and storage shared across values is cloned.

    ``dry=True`` walks without copying tensors (for :func:`is_tree` and for
    finding which tensors a value holds).
    """

    def __init__(self, *, dry: bool = False) -> None:
        self.dry = dry
        self.tensors: dict[str, torch.Tensor] = {}
        self.tensor_ids: set[int] = set()
        self.devices: set[str] = set()
        self.nbytes = 0
        self.has_ndarray = False
        self._key_of: dict[int, str] = {}
        self._ptrs: set[tuple[str, int]] = set()
        self._keep: list[Any] = []
        self._nodes = 0
        self._path: list[Any] = []
        self._root = "value"
        self._prefix = ""
        self._active: set[int] = set()
        self._dtypes: frozenset[Any] | None = None

    def encode(self, value: Any, *, root: str = "value", prefix: str = "") -> Any:
        """Encode ``value``; on failure nothing of it stays in the encoder."""
        saved = (dict(self.tensors), set(self.tensor_ids), set(self.devices), self.nbytes)
        saved_more = (self.has_ndarray, dict(self._key_of), set(self._ptrs), self._nodes)
        self._root, self._prefix, self._path = root, prefix, []
        self._active = set()
        try:
            return self._encode(value, 0)
        except BaseException:
            self.tensors, self.tensor_ids, self.devices, self.nbytes = saved
            self.has_ndarray, self._key_of, self._ptrs, self._nodes = saved_more
            raise

    # -- paths and keys -----------------------------------------------------
    def _where(self) -> str:
        return self._root + "".join(f"[{c!r}]" for c in self._path)

    def _fail(self, problem: str) -> NotATreeError:
        return NotATreeError(self._where(), problem)

    def _new_key(self) -> str:
        parts = [str(c) for c in self._path]
        if self._prefix:
            parts.insert(0, self._prefix)
        base = "/".join(parts) or "tensor"
        key, n = base, 1
        while key in self.tensors:
            key, n = f"{base}~{n}", n + 1
        return key

    @contextmanager
    def _container(self, value: Any) -> Iterator[None]:
        if id(value) in self._active:
            raise self._fail("contains itself")
        self._active.add(id(value))
        try:
            yield
        finally:
            self._active.discard(id(value))

    # -- the walk -----------------------------------------------------------
    def _encode(self, value: Any, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._fail(f"holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise self._fail(f"is nested deeper than {MAX_DEPTH} levels")
        cls = type(value)
        if value is None or cls in _SCALARS:
            return value
        if cls is list:
            with self._container(value):
                return self._encode_items(value, depth)
        if cls is dict or cls is OrderedDict:
            return self._encode_dict(value, depth)
        torch = sys.modules.get("torch")
        if cls is tuple or (torch is not None and cls is torch.Size):
            with self._container(value):
                return {"$tuple": self._encode_items(value, depth)}
        np = sys.modules.get("numpy")
        if np is not None:
            if cls is np.ndarray:
                return self._encode_ndarray(value)
            if isinstance(value, np.generic):
                return self._encode_numpy_scalar(value, np)
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return self._encode_tensor(value)
            if cls is torch.device:
                return {"$device": str(value)}
            if cls is torch.dtype:
                return {"$dtype": str(value).removeprefix("torch.")}
        raise self._fail(f"is {_describe(value)}")

    def _encode_dict(self, value: Mapping[Any, Any], depth: int) -> Any:
        with self._container(value):
            if all(type(k) is str and not k.startswith("$") for k in value):
                encoded = self._encode_items(value.values(), depth, value)
                return dict(zip(value, encoded, strict=True))
            keys = [self._encode_key(k, k, depth + 1) for k in value]
            encoded = self._encode_items(value.values(), depth, value)
            items = [[k, v] for k, v in zip(keys, encoded, strict=True)]
            return {"$items": items}

    def _encode_items(
        self, values: Iterable[Any], depth: int, keys: Iterable[Any] | None = None
    ) -> list[Any]:
        """Encode a container's items; plain scalars take a fast path (long loss lists)."""
        out: list[Any] = []
        path = self._path
        path.append(None)
        try:
            labels = keys if keys is not None else itertools.count()
            for label, item in zip(labels, values, strict=False):  # count() is endless
                if item is None or type(item) in _SCALAR_SET:
                    self._nodes += 1
                    out.append(item)
                    continue
                path[-1] = label
                out.append(self._encode(item, depth + 1))
        finally:
            path.pop()
        if self._nodes > MAX_NODES:
            raise self._fail(f"holds more than {MAX_NODES} values")
        return out

    def _encode_key(self, key: Any, whole: Any, depth: int) -> Any:
        self._nodes += 1
        if depth > MAX_DEPTH:
            raise self._fail(f"has a key nested deeper than {MAX_DEPTH} levels")
        if key is None or type(key) in _SCALARS:
            return key
        if type(key) is tuple:
            return {"$tuple": [self._encode_key(k, whole, depth + 1) for k in key]}
        shown = "" if key is whole else f" inside the key {whole!r}"
        raise self._fail(
            f"has a key that is {_describe(key)}{shown} "
            "(keys must be str, int, float, bool, None or tuples of those)"
        )

    def _encode_numpy_scalar(self, value: Any, np: Any) -> Any:
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.str_):
            return str(value)
        raise self._fail(f"is {_describe(value)}")

    def _encode_ndarray(self, value: Any) -> Any:
        import numpy as np
        import torch

        key = self._key_of.get(id(value))
        if key is not None:
            return {"$ndarray": key}
        try:
            if value.dtype.byteorder == ">" or not value.flags.writeable:
                value_native = value.astype(value.dtype.newbyteorder("="), copy=True)
            else:
                value_native = np.ascontiguousarray(value)
            tensor = torch.from_numpy(value_native) if value.dtype.kind in "biufc" else None
        except (TypeError, ValueError):
            tensor = None
        if tensor is None:
            raise self._fail(f"is a numpy array of dtype {value.dtype}, which cannot travel")
        self.has_ndarray = True
        key = self._store_tensor(tensor, value, what=f"numpy array of dtype {value.dtype}")
        return {"$ndarray": key}

    def _encode_tensor(self, value: torch.Tensor) -> Any:
        import torch

        flags: dict[str, Any] = {}
        if value.requires_grad and value.is_leaf:
            flags["requires_grad"] = True
        if isinstance(value, torch.nn.Parameter):
            flags["parameter"] = True
        key = self._key_of.get(id(value))
        if key is None:
            if value.layout != torch.strided:
                raise self._fail(f"is a {value.layout} tensor (only dense tensors can travel)")
            if value.device.type == "meta":
                raise self._fail("is a tensor on the meta device (it has no data)")
            key = self._store_tensor(value, value, what=f"tensor of dtype {value.dtype}")
        return {"$tensor": key, **flags}

    def _store_tensor(self, tensor: torch.Tensor, original: Any, *, what: str) -> str:
        import torch

        if self._dtypes is None:
            self._dtypes = _safetensors_dtypes()
        if tensor.dtype not in self._dtypes:
            raise self._fail(f"is a {what}, which safetensors cannot store")
        self._keep.append(original)
        self.tensor_ids.add(id(original))
        self.devices.add(tensor.device.type)
        self.nbytes += tensor.numel() * tensor.element_size()
        key = self._new_key()
        self._key_of[id(original)] = key
        if self.dry:
            self.tensors[key] = tensor
            return key
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")  # a fresh copy: shares nothing
        else:
            ptr = t.untyped_storage().data_ptr()
            if ptr != 0 and ("cpu", ptr) in self._ptrs:
                t = t.clone()
            elif ptr != 0:
                self._ptrs.add(("cpu", ptr))
        t = t.resolve_conj().resolve_neg().contiguous()
        if type(t) is not torch.Tensor:
            t = t.as_subclass(torch.Tensor)
        self.tensors[key] = t
        return key


def encode_tree(value: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Encode plain data and tensors as a JSON structure plus named tensors.

    Parameters
    ----------
    value : Any
        ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples, dicts
        (keys: ``str``, ``int``, ``float``, ``bool``, ``None`` or tuples of
        those), tensors, numpy arrays and scalars, ``torch.device`` and
        ``torch.dtype``, nested up to :data:`MAX_DEPTH` levels.

    Returns
    -------
    structure : Any
        JSON-serialisable structure (see the module docstring for its shapes).
    tensors : dict of str to torch.Tensor
        Detached, contiguous CPU tensors sharing no storage, keyed by unique
        path-like names (``"fc1.weight"``, ``"state/0/exp_avg"``); ready for
        ``safetensors.torch.save``.

    Raises
    ------
    NotATreeError
        Naming where the value holds something else, e.g.
        ``value['a'][2] is a generator``.
    """
    enc = _Encoder()
    structure = enc.encode(value)
    return structure, enc.tensors


def is_tree(value: Any) -> bool:
    """True when :func:`encode_tree` would accept ``value`` (nothing is copied)."""
    try:
        _Encoder(dry=True).encode(value)
    except NotATreeError:
        return False
    return True
