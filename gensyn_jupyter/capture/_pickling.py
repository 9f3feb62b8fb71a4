"""cloudpickle with bookkeeping: which modules, tensors and devices a group refers to.

Objects that are not plain data travel as one cloudpickle of ``{name: value}``
so that shared references survive (an optimizer's parameters are the model's).
Code defined in the notebook (``__main__``) and in local modules next to it
(imported from files that are not an installed distribution) is pickled by
value, so the provider does not need those files. Tensors on an accelerator are
pickled as CPU tensors, so any provider can load them (it moves them where they
belong). Open files are refused (cloudpickle would read a text file whole into a
``StringIO``); ``sys.stdout``/``sys.stderr`` become the provider's own.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import os
import site
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from ._util import type_name

if TYPE_CHECKING:
    import torch

__all__ = [
    "PickleRecord",
    "by_value",
    "dumps",
    "local_modules",
    "module_roots_to_packages",
]

PROTOCOL = 5
_NEVER_LOCAL = frozenset({"__main__", "__mp_main__", "builtins", "__builtin__", "gensyn_jupyter"})


@dataclass
class PickleRecord:
    """What one pickling pass met."""

    modules: set[str] = field(default_factory=set)
    """``__module__`` of every class and function and the name of every module."""
    tensor_ids: set[int] = field(default_factory=set)
    """``id()`` of every tensor and numpy array."""
    devices: set[str] = field(default_factory=set)
    """Device types of the tensors."""


def _rebuild_cpu_tensor(data: torch.Tensor, requires_grad: bool) -> torch.Tensor:
    """Unpickling side of an accelerator tensor pickled on the CPU."""
    return data.requires_grad_(True) if requires_grad else data


class _RecordingPickler(cloudpickle.CloudPickler):  # type: ignore[misc]
    def __init__(self, file: io.BytesIO, record: PickleRecord) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._record = record

    def reducer_override(self, obj: Any) -> Any:
        record = self._record
        if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                record.modules.add(module)
        elif isinstance(obj, types.ModuleType):
            record.modules.add(obj.__name__)
        elif isinstance(obj, io.IOBase) and not isinstance(obj, io.BytesIO | io.StringIO):
            for stream in ("stdout", "stderr"):
                if obj is getattr(sys, stream) or obj is getattr(sys, f"__{stream}__"):
                    return (getattr, (sys, stream))  # the provider's own stream
            # cloudpickle would read a text file whole into a StringIO: refuse files instead.
            raise TypeError(f"cannot pickle {type_name(obj)!r} object")
        else:
            torch = sys.modules.get("torch")
            np = sys.modules.get("numpy")
            if torch is not None and isinstance(obj, torch.Tensor):
                record.tensor_ids.add(id(obj))
                record.devices.add(obj.device.type)
                if obj.device.type not in ("cpu", "meta"):
                    return _reduce_on_cpu(obj, torch)
            elif np is not None and type(obj) is np.ndarray:
                record.tensor_ids.add(id(obj))
        return super().reducer_override(obj)


def _reduce_on_cpu(obj: torch.Tensor, torch: Any) -> tuple[Any, ...]:
    data = obj.detach().to("cpu")
    if isinstance(obj, torch.nn.Parameter):
        return (torch.nn.Parameter, (data, obj.requires_grad))
    return (_rebuild_cpu_tensor, (data, bool(obj.requires_grad and obj.is_leaf)))


def dumps(value: Any, record: PickleRecord | None = None) -> bytes:
    """cloudpickle ``value`` (protocol 5), noting what it meets in ``record``."""
    buffer = io.BytesIO()
    _RecordingPickler(buffer, record if record is not None else PickleRecord()).dump(value)
    return buffer.getvalue()


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _install_prefixes() -> tuple[str, ...]:
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    with contextlib.suppress(AttributeError):  # some virtualenvs lack it
        paths += site.getsitepackages()
    paths.append(site.getusersitepackages())
    return tuple(sorted({os.path.realpath(p) for p in paths if p}))


def local_modules(names: Iterable[str]) -> list[types.ModuleType]:
    """Top-level modules among ``names`` that are local files, not installed packages.

    A provider cannot import them, so their code travels by value.
    """
    found: list[types.ModuleType] = []
    for root in sorted({n.split(".")[0] for n in names if n}):
        if root in _NEVER_LOCAL or root in sys.stdlib_module_names or root in _distributions():
            continue
        module = sys.modules.get(root)
        file = getattr(module, "__file__", None)
        if not isinstance(module, types.ModuleType) or not isinstance(file, str):
            continue
        path = os.path.realpath(file)
        if any(path.startswith(prefix + os.sep) for prefix in _install_prefixes()):
            continue
        found.append(module)
    return found


@contextmanager
def by_value(modules: Iterable[types.ModuleType]) -> Iterator[None]:
    """Pickle ``modules``' functions and classes by value while inside."""
    registered: list[types.ModuleType] = []
    try:
        for module in modules:
            if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
        yield
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def module_roots_to_packages(modules: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` for the installed packages providing ``modules``."""
    packages: dict[str, str] = {}
    for root in sorted({m.split(".")[0] for m in modules if m}):
        if root in _NEVER_LOCAL or root in sys.stdlib_module_names:
            continue
        for dist in _distributions().get(root, []):
            try:
                packages[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:  # pragma: no cover
                continue
    return dict(sorted(packages.items()))
