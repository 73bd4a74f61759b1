"""The shipped background corpus of generic off-topic requests ("outlier exposure").

A router with few or no out-of-scope examples learns what "off-topic" looks like from
these lines, added to its ``oos`` class. Lines too close to the router's own intents
(a general assistant's router has a weather intent; "will it rain this weekend" is not
off-topic there) are dropped first: a line goes when its nearest in-scope example is
more similar than ``max_similarity``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL, Matrix
from extensions.router.examples import BACKGROUND_SOURCE, Example
from extensions.router.settings import BackgroundCorpus

CORPUS = "data/off_topic.txt"
EncodeSync = Callable[[list[str]], Matrix]


def corpus_lines() -> list[str]:
    """The shipped lines (comments and blank lines skipped)."""
    text = resources.files("extensions.router").joinpath(CORPUS).read_text("utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def far_enough(
    candidates: Matrix, in_scope: Matrix, max_similarity: float
) -> npt.NDArray[np.bool_]:
    """Which candidate rows are at most ``max_similarity`` (cosine) from every in-scope row."""
    if len(candidates) == 0 or len(in_scope) == 0:
        return np.ones(len(candidates), dtype=bool)
    nearest = np.full(len(candidates), -1.0, dtype=np.float32)
    for start in range(0, len(in_scope), 4096):  # bounded memory for large routers
        block = candidates @ in_scope[start : start + 4096].T
        np.maximum(nearest, block.max(axis=1), out=nearest)
    return nearest <= max_similarity


@dataclass(frozen=True)
class Background:
    """Generic off-topic lines added to the ``oos`` class, minus those near an intent."""

    texts: tuple[str, ...] = ()
    max_similarity: float = 0.6

    @classmethod
    def from_settings(cls, settings: BackgroundCorpus) -> Background:
        if not settings.enabled:
            return cls()
        return cls(tuple(corpus_lines()), settings.max_similarity)


NO_BACKGROUND = Background()


def with_background(
    examples: Sequence[Example], x: Matrix, encode: EncodeSync, background: Background
) -> tuple[list[Example], Matrix]:
    """``examples`` plus the background lines far enough from every in-scope example."""
    if not background.texts:
        return list(examples), x
    bx = encode(list(background.texts))
    in_scope = np.array([e.label != OOS_LABEL for e in examples], dtype=bool)
    keep = far_enough(bx, x[in_scope], background.max_similarity)
    extra = [
        Example(t, OOS_LABEL, BACKGROUND_SOURCE)
        for t, k in zip(background.texts, keep, strict=True)
        if k
    ]
    return list(examples) + extra, np.concatenate([x, bx[keep]])
