"""The canonical byte encoding of a state tree, streamed into a hash.

A state tree holds ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
lists and tuples (the same thing here), dicts and tensors. Every value is a
one-byte tag followed by its content; lengths are big-endian unsigned:

==========  =================================================================
``N``       None
``T``/``F`` True / False
``I``       int: u32 length ‖ decimal ASCII (arbitrary size, ``-`` for negative)
``D``       float: IEEE-754 binary64, big-endian (the exact bits; NaN kept)
``S``       str: u32 length ‖ UTF-8
``B``       bytes: u64 length ‖ bytes
``L``       list or tuple: u32 count ‖ items
``M``       dict: u32 count ‖ entries sorted by the encoded key ‖ (key ‖ value)...
``X``       tensor: dtype name as ``S`` ‖ u32 ndim ‖ u64 per dim ‖ u64 nbytes ‖
            the raw element bytes, C order, little-endian
==========  =================================================================

A tensor's bytes are its values, whatever its strides, device or
``requires_grad``; ``nn.Parameter`` and ``Tensor`` encode alike. A dict's
encoding does not depend on insertion order, so an ``OrderedDict`` and its
JSON round trip hash alike.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["canonical_bytes", "digest", "tensor_bytes"]


class _Sink(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def tensor_bytes(tensor: Any) -> memoryview:
    """The raw bytes of ``tensor``'s values (a CPU copy when it lives elsewhere)."""
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.to("cpu")
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    if sys.byteorder != "little":  # pragma: no cover - every supported host is little-endian
        raise RuntimeError("state hashing assumes a little-endian host")
    if type(t) is not torch.Tensor:
        t = t.as_subclass(torch.Tensor)
    try:
        array = t.numpy()
    except TypeError:  # bfloat16, float8: no NumPy dtype, same bytes
        array = t.reshape(-1).view(torch.uint8).numpy()
    return memoryview(array).cast("B")


class _Writer:
    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self._torch = sys.modules.get("torch")

    def write(self, value: Any) -> None:
        sink = self.sink
        if value is None:
            sink.update(b"N")
        elif value is True:
            sink.update(b"T")
        elif value is False:
            sink.update(b"F")
        elif isinstance(value, int):
            text = str(int(value)).encode("ascii")
            sink.update(b"I" + _u32(len(text)) + text)
        elif isinstance(value, float):
            sink.update(b"D" + struct.pack(">d", value))
        elif isinstance(value, str):
            data = value.encode("utf-8")
            sink.update(b"S" + _u32(len(data)) + data)
        elif isinstance(value, bytes | bytearray):
            sink.update(b"B" + _u64(len(value)) + bytes(value))
        elif isinstance(value, list | tuple):
            sink.update(b"L" + _u32(len(value)))
            for item in value:
                self.write(item)
        elif isinstance(value, Mapping):
            entries = sorted((canonical_bytes(k), v) for k, v in value.items())
            sink.update(b"M" + _u32(len(entries)))
            for key, item in entries:
                sink.update(key)
                self.write(item)
        elif self._torch is not None and isinstance(value, self._torch.Tensor):
            self._tensor(value)
        else:
            raise TypeError(f"a state tree cannot hold a {type(value).__qualname__}")

    def _tensor(self, value: Any) -> None:
        dtype = str(value.dtype).removeprefix("torch.").encode("ascii")
        shape = b"".join(_u64(int(d)) for d in value.shape)
        data = tensor_bytes(value)
        self.sink.update(
            b"X" + b"S" + _u32(len(dtype)) + dtype + _u32(value.dim()) + shape + _u64(data.nbytes)
        )
        self.sink.update(data)


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self.data += data


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of ``value`` (small values: dict keys, leaf headers)."""
    buffer = _Buffer()
    _Writer(buffer).write(value)
    return bytes(buffer.data)


def digest(value: Any, *, domain: bytes) -> bytes:
    """sha256(domain ‖ 0x00 ‖ canonical encoding of ``value``), streamed (tensors not copied)."""
    hasher = hashlib.sha256(domain + b"\x00")
    _Writer(hasher).write(value)
    return hasher.digest()
