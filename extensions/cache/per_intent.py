"""Per-router and per-intent thresholds from labelled pairs, as YAML to paste.

Pairs carrying ``router`` (and ``intent``) are grouped; for each group the
lowest cosine threshold whose pairwise precision (with the configured verifier)
meets the target is proposed for ``routers.<r>.intents[].cache.threshold`` (or
``routers.<r>.cache.threshold`` for pairs with a router and no intent). Groups
with too few pairs, or where no threshold meets the target, keep what they
inherit and say why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from extensions.cache.bootstrap import intervals
from extensions.cache.calibrate import GRID, Scored
from extensions.cache.pairs import Pair
from extensions.cache.verifiers import passes


@dataclass(frozen=True)
class GroupThreshold:
    router: str
    intent: str | None
    pairs: int
    positives: int
    weak_labels: int  # labels inferred from answer similarity
    threshold: float | None  # None: keep the inherited threshold
    precision: float = 0.0
    recall: float = 0.0
    precision_ci: tuple[float, float] = (0.0, 0.0)
    note: str = ""


def per_group(
    pairs: Sequence[Pair],
    scored: Sequence[Scored],
    min_score: float,
    target: float,
    min_pairs: int = 20,
    resamples: int = 1000,
    seed: int = 0,
) -> list[GroupThreshold]:
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        if p.router:
            groups[(p.router, p.intent)].append(i)
    out = []
    for (router, intent), rows in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        labels = np.array([scored[i].label for i in rows], dtype=bool)
        cosine = np.array([scored[i].cosine for i in rows])
        verified = np.array([passes(scored[i].verdict, min_score) for i in rows], dtype=bool)
        weak = sum(pairs[i].weak for i in rows)
        base = GroupThreshold(router, intent, len(rows), int(labels.sum()), weak, None)
        if len(rows) < min_pairs or not labels.any():
            note = f"{len(rows)} pairs, {int(labels.sum())} same: too few (need {min_pairs})"
            out.append(replace(base, note=note))
            continue
        chosen = None
        for t in GRID:
            hit = (cosine >= t) & verified
            if hit.any() and labels[hit].mean() >= target:
                chosen = (t, hit)
                break
        if chosen is None:
            out.append(replace(base, note=f"no threshold reaches precision {target}"))
            continue
        t, hit = chosen
        (ci,) = intervals({"p": (labels & hit, hit.astype(float))}, resamples, seed).values()
        precision = float(labels[hit].mean())
        recall = float(labels[hit].sum() / labels.sum())
        out.append(replace(base, threshold=t, precision=precision, recall=recall, precision_ci=ci))
    return out


def yaml_snippet(results: Sequence[GroupThreshold], target: float, verifier: str) -> str:
    """``routers:`` entries to merge into gateway.yaml (intents matched by name)."""
    lines = [
        f"# gateway calibrate-cache --by-intent: target precision {target}, verifier {verifier}",
        "# merge into gateway.yaml (intents are matched by name)",
        "routers:",
    ]
    by_router: dict[str, list[GroupThreshold]] = defaultdict(list)
    for r in results:
        by_router[r.router].append(r)
    for router, rows in by_router.items():
        lines.append(f"  {router}:")
        for r in rows:
            if r.intent is None:
                lines.append(_router_line(r))
        intents = [r for r in rows if r.intent is not None]
        if intents:
            lines.append("    intents:")
        for r in intents:
            evidence = _evidence(r)
            if r.threshold is None:
                lines.append(f"      # {r.intent}: {r.note}; keeps its inherited threshold")
                continue
            lines += [
                f"      - name: {r.intent}",
                "        cache:",
                f"          threshold: {r.threshold:.2f}  # {evidence}",
            ]
    return "\n".join(lines) + "\n"


def _router_line(r: GroupThreshold) -> str:
    if r.threshold is None:
        return f"    # cache: {r.note}; keeps the global threshold"
    return f"    cache: {{threshold: {r.threshold:.2f}}}  # {_evidence(r)}"


def _evidence(r: GroupThreshold) -> str:
    weak = f", {r.weak_labels} weak labels" if r.weak_labels else ""
    low, high = r.precision_ci
    return (
        f"{r.pairs} pairs ({r.positives} same{weak}), precision {r.precision:.2f} "
        f"[{low:.2f}, {high:.2f}], recall {r.recall:.2f}"
    )
