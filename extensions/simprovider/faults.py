"""Fault decisions (pure logic, no I/O).

Each model gets its own ``random.Random`` seeded from the settings seed and the model name,
so a run with the same seed and the same request order faults the same requests. A rule
fires when its ``first_n`` budget is not spent and a draw is below ``rate`` (no draw is
made for ``rate`` 0 or 1). The first rule that fires wins.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping, Sequence

from .settings import FaultKind, FaultRule

FAULT_HEADER = "x-sim-fault"
RETRY_AFTER_HEADER = "x-sim-retry-after-s"
HANG_HEADER = "x-sim-hang-s"
AFTER_CHUNKS_HEADER = "x-sim-after-chunks"


class FaultHeaderError(ValueError):
    """An ``x-sim-*`` fault header has an unusable value."""


def model_seed(seed: int, model: str) -> int:
    """Stable per-model seed (independent of ``PYTHONHASHSEED``)."""
    return (seed * 1_000_003) ^ zlib.crc32(model.encode("utf-8"))


class _ModelFaultState:
    __slots__ = ("fired", "rng")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fired: dict[int, int] = {}


class FaultBook:
    """Per-model RNGs and per-rule counters of faults already injected."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._models: dict[str, _ModelFaultState] = {}

    def reset(self, model: str | None = None) -> None:
        """Forget counters and reseed RNGs (of one model, or of all models)."""
        if model is None:
            self._models.clear()
        else:
            self._models.pop(model, None)

    def fired_counts(self, model: str) -> dict[int, int]:
        """How many times each rule (by index) of ``model`` has fired so far."""
        state = self._models.get(model)
        return dict(state.fired) if state is not None else {}

    def decide(self, model: str, rules: Sequence[FaultRule]) -> FaultRule | None:
        """The rule that fires for this request of ``model``, or ``None``."""
        if not rules:
            return None
        state = self._models.get(model)
        if state is None:
            state = _ModelFaultState(model_seed(self._seed, model))
            self._models[model] = state
        for index, rule in enumerate(rules):
            fired = state.fired.get(index, 0)
            if rule.first_n is not None and fired >= rule.first_n:
                continue
            if rule.rate <= 0.0:
                continue
            if rule.rate < 1.0 and state.rng.random() >= rule.rate:
                continue
            state.fired[index] = fired + 1
            return rule
        return None


def header_number(headers: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    """A numeric request header within [low, high], or None when absent."""
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FaultHeaderError(f"header {name} must be a number, got {raw!r}") from None
    if math.isnan(value) or not low <= value <= high:
        raise FaultHeaderError(f"header {name} must be between {low} and {high}, got {raw!r}")
    return value


def fault_from_headers(headers: Mapping[str, str]) -> FaultRule | None:
    """A fault forced by ``x-sim-fault`` (with optional ``x-sim-retry-after-s``,
    ``x-sim-hang-s``, ``x-sim-after-chunks``), or ``None``. Header names must be lower-case
    in ``headers`` (Starlette's ``Headers`` is case-insensitive anyway)."""
    raw = headers.get(FAULT_HEADER)
    if raw is None or not raw.strip():
        return None
    try:
        kind = FaultKind(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(k.value for k in FaultKind)
        raise FaultHeaderError(
            f"header {FAULT_HEADER} must be one of {allowed}, got {raw!r}"
        ) from None
    fields: dict[str, object] = {"kind": kind}
    retry_after = header_number(headers, RETRY_AFTER_HEADER, 0.0, 3600.0)
    if retry_after is not None:
        fields["retry_after_s"] = retry_after
    hang = header_number(headers, HANG_HEADER, 0.0, 86400.0)
    if hang is not None:
        fields["hang_s"] = hang
    after = header_number(headers, AFTER_CHUNKS_HEADER, 0.0, 100000.0)
    if after is not None:
        fields["after_chunks"] = int(after)
    return FaultRule.model_validate(fields)


ERROR_STATUS: dict[FaultKind, int] = {
    FaultKind.HTTP_500: 500,
    FaultKind.HTTP_503: 503,
    FaultKind.HTTP_429: 429,
}


def error_status(rule: FaultRule | None) -> int | None:
    """HTTP status an error-response fault answers with (``None`` for other faults)."""
    if rule is None:
        return None
    return ERROR_STATUS.get(rule.kind)
