"""Spot checks: an unpredictable seed picks a tenth of a run's segments, verifiers replay
them; a cheater is caught as often as the hypergeometric odds say, an honest run never."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from gensyn_jupyter.provider import CHEAT_MODES
from gensyn_jupyter.verify import (
    Ruling,
    detection_probability,
    keccak256,
    rule_dispute,
    rule_segment,
    sample_segments,
    spot_seed,
)

from ._harness import Ran
from .test_cheats import namespace, run_as

SAMPLINGS = 20


def _block(i: int) -> bytes:
    """The hash of "the block after the commit" in sampling ``i``."""
    return keccak256(b"block" + i.to_bytes(8, "big"))


# -- sampling ---------------------------------------------------------------------------


def test_sample_segments_is_deterministic_distinct_and_in_range() -> None:
    for segments, fraction in itertools.product(range(1, 61), (0.01, 0.1, 0.25, 0.5, 1.0)):
        seed = keccak256(f"{segments}/{fraction}".encode())
        picked = sample_segments(seed, segments, fraction)
        assert picked == sample_segments(seed, segments, fraction)
        assert picked == sorted(set(picked))
        assert all(0 <= i < segments for i in picked)
        assert len(picked) == max(1, math.ceil(fraction * segments))
    assert sample_segments(5, 17) == sample_segments((5).to_bytes(32, "big"), 17)
    assert sample_segments(b"x", 1, 0.1) == [0]
    assert sample_segments(b"x", 4, 1.0) == [0, 1, 2, 3]


def test_every_segment_is_equally_likely() -> None:
    draws = 3400
    counts = Counter(i for s in range(draws) for i in sample_segments(s, 17, 0.1))
    assert sorted(counts) == list(range(17))
    expected = draws * 2 / 17  # 2 of 17 each time: 400
    sigma = math.sqrt(draws * 2 / 17 * 15 / 17)
    assert all(abs(n - expected) < 5 * sigma for n in counts.values()), counts
    assert len({tuple(sample_segments(s, 17, 0.1)) for s in range(200)}) > 100


def test_sample_segments_rejects_bad_arguments() -> None:
    bad: list[tuple[bytes | int, int, float]] = [
        (b"x", 0, 0.1),
        (b"x", 5, 0.0),
        (b"x", 5, 1.5),
        (-1, 5, 0.1),
        (1 << 256, 5, 0.1),
    ]
    for seed, segments, fraction in bad:
        with pytest.raises(ValueError):
            sample_segments(seed, segments, fraction)
    with pytest.raises(TypeError):
        sample_segments("seed", 5)  # type: ignore[arg-type]


def test_detection_probability_is_the_hypergeometric_odds() -> None:
    for n in range(1, 9):
        for bad, m in itertools.product(range(n + 1), range(n + 1)):
            picks = list(itertools.combinations(range(n), m))
            hit = sum(any(i < bad for i in pick) for pick in picks) / len(picks)
            assert detection_probability(n, bad, m) == pytest.approx(hit, abs=1e-12)
    assert detection_probability(10, 0, 3) == 0.0
    assert detection_probability(10, 10, 1) == 1.0
    assert detection_probability(10, 3, 0) == 0.0
    assert detection_probability(10, 3, 8) == 1.0  # more picks than good segments
    assert detection_probability(17, 1, 2) == pytest.approx(2 / 17)
    for args in [(5, 6, 1), (5, 1, 6), (5, -1, 1), (-1, 0, 0)]:
        with pytest.raises(ValueError):
            detection_probability(*args)


def test_spot_seed_depends_on_the_block_and_the_root() -> None:
    root = "0x" + "ab" * 32
    seed = spot_seed(_block(0), root)
    assert len(seed) == 32 and seed == spot_seed(_block(0), root)
    assert seed != spot_seed(_block(1), root)
    assert seed != spot_seed(_block(0), "0x" + "ac" * 32)
    with pytest.raises(ValueError):
        spot_seed(b"\x00" * 31, root)
    with pytest.raises(ValueError):
        spot_seed(_block(0), "0xabcd")


# -- cheaters, spot-checked -------------------------------------------------------------


class _Judged:
    """One run and the rulings on its segments, each replayed once when first asked for."""

    def __init__(self, ran: Ran) -> None:
        self.ran = ran
        self.rulings: dict[int, Ruling] = {}

    @property
    def segments(self) -> int:
        return len(self.ran.commitment.leaves) - 1

    def ruling(self, segment: int) -> Ruling:
        if segment not in self.rulings:
            ran = self.ran
            self.rulings[segment] = rule_segment(
                ran.bundle, ran.read_blob, ran.commitment, ran.store, segment
            )
        return self.rulings[segment]

    def caught(self, segments: list[int]) -> bool:
        return any(self.ruling(i).cheater == "provider" for i in segments)


@pytest.fixture(scope="module")
def cheaters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, _Judged]:
    ns = namespace()
    return {
        mode: _Judged(run_as(tmp_path_factory.mktemp(mode), mode, ns)[0]) for mode in CHEAT_MODES
    }


# Segments i -> i+1 of 5 steps; skip trains steps 1-5, skips 6-10, ...; perturb at step 7.
BAD = {
    "stale": set(range(17)),
    "fake-loss": set(range(17)),
    "wrong-data": set(range(17)),
    "skip": set(range(1, 17, 2)),
    "perturb": {1},
}


def _binomial_interval(trials: int, p: float, mass: float = 0.999) -> tuple[int, int]:
    """The central ``mass`` interval of Binomial(trials, p)."""
    pmf = [math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(trials + 1)]
    tail = (1 - mass) / 2
    low = next(k for k in range(trials + 1) if sum(pmf[: k + 1]) > tail)
    high = next(k for k in range(trials, -1, -1) if sum(pmf[k:]) > tail)
    return low, high


@pytest.mark.parametrize("mode", CHEAT_MODES)
def test_which_segments_a_cheat_spoils(cheaters: dict[str, _Judged], mode: str) -> None:
    judged = cheaters[mode]
    assert judged.segments == 17
    bad = {i for i in range(17) if judged.ruling(i).cheater == "provider"}
    assert bad == BAD[mode]
    assert all(judged.ruling(i).cheater is None for i in set(range(17)) - bad)


@pytest.mark.parametrize("mode", CHEAT_MODES)
def test_spot_checks_catch_a_cheat_as_often_as_predicted(
    cheaters: dict[str, _Judged], mode: str
) -> None:
    judged = cheaters[mode]
    # The coordinator would use spot_seed(block hash, root); the root changes with each
    # capture (torch pickles storage addresses), so fixed seeds keep the count reproducible.
    samples = [sample_segments(_block(i), 17, 0.1) for i in range(SAMPLINGS)]
    assert {len(s) for s in samples} == {2}
    caught = sum(judged.caught(s) for s in samples)
    p = detection_probability(17, len(BAD[mode]), 2)
    if p == 1.0:
        assert caught == SAMPLINGS, f"every segment is bad (p = 1): caught {caught}/{SAMPLINGS}"
    else:
        low, high = _binomial_interval(SAMPLINGS, p)
        assert low <= caught <= high, (
            f"predicted p = {p:.3f} ({SAMPLINGS * p:.1f} of {SAMPLINGS}, 99.9% in "
            f"[{low}, {high}]); caught {caught}"
        )
    # A segment that passes cost its own steps (from its checkpoint), not the run's.
    leaves = judged.ran.commitment.leaves
    for segment, ruling in judged.rulings.items():
        if ruling.cheater is None:
            assert ruling.steps_replayed == leaves[segment + 1].step - leaves[segment].step


# -- honest providers ---------------------------------------------------------------------

TINY = """\
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(X, Y), batch_size=8, shuffle=True)
for epoch in range(5):
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""
"""32 rows in batches of 8: 20 steps; every 3: 7 segments, one spot-checked."""


def test_a_hundred_honest_runs_raise_no_dispute(tmp_path: Path) -> None:
    disputes: list[str] = []
    checked = 0
    for seed in range(100):
        ns: dict[str, Any] = namespace(seed=seed, rows=32, hidden=8)
        ran = run_as(tmp_path / f"run-{seed}", None, ns, source=TINY, every=3)[0]
        commitment = ran.commitment
        assert [leaf.step for leaf in commitment.leaves] == [0, 3, 6, 9, 12, 15, 18, 20]
        picked = sample_segments(spot_seed(_block(seed), commitment.root), 7, 0.1)
        for segment in picked:
            ruling = rule_segment(ran.bundle, ran.read_blob, commitment, ran.store, segment)
            checked += 1
            if ruling.cheater is not None:
                disputes.append(f"seed {seed}: {ruling.reason}")
        if seed % 10 == 0:  # replication: a second provider runs the same bundle
            twin = run_as(tmp_path / f"twin-{seed}", None, ns, source=TINY, every=3)[0]
            if twin.commitment.root != commitment.root:
                disputes.append(f"seed {seed}: replication roots differ")
    assert checked == 100
    assert disputes == []


def test_replicated_honest_runs_settle_at_once(tmp_path: Path) -> None:
    ns = namespace(seed=3, rows=32, hidden=8)
    a = run_as(tmp_path / "a", None, ns, source=TINY, every=3)[0]
    b = run_as(tmp_path / "b", None, ns, source=TINY, every=3)[0]
    assert a.commitment.root == b.commitment.root
    with pytest.raises(ValueError, match="no dispute"):
        rule_dispute(a.bundle, a.read_blob, a.commitment, b.commitment, a.store, b.store)
    assert torch.equal(
        a.store.load(20, "end")[0]["modules"]["model"]["0.weight"],
        b.store.load(20, "end")[0]["modules"]["model"]["0.weight"],
    )
