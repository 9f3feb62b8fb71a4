"""Largest-Triangle-Three-Buckets downsampling (Steinarsson 2013)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["finite_xy", "lttb", "lttb_arrays"]

_F64 = NDArray[np.float64]

# Below this many input points per output bucket a plain Python loop beats a
# numpy call per bucket (numpy costs a few microseconds per call, a Python
# step well under one).
_NUMPY_MIN_BUCKET = 32


def lttb(x: Sequence[float], y: Sequence[float], threshold: int) -> tuple[list[float], list[float]]:
    """Downsample a line to ``threshold`` points that keep its visual shape.

    Largest-Triangle-Three-Buckets: the first and last points are kept; the
    points between are cut into ``threshold - 2`` buckets of (almost) equal
    count, and from each bucket the point forming the largest triangle with
    the point kept from the previous bucket and the average of the next
    bucket is kept. Peaks and dips survive; flat stretches thin out. O(n).

    Parameters
    ----------
    x, y
        The line, ``x`` ascending (steps). Equal lengths.
    threshold
        How many points to keep, at least 3. When the line has no more points
        than this it is returned unchanged.

    Returns
    -------
    tuple of list of float
        The kept ``x`` and ``y`` values, in order.

    Examples
    --------
    >>> lttb([0, 1, 2, 3, 4], [0, 5, 0, 0, 0], 3)
    ([0.0, 1.0, 4.0], [0.0, 5.0, 0.0])
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} != {len(y)})")
    xs, ys = lttb_arrays(
        np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), threshold
    )
    return xs.tolist(), ys.tolist()


def lttb_arrays(x: _F64, y: _F64, threshold: int) -> tuple[_F64, _F64]:
    """:func:`lttb` on float64 arrays, returning arrays (no list round trip)."""
    if threshold < 3:
        raise ValueError(f"threshold must be at least 3, not {threshold}")
    n = len(x)
    if n <= threshold:
        return x.copy(), y.copy()
    every = (n - 2) / (threshold - 2)
    # Bucket i (0-based, of threshold - 2) covers [bounds[i], bounds[i + 1]).
    bounds = [math.floor(i * every) + 1 for i in range(threshold - 1)]
    bounds[-1] = n - 1
    # Averages of every bucket, plus the last point as the "next bucket" of
    # the last one, exactly as the reference implementation does.
    starts = np.asarray(bounds[:-1], dtype=np.intp)
    counts = np.diff(np.asarray(bounds, dtype=np.intp))
    avg_x = np.append(np.add.reduceat(x[: n - 1], starts) / counts, x[n - 1])
    avg_y = np.append(np.add.reduceat(y[: n - 1], starts) / counts, y[n - 1])
    if n >= _NUMPY_MIN_BUCKET * threshold:
        keep = _select_numpy(x, y, bounds, avg_x, avg_y)
    else:
        keep = _select_python(x.tolist(), y.tolist(), bounds, avg_x.tolist(), avg_y.tolist())
    idx = np.asarray(keep, dtype=np.intp)
    return x[idx], y[idx]


def _select_python(
    x: list[float], y: list[float], bounds: list[int], avg_x: list[float], avg_y: list[float]
) -> list[int]:
    keep = [0]
    a = 0
    for i in range(len(bounds) - 1):
        ax, ay = x[a], y[a]
        cx, cy = avg_x[i + 1], avg_y[i + 1]
        # Twice the triangle area is |(ax - cx)(by - ay) - (ax - bx)(cy - ay)|.
        best = -1.0
        chosen = bounds[i]
        for j in range(bounds[i], bounds[i + 1]):
            area = abs((ax - cx) * (y[j] - ay) - (ax - x[j]) * (cy - ay))
            if area > best:
                best = area
                chosen = j
        keep.append(chosen)
        a = chosen
    keep.append(len(x) - 1)
    return keep


def _select_numpy(x: _F64, y: _F64, bounds: list[int], avg_x: _F64, avg_y: _F64) -> list[int]:
    keep = [0]
    a = 0
    next_x, next_y = avg_x.tolist(), avg_y.tolist()
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        ax, ay = x.item(a), y.item(a)
        cx, cy = next_x[i + 1], next_y[i + 1]
        area = np.abs((ax - cx) * (y[lo:hi] - ay) - (ax - x[lo:hi]) * (cy - ay))
        a = lo + int(area.argmax())
        keep.append(a)
    keep.append(len(x) - 1)
    return keep


def finite_xy(x: _F64, y: _F64) -> tuple[_F64, _F64]:
    """Drop the points whose value is NaN or infinite (they break a line anyway)."""
    ok = np.isfinite(y)
    if bool(ok.all()):
        return x, y
    return x[ok], y[ok]
