"""Numbers and durations as the monitor writes them (the TypeScript side matches)."""

from __future__ import annotations

import math

__all__ = ["Rate", "fmt_duration", "fmt_int", "fmt_value"]


def fmt_duration(seconds: float | None) -> str:
    """``4.2 s``, ``12:05``, ``1:02:03``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_int(n: int | None) -> str:
    """``12,345``; ``-`` when unknown."""
    return "-" if n is None else f"{n:,}"


def fmt_value(v: float | None) -> str:
    """A metric value with 4 significant digits; ``-`` when unknown."""
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


class Rate:
    """Steps per second over a sliding window of ``(elapsed, steps)`` samples.

    The time base is the elapsed seconds the caller passes, so the rate is
    as exact (and as testable) as those.
    """

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def update(self, elapsed: float, steps: int) -> float | None:
        """Record a sample and return the current rate (None until it is known)."""
        if self._samples and elapsed < self._samples[-1][0]:
            self._samples.clear()  # a new time base
        if self._samples and steps < self._samples[-1][1]:
            self._samples.clear()  # re-queued from a checkpoint: start over
        if len(self._samples) >= 2 and elapsed - self._samples[-2][0] < 0.1:
            self._samples[-1] = (elapsed, steps)  # at most ~10 samples a second
        else:
            self._samples.append((elapsed, steps))
        while len(self._samples) > 2 and self._samples[1][0] <= elapsed - self.window:
            self._samples.pop(0)
        return self.value

    @property
    def value(self) -> float | None:
        """Steps per second over the window, None before 0.5 s of samples with progress."""
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.5 or (s1 == s0 == 0):
            return None
        return (s1 - s0) / (t1 - t0)
