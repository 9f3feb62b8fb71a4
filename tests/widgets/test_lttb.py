"""LTTB: the downsampling behind the live chart's long runs and the saved snapshot."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gensyn_jupyter.widgets import _lttb, lttb


def reference_lttb(data: list[tuple[float, float]], threshold: int) -> list[tuple[float, float]]:
    """Steinarsson's reference implementation (flot-downsample), transcribed."""
    n = len(data)
    if threshold >= n or threshold == 0:
        return data
    sampled = [data[0]]
    every = (n - 2) / (threshold - 2)
    a = 0
    for i in range(threshold - 2):
        avg_start = math.floor((i + 1) * every) + 1
        avg_end = min(math.floor((i + 2) * every) + 1, n)
        avg_x = sum(p[0] for p in data[avg_start:avg_end]) / (avg_end - avg_start)
        avg_y = sum(p[1] for p in data[avg_start:avg_end]) / (avg_end - avg_start)
        range_offs = math.floor(i * every) + 1
        range_to = math.floor((i + 1) * every) + 1
        ax, ay = data[a]
        max_area = -1.0
        next_a = range_offs
        for j in range(range_offs, range_to):
            area = abs((ax - avg_x) * (data[j][1] - ay) - (ax - data[j][0]) * (avg_y - ay)) * 0.5
            if area > max_area:
                max_area = area
                next_a = j
        sampled.append(data[next_a])
        a = next_a
    sampled.append(data[n - 1])
    return sampled


def test_keeps_first_and_last_point_and_returns_threshold_points() -> None:
    x = list(range(1000))
    y = [math.sin(i / 30) for i in x]
    xs, ys = lttb(x, y, 100)
    assert len(xs) == len(ys) == 100
    assert (xs[0], ys[0]) == (0, y[0])
    assert (xs[-1], ys[-1]) == (999, y[-1])
    assert xs == sorted(xs)


def test_a_short_line_comes_back_unchanged() -> None:
    assert lttb([1, 2, 3], [4.0, 5.0, 6.0], 3) == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert lttb([], [], 10) == ([], [])


def test_a_spike_survives_downsampling() -> None:
    y = [0.0] * 10_000
    y[4321] = 50.0
    y[7000] = -30.0
    xs, ys = lttb(list(range(10_000)), y, 50)
    assert 50.0 in ys and -30.0 in ys
    assert xs[ys.index(50.0)] == 4321


def test_docstring_example() -> None:
    assert lttb([0, 1, 2, 3, 4], [0, 5, 0, 0, 0], 3) == ([0.0, 1.0, 4.0], [0.0, 5.0, 0.0])


@pytest.mark.parametrize(("n", "threshold"), [(50, 10), (1000, 37), (5000, 200)])
def test_matches_the_reference_implementation(n: int, threshold: int) -> None:
    rng = random.Random(n)
    data = [(float(i), rng.gauss(0, 1) + i / 100) for i in range(n)]
    expected = reference_lttb(data, threshold)
    xs, ys = lttb([p[0] for p in data], [p[1] for p in data], threshold)
    assert list(zip(xs, ys, strict=True)) == expected


def test_the_numpy_path_picks_the_same_points(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    x = np.arange(20_000, dtype=np.float64)
    y = np.cumsum(rng.normal(size=20_000))
    plain = lttb(x.tolist(), y.tolist(), 300)
    monkeypatch.setattr(_lttb, "_NUMPY_MIN_BUCKET", 0)
    assert lttb(x.tolist(), y.tolist(), 300) == plain
    expected = reference_lttb(list(zip(x.tolist(), y.tolist(), strict=True)), 300)
    assert list(zip(*plain, strict=True)) == expected


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        lttb([1, 2, 3, 4], [1, 2, 3, 4], 2)
    with pytest.raises(ValueError, match="differ in length"):
        lttb([1, 2, 3], [1, 2], 3)
