"""Fine-tune a cross-encoder verifier on labelled pairs (commands only: imports torch).

The encoder starts from a sentence-transformers BERT folder (by default the
gateway's own encoder); a logistic layer over its mean-pooled output is trained
with it, end to end, on ``[CLS] text_a [SEP] text_b [SEP]`` (one segment id, so the
lean ONNX graph runs it unchanged). Batches are drawn shuffled, then sorted by
length within windows of 50 batches so that little of each batch is padding.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extensions.cache.cross_encoder import HEAD_FILE, PairHead, pair_encoding
from extensions.cache.folds import LabelledPair
from extensions.embedding.folder import read_model_folder
from extensions.embedding.onnx_encoder import bert_tokenizer

WINDOW = 50  # batches sorted by length together
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


@dataclass(frozen=True)
class Schedule:
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 4e-5
    warmup: float = 0.06  # share of the steps
    max_tokens: int = 64
    seed: int = 0


def batches(lengths: Sequence[int], schedule: Schedule) -> list[list[int]]:
    """Shuffled indices in batches of about equal length, ``epochs`` times over (a fraction
    of an epoch is a prefix of the last one)."""
    rng = random.Random(schedule.seed)
    size = schedule.batch_size
    out: list[list[int]] = []
    for _ in range(math.ceil(schedule.epochs)):
        order = list(range(len(lengths)))
        rng.shuffle(order)
        epoch: list[list[int]] = []
        for start in range(0, len(order), size * WINDOW):
            window = sorted(order[start : start + size * WINDOW], key=lambda i: lengths[i])
            group = [window[i : i + size] for i in range(0, len(window), size)]
            rng.shuffle(group)
            epoch += group
        out += epoch
    per_epoch = math.ceil(len(lengths) / size)
    return out[: max(1, round(per_epoch * schedule.epochs))]


def fit_cross_encoder(
    pairs: Sequence[LabelledPair],
    base: Path,
    out: Path,
    card: dict[str, Any],
    schedule: Schedule,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Train on ``pairs`` from the sentence-transformers BERT folder ``base`` and write the
    verifier folder ``out``."""
    import torch
    from transformers import AutoModel

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)  # before the training: a bad path fails now
    torch.manual_seed(schedule.seed)
    folder = read_model_folder(base)
    # the serving tokenizer, so that training and serving cut and join pairs the same way
    tokenizer, pad = bert_tokenizer(folder, schedule.max_tokens)
    encoder = AutoModel.from_pretrained(str(folder.transformer))
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    params = [*encoder.parameters(), *head.parameters()]
    optimiser = torch.optim.AdamW(params, lr=schedule.learning_rate, weight_decay=0.01)
    plan = batches([len(p.a) + len(p.b) for p in pairs], schedule)
    warm = max(1, int(schedule.warmup * len(plan)))

    def rate(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (len(plan) - step) / max(1, len(plan) - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    encoder.train()
    losses: list[float] = []
    for step, batch in enumerate(plan):
        ids, mask = batch_tensors(tokenizer, [pairs[i] for i in batch], pad)
        logits = pair_logits(encoder, head, ids, mask)
        target = torch.tensor([float(pairs[i].label) for i in batch])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        scheduler.step()
        optimiser.zero_grad()
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == len(plan):
            elapsed = time.monotonic() - started
            mean = sum(losses) / len(losses)
            progress(f"step {step + 1}/{len(plan)}: loss {mean:.3f}, {elapsed:.0f} s")
            losses.clear()
    encoder.save_pretrained(str(out), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (folder.transformer / name).is_file():
            shutil.copyfile(folder.transformer / name, out / name)
    _write_sentence_transformers_modules(out, int(encoder.config.hidden_size))
    labels = np.array([p.label for p in pairs])
    trained = {
        **card,
        "base": str(base),
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "epochs": schedule.epochs,
        "batch_size": schedule.batch_size,
        "learning_rate": schedule.learning_rate,
        "seed": schedule.seed,
        "steps": len(plan),
        "train_seconds": round(time.monotonic() - started, 1),
    }
    weight = head.weight.detach().numpy().reshape(-1).astype(np.float32)
    pair_head = PairHead(weight, float(head.bias.detach()[0]), schedule.max_tokens, trained)
    (out / HEAD_FILE).write_text(pair_head.to_json(), encoding="utf-8")


def batch_tensors(tokenizer: Any, pairs: Sequence[LabelledPair], pad: int) -> tuple[Any, Any]:
    """Token ids of the pairs as serving tokenises them (``b`` the query, ``a`` the cached
    question), padded to the longest of the batch, and the attention mask (torch)."""
    import torch

    encoded = [pair_encoding(tokenizer, p.b, p.a).ids for p in pairs]
    ids = torch.full((len(encoded), max(map(len, encoded))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids, mask


def pair_logits(encoder: Any, head: Any, ids: Any, mask: Any) -> Any:
    """The logit per pair: one segment id (the ONNX graph folds in segment 0), mean pooling
    over real tokens, the linear head."""
    import torch

    hidden = encoder(
        input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
    ).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    return head((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)).squeeze(-1)


def _write_sentence_transformers_modules(out: Path, width: int) -> None:
    """Transformer at the root, mean pooling: the shape ``read_model_folder`` accepts."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (out / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": width, "pooling_mode_mean_tokens": True}
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")
