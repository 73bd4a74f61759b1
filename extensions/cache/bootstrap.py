"""Seeded percentile-bootstrap confidence intervals for ratios of sums.

Each unit (a looked-up question, a pair) contributes a numerator and a
denominator; a resample draws units with replacement and recomputes
``sum(num) / sum(den)``. All ratios of one report share the same resamples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

Counts = npt.NDArray[np.float64]


def intervals(
    ratios: Mapping[str, tuple[Counts, Counts]],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 50,
) -> dict[str, tuple[float, float]]:
    """``{name: (low, high)}`` for each ``name: (numerators, denominators)`` (same units)."""
    sizes = {len(num) for num, den in ratios.values()} | {len(den) for _, den in ratios.values()}
    if len(sizes) != 1:
        raise ValueError("every ratio needs one numerator and one denominator per unit")
    n = sizes.pop()
    if n == 0 or resamples < 1:
        return {name: (0.0, 0.0) for name in ratios}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[Counts]] = {name: [] for name in ratios}
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(size, n))
        for name, (num, den) in ratios.items():
            top = np.asarray(num, dtype=np.float64)[idx].sum(axis=1)
            bottom = np.asarray(den, dtype=np.float64)[idx].sum(axis=1)
            draws[name].append(np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0))
        done += size
    tail = (1.0 - level) / 2 * 100
    out = {}
    for name, parts in draws.items():
        values = np.concatenate(parts)
        low, high = np.percentile(values, [tail, 100 - tail])
        out[name] = (float(low), float(high))
    return out
