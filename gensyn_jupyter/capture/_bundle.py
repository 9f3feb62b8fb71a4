"""Cell + namespace -> bundle of content-addressed blobs, and back on the provider."""

from __future__ import annotations

import builtins
import platform
import re
import types
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..protocol import Bundle, Environment, InputRef, sha256_hex
from ._analyze import analyze_cell
from ._flow import free_reads
from ._pickling import PickleRecord, by_value, dumps, local_modules, module_roots_to_packages
from ._preflight import PreflightError, size_error, unpicklable_error
from ._tree import NotATreeError, _Encoder
from ._util import canonical_json, type_name

__all__ = ["PreparedBundle", "build_bundle"]

_PLUMBING = frozenset(
    {"In", "Out", "get_ipython", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii"}
    | {"_oh", "_dh", "_ih"}
)
_PLUMBING_RE = re.compile(r"^(_i\d+|_\d+|__\w+__)$")


@dataclass
class PreparedBundle:
    """A captured cell, ready to upload.

    Attributes
    ----------
    bundle : Bundle
        The bundle (its JSON is :meth:`bundle_json`).
    blobs : dict of str to bytes
        sha256 hex -> bytes of every blob the bundle's inputs refer to (not the
        bundle JSON itself).
    """

    bundle: Bundle
    blobs: dict[str, bytes]

    def bundle_json(self) -> bytes:
        """Canonical JSON of the bundle (sorted keys, no spaces; NaN kept)."""
        return canonical_json(self.bundle.model_dump(mode="python"))

    @property
    def nbytes(self) -> int:
        """Total bytes to upload: every blob plus the bundle JSON."""
        return sum(len(b) for b in self.blobs.values()) + len(self.bundle_json())


def _is_plumbing(name: str) -> bool:
    return name in _PLUMBING or bool(_PLUMBING_RE.match(name))


def _is_builtin(name: str, value: Any) -> bool:
    return hasattr(builtins, name) and getattr(builtins, name) is value


def _pickle_group(
    objects: Mapping[str, Any], extra_modules: set[str]
) -> tuple[bytes, PickleRecord]:
    """cloudpickle ``objects`` as one dict; find the culprit when that fails."""
    local = local_modules(extra_modules)
    for _ in range(3):  # local code can refer to more local code: widen and retry
        record = PickleRecord()
        with by_value(local):
            try:
                data = dumps(dict(objects), record)
            except Exception as exc:
                for name, value in objects.items():
                    try:
                        dumps(value)
                    except Exception as single:
                        raise unpicklable_error(name, value, single) from single
                name, value = next(iter(objects.items()))
                raise unpicklable_error(name, value, exc) from exc
        more = [m for m in local_modules(record.modules) if m not in local]
        if not more:
            return data, record
        local += more
    return data, record


def _union_groups(ids: Mapping[str, set[int]]) -> list[list[str]]:
    """Group names whose id sets intersect (transitively); sorted, deterministic."""
    groups: list[tuple[list[str], set[int]]] = []
    for name in sorted(ids):
        merged_names, merged_ids = [name], set(ids[name])
        rest = []
        for names, group_ids in groups:
            if group_ids & merged_ids:
                merged_names += names
                merged_ids |= group_ids
            else:
                rest.append((names, group_ids))
        groups = [*rest, (sorted(merged_names), merged_ids)]
    return sorted(names for names, _ in groups)


def _kernel_device(devices: set[str]) -> str:
    if "cuda" in devices:
        return "cuda"
    others = sorted(devices - {"cpu", "meta"})
    return others[0] if others else "cpu"


def build_bundle(
    source: str,
    namespace: Mapping[str, Any],
    *,
    cell_line_offset: int = 1,
    max_bytes: int = 4 * 2**30,
    exclude: Collection[str] = (),
) -> PreparedBundle:
    """Capture a cell and the values it reads from ``namespace``.

    Parameters
    ----------
    source : str
        The cell body.
    namespace : Mapping of str to Any
        The kernel's user namespace.
    cell_line_offset : int
        Lines above the body in the notebook cell (the magic line).
    max_bytes : int
        Refuse bundles larger than this (blobs plus bundle JSON).
    exclude : Collection of str
        Names never captured (e.g. the variable the result handle goes to).

    Returns
    -------
    PreparedBundle
        The bundle and the blobs it refers to. Nothing is uploaded.

    Notes
    -----
    Inputs are the names the cell may read before binding them itself (a name
    the cell assigns at top level before any read is not captured, so a stale
    value left by an earlier local run never travels), found in
    ``namespace``, minus ``exclude``, IPython's plumbing (``In``, ``Out``,
    ``_``, ``_i3``, ``_3``, ``get_ipython``, dunder names ...) and names bound
    to the builtin of the same name. Modules travel by name, plain data and
    tensors as a JSON structure plus one safetensors blob per input (inputs
    sharing a tensor object share one blob), anything else in one cloudpickle
    blob. A tree holding a tensor that a pickled object also holds goes into
    the pickle, so it stays the same tensor on the provider.

    Raises
    ------
    SyntaxError
        When the cell does not parse.
    PreflightError
        When a value cannot be serialised (naming the variable, its type and
        what to do), or when the inputs exceed ``max_bytes``.
    """
    analysis = analyze_cell(source)
    excluded = set(exclude)
    values = {
        name: namespace[name]
        for name in sorted(analysis.loads & free_reads(source))
        if name in namespace
        and name not in excluded
        and not _is_plumbing(name)
        and not _is_builtin(name, namespace[name])
    }
    modules: dict[str, types.ModuleType] = {}
    trees: dict[str, _Encoder] = {}
    objects: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, types.ModuleType):
            modules[name] = value
            continue
        probe = _Encoder(dry=True)
        try:
            probe.encode(value, root=name)
        except NotATreeError:
            objects[name] = value
        else:
            trees[name] = probe
    local_roots = {m.__name__ for m in local_modules(m.__name__ for m in modules.values())}
    for name, module in list(modules.items()):
        if module.__name__.split(".")[0] in local_roots:
            objects[name] = modules.pop(name)  # not installed on a provider: goes by value

    tree_bytes = sum(probe.nbytes for probe in trees.values())
    if tree_bytes > max_bytes:
        sizes = {n: (type_name(values[n]), p.nbytes) for n, p in trees.items()}
        raise size_error(sizes, tree_bytes, max_bytes)

    blobs: dict[str, bytes] = {}
    refs: list[InputRef] = []
    record = PickleRecord()
    if objects:
        module_names = {m.__name__ for m in objects.values() if isinstance(m, types.ModuleType)}
        data, record = _pickle_group(objects, module_names)
        # A tree holding a tensor the objects hold too (``params = list(model.parameters())``)
        # travels with them, so that it stays the same tensor on the provider.
        shared = set(record.tensor_ids)
        moved: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, probe in trees.items():
                if name not in moved and probe.tensor_ids & shared:
                    moved.add(name)
                    shared |= probe.tensor_ids
                    changed = True
        if moved:
            for name in moved:
                objects[name] = values[name]
                del trees[name]
            data, record = _pickle_group(objects, set())
        sha = sha256_hex(data)
        blobs[sha] = data
        for name in objects:
            refs.append(
                InputRef(
                    name=name,
                    kind="object",
                    type_name=type_name(values[name]),
                    blob=sha,
                    nbytes=len(data),
                )
            )

    has_ndarray = False
    devices = set(record.devices)
    for group in _union_groups({n: p.tensor_ids for n, p in trees.items()}):
        encoder = _Encoder()
        # Keys start with the variable's name: a blob is shared only by inputs
        # that share tensors, and an unchanged input hashes the same next time.
        structures = {n: encoder.encode(values[n], root=n, prefix=n) for n in group}
        has_ndarray = has_ndarray or encoder.has_ndarray
        devices |= encoder.devices
        tree_sha: str | None = None
        size = 0
        if encoder.tensors:
            from safetensors.torch import save

            data = save(encoder.tensors)
            tree_sha, size = sha256_hex(data), len(data)
            blobs[tree_sha] = data
        for n in group:
            refs.append(
                InputRef(
                    name=n,
                    kind="tree",
                    type_name=type_name(values[n]),
                    blob=tree_sha,
                    structure=structures[n],
                    nbytes=size,
                )
            )
    for name, module in modules.items():
        refs.append(InputRef(name=name, kind="module", type_name="module", module=module.__name__))
    refs.sort(key=lambda ref: ref.name)

    import torch

    roots = {m.__name__ for m in modules.values()} | record.modules | {"torch"}
    if has_ndarray:
        roots.add("numpy")
    environment = Environment(
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        packages=module_roots_to_packages(roots),
    )
    try:
        bundle = Bundle(
            source=source,
            inputs=refs,
            outputs=sorted(
                n for n in analysis.stores - set(analysis.imports) if not _is_plumbing(n)
            ),
            returns=sorted(ref.name for ref in refs if ref.kind != "module"),
            environment=environment,
            cell_line_offset=cell_line_offset,
            kernel_device=_kernel_device(devices),
        )
    except ValidationError as exc:
        raise PreflightError(
            "the cell",
            "source",
            "split the cell or shorten its source.",
            message=f"cannot send the cell to a provider: {exc.errors()[0]['msg']}",
        ) from exc
    prepared = PreparedBundle(bundle=bundle, blobs=blobs)
    total = prepared.nbytes
    if total > max_bytes:
        raise size_error(_input_sizes(bundle, values, objects), total, max_bytes)
    return prepared


def _input_sizes(
    bundle: Bundle, values: Mapping[str, Any], objects: Mapping[str, Any]
) -> dict[str, tuple[str, int]]:
    """What each input adds to the bundle (objects pickled one by one to tell)."""
    sizes: dict[str, tuple[str, int]] = {}
    for ref in bundle.inputs:
        if ref.kind == "tree":
            size = ref.nbytes + len(canonical_json(ref.structure))
        elif ref.kind == "object":
            try:
                size = len(dumps(objects[ref.name]))
            except Exception:  # pragma: no cover - it pickled as part of the group
                size = ref.nbytes
        else:
            size = 0
        sizes[ref.name] = (ref.type_name, size)
    return sizes
