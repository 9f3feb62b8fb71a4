"""Spot checks: which segments a committed run is challenged on, and the odds of catching a cheat.

After the provider commits its root, the coordinator draws a seed it could
not have predicted (:func:`spot_seed`: the hash of the block that mined the
commit with the root) and :func:`sample_segments` picks the segments that
verifiers replay. Segment ``i`` runs from leaf ``i`` to leaf ``i + 1``. The
sampling is keccak256 of the seed and a counter driving a partial
Fisher-Yates shuffle, so a contract or another verifier can redo it.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ._merkle import keccak256

__all__ = ["detection_probability", "sample_segments", "spot_seed"]


def _seed_bytes(seed: bytes | int) -> bytes:
    if isinstance(seed, bool) or not isinstance(seed, bytes | bytearray | int):
        raise TypeError("the seed must be bytes or an int")
    if isinstance(seed, int):
        if not 0 <= seed < 1 << 256:
            raise ValueError("an int seed must be in [0, 2**256)")
        return seed.to_bytes(32, "big")
    return bytes(seed)


def sample_segments(seed: bytes | int, segments: int, fraction: float = 0.1) -> list[int]:
    """The segments to replay: ``max(1, ceil(fraction * segments))`` distinct indices, sorted.

    Parameters
    ----------
    seed : bytes or int
        The spot seed (:func:`spot_seed`); an int is taken as 32 bytes big-endian.
    segments : int
        Segments of the run (its leaf count minus one).
    fraction : float
        Share of the segments to replay, in ``(0, 1]``.

    Returns
    -------
    list of int
        Segment indices in ``[0, segments)``; the same for the same arguments.
    """
    if segments < 1:
        raise ValueError("a run with commitments has at least one segment")
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    count = min(segments, max(1, math.ceil(fraction * segments)))
    key = _seed_bytes(seed)
    order = list(range(segments))
    for i in range(count):
        draw = int.from_bytes(keccak256(key + i.to_bytes(32, "big")), "big")
        j = i + draw % (segments - i)
        order[i], order[j] = order[j], order[i]
    return sorted(order[:count])


def detection_probability(segments: int, bad: int, sampled: int) -> float:
    """The chance that ``sampled`` distinct segments out of ``segments`` hit one of ``bad``.

    Hypergeometric: ``1 - C(n - b, m) / C(n, m)``.

    Parameters
    ----------
    segments : int
        ``n``, every segment of the run.
    bad : int
        ``b``, segments whose replay does not give the committed leaf.
    sampled : int
        ``m``, segments replayed.
    """
    if segments < 0 or not 0 <= bad <= segments or not 0 <= sampled <= segments:
        raise ValueError("need 0 <= bad <= segments and 0 <= sampled <= segments")
    if segments == 0:
        return 0.0
    missed = Fraction(math.comb(segments - bad, sampled), math.comb(segments, sampled))
    return float(1 - missed)


def spot_seed(block_hash: bytes, root: str) -> bytes:
    """The seed of a run's spot check: keccak256(block hash ‖ committed root).

    ``block_hash`` is the hash of the block in which the commitment was
    mined, which the provider cannot know when it commits.

    Parameters
    ----------
    block_hash : bytes
        32 bytes.
    root : str
        The committed root, ``0x`` and 64 hex digits.
    """
    if len(block_hash) != 32:
        raise ValueError("a block hash is 32 bytes")
    raw = bytes.fromhex(root.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("a root is 32 bytes")
    return keccak256(bytes(block_hash) + raw)
