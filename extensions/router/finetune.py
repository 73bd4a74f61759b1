"""``gateway finetune-router``: fine-tune the small encoder on a router's examples, on the CPU.

Recipe: the sentence-transformers encoder plus a cosine-softmax head
(logits = scale · cos(embedding, class weight)) trained with cross-entropy; the
word-embedding matrix stays frozen; AdamW with linear warm-up and decay; batches
bucketed by length (less padding). Out-of-scope examples, if any, are a class of
their own. The result is a sentence-transformers folder that ``embedding.model`` in
gateway.yaml can point to; the gateway then trains its usual head and fits its
thresholds on top.

The examples may include background lines (label ``oos``). The encoder is fine-tuned
without the share that the gateway fits its thresholds on with
``thresholds.calibration: holdout`` (``training.calibration_mask``), so those are
examples it never saw: a fine-tuned encoder is over-confident on its own training
data, and cross-validation over examples it was trained on would be too.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from extensions.embedding.encoder import resolve_model_path
from extensions.router.calibration import calibration_mask
from extensions.router.examples import Example


@dataclass(frozen=True)
class FineTuneSettings:
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-2
    warmup_share: float = 0.1
    max_seq_length: int = 32
    scale: float = 30.0
    margin: float = 0.0  # additive cosine margin on the true class (CosFace); 0: plain
    seed: int = 0
    threads: int = 2


def _batches(examples: Sequence[Example], size: int, rng: random.Random) -> list[list[Example]]:
    order = list(examples)
    rng.shuffle(order)
    window = size * 20  # sort by length inside windows: similar lengths share a batch
    batches: list[list[Example]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda e: len(e.text))
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return [b for b in batches if len(b) > 1]


def fine_tune(
    model: str,
    examples: Sequence[Example],
    out_dir: Path,
    settings: FineTuneSettings = FineTuneSettings(),
    progress: bool = False,
    hold_out_calibration: bool = True,
) -> Path:
    """Fine-tune ``model`` (``builtin:…`` or a folder) and save it to ``out_dir``.

    ``hold_out_calibration=False`` uses every example (when thresholds are fitted on
    a separate validation set instead).
    """
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm

    if hold_out_calibration:  # keep the gateway's calibration share unseen
        held = calibration_mask(examples)
        examples = [e for e, h in zip(examples, held, strict=True) if not h]
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    st = SentenceTransformer(str(resolve_model_path(model)), device="cpu")
    st.max_seq_length = settings.max_seq_length
    st.train()
    st[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    labels = sorted({e.label for e in examples})
    index = {label: i for i, label in enumerate(labels)}
    dim = int(st.get_embedding_dimension())
    head = torch.nn.Linear(dim, len(labels), bias=False)
    torch.nn.init.normal_(head.weight, std=0.02)
    optimiser = torch.optim.AdamW(
        [
            {
                "params": [p for p in st.parameters() if p.requires_grad],
                "lr": settings.learning_rate,
            },
            {"params": head.parameters(), "lr": settings.head_learning_rate},
        ],
        weight_decay=0.01,
    )
    steps_per_epoch = max(1, len(examples) // settings.batch_size)
    total = max(1, math.ceil(steps_per_epoch * settings.epochs))
    warm = int(total * settings.warmup_share)

    def rate(s: int) -> float:  # linear warm-up, then linear decay to zero
        return (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    started = time.perf_counter()
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not progress)
    step = 0
    while step < total:
        for batch in _batches(examples, settings.batch_size, rng):
            features = st.tokenize([e.text for e in batch])
            embedded = st[1](st[0](features))["sentence_embedding"]
            cos = F.normalize(embedded, dim=-1) @ F.normalize(head.weight, dim=-1).T
            target = torch.tensor([index[e.label] for e in batch])
            cos = cos - settings.margin * F.one_hot(target, len(labels))
            loss = F.cross_entropy(settings.scale * cos, target)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= total:
                break
    bar.close()
    st.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    st.save(str(out_dir))
    meta = {
        "base_model": model,
        "labels": labels,
        "examples": len(examples),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": asdict(settings),
    }
    (out_dir / "gateway_finetune.json").write_text(json.dumps(meta, indent=2))
    return out_dir
