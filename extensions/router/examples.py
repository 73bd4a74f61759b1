"""A router's labelled examples: where they come from (YAML, example files) and how they
are split (stratified, per label)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL
from extensions.router.decide import DEFAULT_INTENT
from extensions.router.settings import Router

BACKGROUND_SOURCE = "background"


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str = ""  # the file split it came from, for per-source figures


def read_examples_file(path: Path) -> list[str]:
    """One example per line; blank lines and lines starting with '#' are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def router_examples(router: Router, base_dir: Path) -> list[Example]:
    """Every labelled example of a router: intents, ``default`` and out-of-scope."""
    out: list[Example] = []
    for intent in router.intents:
        texts = list(intent.examples)
        if intent.examples_file is not None:
            texts += read_examples_file(base_dir / intent.examples_file)
        out += [Example(t, intent.name) for t in texts]
    out += [Example(t, DEFAULT_INTENT) for t in router.default.examples]
    out += [Example(t, OOS_LABEL) for t in router.out_of_scope.examples]
    return out


def held_out_mask(labels: Sequence[str], share: float, seed: int = 0) -> npt.NDArray[np.bool_]:
    """A stratified ``share`` of each label (at least one, if the label has two or more)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    mask = np.zeros(len(labels), dtype=bool)
    for label in sorted(by_label):
        rows = by_label[label]
        order = rng.permutation(len(rows))
        n_held = max(round(len(rows) * share), 1) if len(rows) > 1 else 0
        mask[[rows[i] for i in order[:n_held]]] = True
    return mask


def stratified_split(
    examples: Sequence[Example], share: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out ``share`` of each label (at least one, if the label has two or more)."""
    mask = held_out_mask([e.label for e in examples], share, seed)
    return (
        [e for e, m in zip(examples, mask, strict=True) if not m],
        [e for e, m in zip(examples, mask, strict=True) if m],
    )
