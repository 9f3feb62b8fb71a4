"""Capture: a notebook cell plus the kernel namespace -> a bundle of content-addressed blobs.

Kernel side: :func:`analyze_cell` finds the names a cell reads and binds;
:func:`build_bundle` turns the values it reads into blobs (plain data and
tensors as JSON + safetensors, everything else cloudpickled together), runs the
pre-flight checks (:class:`PreflightError`) and lists the environment.
:func:`decode_results` reads what a provider sent back, with ``json`` and
``safetensors`` only: the kernel never unpickles provider data.

Provider side: :func:`load_inputs` rebuilds the captured values and
:func:`encode_results` encodes what the cell left behind.

The tree codec (:func:`encode_tree`, :func:`decode_tree`, :func:`is_tree`) is
the allow-list both directions share. Importing this package does not import
torch.
"""

from __future__ import annotations

from ._analyze import CellAnalysis, analyze_cell
from ._bundle import PreparedBundle, build_bundle
from ._decode import decode_tree
from ._load import load_inputs
from ._preflight import PreflightError
from ._results import EncodedResults, decode_results, encode_results
from ._tree import NotATreeError, encode_tree, is_tree

__all__ = [
    "CellAnalysis",
    "EncodedResults",
    "NotATreeError",
    "PreflightError",
    "PreparedBundle",
    "analyze_cell",
    "build_bundle",
    "decode_results",
    "decode_tree",
    "encode_results",
    "encode_tree",
    "is_tree",
    "load_inputs",
]
