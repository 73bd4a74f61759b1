"""Labelled utterances from files: CSV (``text,label``) or the CLINC150 / BANKING77-OOS
JSON layouts. ``FILE:split+split`` picks JSON splits; without it, a role's default."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from extensions.router.classifier import OOS_LABEL
from extensions.router.examples import Example

# default JSON splits per role, by layout (recognised by the keys present)
_LAYOUTS = {
    "clinc150": (
        {"train", "val", "oos_train", "oos_val"},
        {"train": ["train", "oos_train"], "eval": ["val", "oos_val"]},
    ),
    "banking77_oos": (
        {"train", "valid", "id_oos_valid", "ood_oos_valid"},
        {"train": ["train"], "eval": ["valid", "id_oos_valid", "ood_oos_valid"]},
    ),
}
LABEL_COLUMNS = ("label", "intent", "category")


class DatasetError(ValueError):
    pass


def _normalise(label: str) -> str:
    label = label.strip()
    return OOS_LABEL if label.lower() in {"oos", "out_of_scope", "ood"} else label


def read_csv(path: Path) -> list[Example]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        label_col = next((c for c in LABEL_COLUMNS if c in fields), None)
        if "text" not in fields or label_col is None:
            raise DatasetError(f"{path}: needs a header with 'text' and 'label' (got {fields})")
        return [
            Example(row["text"], _normalise(row[label_col])) for row in reader if row.get("text")
        ]


def read_json(path: Path, splits: list[str] | None, role: str) -> list[Example]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object of splits")
    if splits is None:
        for keys, defaults in _LAYOUTS.values():
            if keys <= set(data):
                splits = defaults[role]
                break
        else:
            raise DatasetError(
                f"{path}: unknown layout; name the splits as {path.name}:a+b "
                f"(available: {', '.join(sorted(data))})"
            )
    out: list[Example] = []
    for split in splits:
        if split not in data:
            raise DatasetError(f"{path}: no split '{split}' (available: {', '.join(sorted(data))})")
        for item in data[split]:
            text, label = item[0], item[1]
            out.append(Example(str(text), _normalise(str(label)), source=split))
    return out


def load_examples(spec: str, role: str = "train") -> list[Example]:
    """``role`` is ``train`` or ``eval``: which JSON splits are read by default."""
    path_part, _, split_part = spec.partition(":")
    path = Path(path_part)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.suffix.lower() in {".csv", ".tsv"}:
        return read_csv(path)
    splits = split_part.split("+") if split_part else None
    return read_json(path, splits, role)
