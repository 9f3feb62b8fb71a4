"""Verified training: determinism, state hashing, Merkle commitments, segment replay.

A run with commitments (the worker's default) executes in a declared
:class:`~gensyn_jupyter.protocol.DeterminismClass` with deterministic
algorithms and fixed seeds. Every ``k`` optimizer steps the full training
state (modules, grads, optimizers, schedulers, scalers, every RNG and the
loop position) is hashed; the hashes are the leaves of a Merkle tree whose
root the provider commits on chain. :func:`replay_segment` re-runs the cell
from a stored checkpoint to the next one and hashes the state there, without
re-running the steps before it. Importing this package does not import torch.
"""

from __future__ import annotations

from ._canonical import canonical_bytes, digest
from ._checkpoints import AUTO_MAX_CHECKPOINTS, CheckpointRecorder, CheckpointStore
from ._determinism import (
    CUBLAS_WORKSPACE_CONFIG,
    NondeterminismWatch,
    determinism_class,
    deterministic_mode,
    seed_everything,
    seed_for,
)
from ._loops import (
    ENTER_NAME,
    LOOP_NAME,
    TRACKER_FILE,
    FastForwardError,
    LoopTracker,
    instrument,
)
from ._merkle import (
    Divergence,
    MerkleTree,
    first_divergent_leaf,
    keccak256,
    level_sizes,
    verify_proof,
)
from ._receipt import ReceiptCheck, check_receipt
from ._record import CELL_FILENAME, Recording
from ._referee import Cheater, Ruling, rule_dispute, rule_segment
from ._replay import (
    CheckpointMismatch,
    ReplayError,
    ReplayResult,
    checkpoint_digest,
    replay_segment,
    restore_at,
)
from ._returned import ReturnCheck, check_returned
from ._session import RunSession
from ._spot import detection_probability, sample_segments, spot_seed
from ._state import Found, StateDigest, find_objects, part_digest, state_digest, state_tree

__all__ = [
    "AUTO_MAX_CHECKPOINTS",
    "CELL_FILENAME",
    "CUBLAS_WORKSPACE_CONFIG",
    "ENTER_NAME",
    "LOOP_NAME",
    "TRACKER_FILE",
    "Cheater",
    "CheckpointMismatch",
    "CheckpointRecorder",
    "CheckpointStore",
    "Divergence",
    "FastForwardError",
    "Found",
    "LoopTracker",
    "MerkleTree",
    "NondeterminismWatch",
    "ReceiptCheck",
    "Recording",
    "ReplayError",
    "ReplayResult",
    "ReturnCheck",
    "Ruling",
    "RunSession",
    "StateDigest",
    "canonical_bytes",
    "check_receipt",
    "check_returned",
    "checkpoint_digest",
    "detection_probability",
    "determinism_class",
    "deterministic_mode",
    "digest",
    "find_objects",
    "first_divergent_leaf",
    "instrument",
    "keccak256",
    "level_sizes",
    "part_digest",
    "replay_segment",
    "restore_at",
    "rule_dispute",
    "rule_segment",
    "sample_segments",
    "seed_everything",
    "seed_for",
    "spot_seed",
    "state_digest",
    "state_tree",
    "verify_proof",
]
