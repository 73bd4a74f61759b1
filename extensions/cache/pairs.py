"""Labelled question pairs for calibration, from the three files an operator may have.

- TSV or CSV with a header: ``text_a, text_b, label`` and optionally ``router``
  and ``intent`` (``text_a`` is the cached question, ``text_b`` the new one;
  label 1 = same question);
- YAML: ``pairs:`` a list of ``{text_a, text_b, label, router?, intent?}``;
- JSON lines written by shadow mode (``shadow``): each a candidate the cache
  found, labelled by a reviewer (``label``) or, failing that, by how alike the
  cached and the fresh answers were (``answer_similarity``: a weak label).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from extensions.cache.shadow import ShadowRecord
from extensions.config.base import StrictModel


class PairsError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    a: str  # the cached question
    b: str  # the new question
    label: int  # 1: same question
    router: str | None = None
    intent: str | None = None
    weak: bool = False  # label inferred from the answers, not given


class PairRow(StrictModel):
    text_a: str = Field(min_length=1)
    text_b: str = Field(min_length=1)
    label: int = Field(ge=0, le=1)
    router: str | None = None
    intent: str | None = None


class PairsFile(StrictModel):
    """A YAML file of labelled pairs."""

    pairs: list[PairRow] = Field(min_length=1)


def read_pairs(path: Path, answer_agreement: float = 0.9) -> list[Pair]:
    """Any of the three formats, by extension (``.yaml``/``.yml``, ``.jsonl``, else TSV/CSV)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PairsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix in {".yaml", ".yml"}:
        pairs = _from_yaml(path, text)
    elif path.suffix == ".jsonl":
        pairs = _from_shadow(path, text, answer_agreement)
    else:
        pairs = _from_table(path, text)
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    return pairs


def _from_table(path: Path, text: str) -> list[Pair]:
    first = text.split("\n", 1)[0]
    if "\t" in first:  # QQP-style TSV: quotes are part of the text
        reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.DictReader(text.splitlines())
    missing = {"text_a", "text_b", "label"} - set(reader.fieldnames or [])
    if missing:
        raise PairsError(f"{path}: missing columns {sorted(missing)} (need text_a, text_b, label)")
    pairs = []
    for n, row in enumerate(reader, start=2):
        label = (row.get("label") or "").strip()
        if label not in {"0", "1"}:
            raise PairsError(f"{path}, line {n}: label must be 0 or 1 (got {label!r})")
        if row["text_a"] and row["text_b"]:
            pairs.append(
                Pair(
                    row["text_a"],
                    row["text_b"],
                    int(label),
                    row.get("router") or None,
                    row.get("intent") or None,
                )
            )
    return pairs


def _from_yaml(path: Path, text: str) -> list[Pair]:
    try:
        raw = yaml.safe_load(text)
        parsed = PairsFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise PairsError(f"{path}: not YAML ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PairsError(f"{path}: {where}: {first['msg']}") from exc
    return [Pair(r.text_a, r.text_b, r.label, r.router, r.intent) for r in parsed.pairs]


def _from_shadow(path: Path, text: str, answer_agreement: float) -> list[Pair]:
    pairs = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = ShadowRecord.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise PairsError(f"{path}, line {n}: not a shadow record ({exc})") from exc
        label, weak = record.label, False
        if label is None and record.answer_similarity is not None:
            label, weak = int(record.answer_similarity >= answer_agreement), True
        if label is not None:
            pairs.append(
                Pair(record.cached_query, record.query, label, record.router, record.intent, weak)
            )
    return pairs
