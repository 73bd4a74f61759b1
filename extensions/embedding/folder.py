"""What the serving encoder needs from a sentence-transformers folder, checked up front.

A folder is ``modules.json`` naming a Transformer (a BERT encoder: ``config.json``,
``model.safetensors``, ``tokenizer.json``), a Pooling module and optionally a
Normalize module. Both the builtin all-MiniLM-L6-v2 copy and the folders that
``gateway finetune-router`` saves have this shape. Anything else (a Dense layer, a
non-BERT architecture, weights only as ``pytorch_model.bin``) is refused with a
message that names the problem, instead of being encoded wrongly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class Pooling(StrEnum):
    CLS = "cls"
    MAX = "max"
    MEAN = "mean"
    MEAN_SQRT_LEN = "mean_sqrt_len_tokens"


# sentence-transformers concatenates several pooled vectors in this order
_POOLING_ORDER = (Pooling.CLS, Pooling.MAX, Pooling.MEAN, Pooling.MEAN_SQRT_LEN)
_OLD_POOLING_KEYS = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
}
_NEW_POOLING_NAMES = {
    "cls": Pooling.CLS,
    "max": Pooling.MAX,
    "mean": Pooling.MEAN,
    "mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
}


class ModelFolderError(ValueError):
    """The folder is not a BERT sentence-transformers model the serving encoder can run."""


@dataclass(frozen=True)
class BertConfig:
    """The fields of ``config.json`` the graph depends on."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    layer_norm_eps: float
    pad_token_id: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class ModelFolder:
    root: Path
    transformer: Path  # the folder holding config.json, model.safetensors, tokenizer.json
    config: BertConfig
    pooling: tuple[Pooling, ...]
    normalize: bool  # a Normalize module is listed (the encoder L2-normalises anyway)

    @property
    def weights(self) -> Path:
        return self.transformer / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.transformer / "tokenizer.json"

    @property
    def dim(self) -> int:
        return self.config.hidden_size * len(self.pooling)


def read_model_folder(root: Path) -> ModelFolder:
    """Read and check ``root``; raises ``ModelFolderError`` saying what is unsupported."""
    modules = _read_json(root / "modules.json")
    if not isinstance(modules, list):
        raise ModelFolderError(f"{root}/modules.json: expected a list of modules")
    transformer: Path | None = None
    pooling: tuple[Pooling, ...] | None = None
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = root / str(module.get("path", ""))
        if kind == "Transformer" and transformer is None and pooling is None:
            transformer = path
        elif kind == "Pooling" and transformer is not None and pooling is None:
            pooling = _read_pooling(path / "config.json")
        elif kind == "Normalize" and pooling is not None:
            normalize = True
        else:
            raise ModelFolderError(
                f"{root}: module {module.get('type')!r} at this position is not supported by "
                "the serving encoder (Transformer, Pooling, optional Normalize); "
                "use embedding.backend: torch"
            )
    if transformer is None or pooling is None:
        raise ModelFolderError(f"{root}/modules.json: needs a Transformer and a Pooling module")
    folder = ModelFolder(
        root, transformer, _read_bert_config(transformer / "config.json"), pooling, normalize
    )
    for needed in (folder.weights, folder.tokenizer):
        if not needed.is_file():
            raise ModelFolderError(
                f"{needed} is missing: the serving encoder reads safetensors weights and a "
                "fast-tokenizer file (re-save the model with sentence-transformers)"
            )
    return folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFolderError(f"{path} is missing (not a sentence-transformers folder?)") from exc
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path}: {exc}") from exc


def _read_pooling(path: Path) -> tuple[Pooling, ...]:
    """Both formats: ``pooling_mode_mean_tokens: true`` (before v5) and ``pooling_mode: mean``."""
    raw = _read_json(path)
    if "pooling_mode" in raw:
        name = str(raw["pooling_mode"])
        if name not in _NEW_POOLING_NAMES:
            raise ModelFolderError(f"{path}: pooling_mode {name!r} is not supported")
        return (_NEW_POOLING_NAMES[name],)
    unsupported = [
        k
        for k, v in raw.items()
        if k.startswith("pooling_mode_") and v and k not in _OLD_POOLING_KEYS
    ]
    if unsupported:
        raise ModelFolderError(f"{path}: {', '.join(unsupported)} not supported")
    chosen = {mode for key, mode in _OLD_POOLING_KEYS.items() if raw.get(key)}
    if not chosen:
        raise ModelFolderError(f"{path}: no pooling mode is set")
    return tuple(mode for mode in _POOLING_ORDER if mode in chosen)


def _read_bert_config(path: Path) -> BertConfig:
    raw = _read_json(path)
    checks = {
        "model_type": (raw.get("model_type"), "bert"),
        "hidden_act": (raw.get("hidden_act", "gelu"), "gelu"),
        "position_embedding_type": (raw.get("position_embedding_type", "absolute"), "absolute"),
    }
    for key, (found, wanted) in checks.items():
        if found != wanted:
            raise ModelFolderError(
                f"{path}: {key} is {found!r}; the serving encoder needs "
                f"{wanted!r} (use embedding.backend: torch)"
            )
    config = BertConfig(
        vocab_size=int(raw["vocab_size"]),
        hidden_size=int(raw["hidden_size"]),
        num_hidden_layers=int(raw["num_hidden_layers"]),
        num_attention_heads=int(raw["num_attention_heads"]),
        intermediate_size=int(raw["intermediate_size"]),
        max_position_embeddings=int(raw["max_position_embeddings"]),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(raw.get("pad_token_id") or 0),
    )
    if config.hidden_size % config.num_attention_heads:
        raise ModelFolderError(f"{path}: hidden_size is not a multiple of num_attention_heads")
    return config
