"""The cross-encoder verifier: the folder training writes, serving it without torch (the
same probabilities as the trained PyTorch model), the verdicts, the settings, and the
held-out fold a calibration measures such a model on."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from extensions.cache.commands import _held_out, _hold_out
from extensions.cache.cross_encoder import (
    HEAD_FILE,
    CrossEncoderError,
    PairHead,
    load_cross_encoder,
    pair_encoding,
)
from extensions.cache.pairs import Pair
from extensions.cache.settings import SemanticCache, Verification, Verifier, VerifierKind
from extensions.cache.train_cross_encoder import (
    Schedule,
    _write_sentence_transformers_modules,
    batch_tensors,
    batches,
    fit_cross_encoder,
    pair_logits,
)
from extensions.cache.verifiers import (
    LOW_SCORE,
    NOT_READ,
    TOO_LONG,
    CrossEncoderVerifier,
    Question,
    build_verifier,
    passes,
    rejection,
)
from extensions.embedding.encoder import resolve_model_path
from extensions.embedding.settings import Embedding, Quantize

pytestmark = pytest.mark.unit

TOPICS = ["python", "rome", "tea", "bitcoin", "yoga", "chess", "mars", "jazz"]


def toy_pairs() -> list[Pair]:
    out = []
    for i, topic in enumerate(TOPICS):
        other = TOPICS[(i + 3) % len(TOPICS)]
        out.append(Pair(f"how do i learn {topic}", f"what is the best way to learn {topic}", 1))
        out.append(Pair(f"how do i learn {topic}", f"how do i learn {other}", 0))
        out.append(Pair(f"is {topic} worth it", f"is it worth getting into {topic}", 1))
        out.append(Pair(f"is {topic} worth it", f"is {other} expensive", 0))
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, width-32 BERT with the builtin's tokenizer, as a sentence-transformers
    folder (mean pooling)."""
    import torch
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(root)
    builtin = resolve_model_path("builtin:all-MiniLM-L6-v2")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(builtin / name, root / name)
    _write_sentence_transformers_modules(root, 32)
    return root


@pytest.fixture(scope="module")
def trained(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ce") / "verifier"
    schedule = Schedule(epochs=3, batch_size=8, learning_rate=1e-3, max_tokens=24)
    fit_cross_encoder(toy_pairs(), tiny_base, out, {"trained_on": "toy"}, schedule)
    return out


def torch_probabilities(folder: Path, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """The trained model in PyTorch through training's own batching and forward pass."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    head = PairHead.read(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(head.max_tokens, strategy="longest_first")
    model = AutoModel.from_pretrained(str(folder)).eval()
    linear = torch.nn.Linear(head.weight.size, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(head.weight).reshape(1, -1))
        linear.bias.fill_(head.bias)
        out = []
        for query, cached in pairs:  # one at a time: no padding, as serving one pair
            ids, mask = batch_tensors(tokenizer, [Pair(cached, query, 0)], 0)
            out.append(torch.sigmoid(pair_logits(model, linear, ids, mask)).item())
    return np.array(out)


def test_training_and_serving_join_a_pair_the_same_way(trained: Path, tmp_path: Path) -> None:
    """The cached question (``text_a``) first, the query second, as served."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(trained / "tokenizer.json"))
    tokenizer.no_padding()
    ids, mask = batch_tensors(tokenizer, [Pair("is tea good", "why do cats purr", 1)], 0)
    served = pair_encoding(tokenizer, "why do cats purr", "is tea good")
    assert ids[0].tolist() == served.ids and int(mask.sum()) == len(served.ids)
    words = tokenizer.decode(served.ids)
    assert words.index("tea") < words.index("cats")


def test_batches_cover_every_pair_once_per_epoch_in_length_sorted_groups() -> None:
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 80, size=203)]
    one = batches(lengths, Schedule(epochs=1, batch_size=10))
    assert sorted(i for b in one for i in b) == list(range(203))
    assert all(len(b) <= 10 for b in one)
    # within a window of 50 batches, batches are runs of a length-sorted order
    assert all(lengths[b[0]] <= lengths[b[-1]] for b in one)
    two = batches(lengths, Schedule(epochs=2, batch_size=10))
    assert len(two) == 2 * len(one)
    half = batches(lengths, Schedule(epochs=0.5, batch_size=10))
    assert len(half) == round(len(one) / 2)
    assert batches(lengths, Schedule(seed=1)) != batches(lengths, Schedule(seed=0))


def test_trained_folder_is_served_without_torch_with_the_trained_probabilities(
    trained: Path, tmp_path: Path
) -> None:
    card = PairHead.read(trained).card
    assert card["trained_on"] == "toy" and card["pairs"] == len(toy_pairs())
    assert card["steps"] == 12  # 32 pairs, batches of 8, 3 epochs
    model = load_cross_encoder(str(trained), Embedding(cache_dir=tmp_path), Quantize.NONE)
    asked = [(p.b, p.a) for p in toy_pairs()] + [("", "?")]
    ours = np.array(model(asked), dtype=float)
    theirs = torch_probabilities(trained, asked)
    assert ours.shape == (len(asked),)
    assert float(np.abs(ours - theirs).max()) < 1e-4
    # it learned the toy task: duplicates above the different pairs on the training pairs
    labels = np.array([p.label for p in toy_pairs()])
    assert ours[: len(labels)][labels == 1].mean() > ours[: len(labels)][labels == 0].mean()
    assert (tmp_path / "onnx").is_dir()  # the graph is cached beside the encoder's
    assert model([]) == []
    # a pair past the 24-token budget is not scored: cut, it could read like a duplicate
    context = "given the quarterly sales table for every region of the company "
    long = [(context + "using python pandas", context + "using rust polars"), ("a", "b")]
    scores = model(long)
    assert scores[0] is None and scores[1] is not None


def test_int8_cross_encoder_stays_close(trained: Path, tmp_path: Path) -> None:
    fp32 = load_cross_encoder(str(trained), Embedding(cache_dir=tmp_path), Quantize.NONE)
    int8 = load_cross_encoder(str(trained), Embedding(cache_dir=tmp_path), Quantize.INT8)
    asked = [(p.b, p.a) for p in toy_pairs()]
    difference = np.array(fp32(asked), dtype=float) - np.array(int8(asked), dtype=float)
    assert float(np.abs(difference).max()) < 0.1


def test_folders_that_are_not_cross_encoders_are_refused(trained: Path, tmp_path: Path) -> None:
    builtin = resolve_model_path("builtin:all-MiniLM-L6-v2")
    with pytest.raises(CrossEncoderError, match=r"pair_head\.json is missing"):
        load_cross_encoder(str(builtin), Embedding(cache_dir=tmp_path), Quantize.NONE)
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    good = json.loads((trained / HEAD_FILE).read_text())
    for change, field in [
        ({"format": "something-else"}, "format: Input should be 'gateway-cross-encoder-1'"),
        ({"weight": "x"}, "weight: Input should be a valid list"),
        ({"weight": [float("nan")] * 32}, "weight.0: Input should be a finite number"),
        ({"bias": None}, "bias: Input should be a valid number"),
        ({"max_tokens": 2}, "max_tokens: Input should be greater than or equal to 8"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ]:
        (broken / HEAD_FILE).write_text(json.dumps({**good, **change}))
        with pytest.raises(CrossEncoderError, match=re.escape(field)):
            load_cross_encoder(str(broken), Embedding(cache_dir=tmp_path), Quantize.NONE)
    (broken / HEAD_FILE).write_text(json.dumps(good))
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(CrossEncoderError, match="cannot be loaded: Exception"):
        load_cross_encoder(str(broken), Embedding(cache_dir=tmp_path), Quantize.NONE)
    head = PairHead.read(trained)
    wrong = PairHead(np.zeros(7, dtype=np.float32), 0.0, 24, {})
    (broken / HEAD_FILE).write_text(wrong.to_json())
    with pytest.raises(CrossEncoderError, match="7 weights for a 32-wide"):
        load_cross_encoder(str(broken), Embedding(cache_dir=tmp_path), Quantize.NONE)
    assert head.weight.size == 32


def test_settings_name_the_folder_a_cross_encoder_needs(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="train-cache-verifier --kind cross-encoder"):
        Verifier(kind="cross-encoder", model=str(tmp_path))
    with pytest.raises(ValidationError, match="train-cache-verifier --kind cross-encoder"):
        Verifier(kind="cross-encoder")  # the default model is the learned one's
    settings = SemanticCache(
        verifier=Verifier(kind="cross-encoder", model=str(trained), top=3, min_probability=0.7)
    )
    verifier = build_verifier(settings, Embedding(cache_dir=tmp_path))
    assert verifier.inference and not verifier.needs_vectors
    described = verifier.describe()
    assert described["name"] == VerifierKind.CROSS_ENCODER.value
    assert described["top"] == 3 and described["min_probability"] == 0.7
    assert described["card"]["trained_on"] == "toy"


class FakeModel:
    """Stands in for a ``CrossEncoder``: P = 0.9 when both texts are about cats; a pair of
    over 60 characters does not fit (None)."""

    card: dict[str, str] = {"trained_on": "fake"}

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        self.calls.append(list(pairs))
        return [
            None if len(q + c) > 60 else 0.9 if "cats" in q and "cats" in c else 0.1
            for q, c in pairs
        ]


def fake_verifier(top: int) -> tuple[CrossEncoderVerifier, FakeModel]:
    model = FakeModel()
    verifier = CrossEncoderVerifier(model, "fake", 0.5, top, Verification())  # type: ignore[arg-type]
    return verifier, model


def test_verdicts_keep_the_rules_hard_and_read_only_the_top_candidates() -> None:
    verifier, model = fake_verifier(top=3)
    query = Question("how long do 3 cats live", None)
    cached = [
        Question("how long do 4 cats live", None),  # numbers differ: the rules refuse it
        Question("HOW long do 3 cats   live", None),  # the same text: passes unread
        Question("how long do 3 dogs live", None),  # read: 0.1
        Question("how many years do 3 cats live", None),  # read: 0.9
        Question("how long do 3 cats live in a flat in town, on average", None),  # too long
        Question("how old do 3 cats live", None),  # past top=3: not read, not served
    ]
    verdicts = verifier.verdicts(query, cached)
    assert verdicts[0].failed == "numbers"
    assert passes(verdicts[1], 0.99)
    assert not passes(verdicts[2], 0.5) and rejection(verdicts[2]) == LOW_SCORE
    assert passes(verdicts[3], 0.5) and verdicts[3].score == pytest.approx(0.9)
    assert verdicts[4].failed == TOO_LONG and not passes(verdicts[4], 0.0)
    assert verdicts[5].failed == NOT_READ
    # one batched pass, (query, cached), the most similar surviving candidates only
    assert model.calls == [[(query.text, c.text) for c in cached[2:5]]]
    assert fake_verifier(top=1)[0].verdicts(query, []) == []


def test_hold_out_spec_and_the_fold_a_calibration_measures(tmp_path: Path) -> None:
    assert _hold_out(None) is None
    assert _hold_out("0/5") == (0, 5)
    for bad in ("5/5", "1/1", "a/b", "3", "-1/4"):
        with pytest.raises(ValueError, match="expected K/N"):
            _hold_out(bad)
    pairs = toy_pairs()
    card = {"trained_on_sha256_16": "abc", "held_out": {"fold": 1, "folds": 3, "seed": 0}}
    fold = _held_out(pairs, card, "abc")
    assert fold is not None and 0 < len(fold) < len(pairs)
    # the held-out fold shares no question with the rest (what the model trained on)
    rest = [p for p in pairs if p not in fold]
    seen = {t for p in rest for t in (p.a, p.b)}
    assert not seen & {t for p in fold for t in (p.a, p.b)}
    assert _held_out(pairs, card, "another file") is None
    assert _held_out(pairs, {"trained_on_sha256_16": "abc"}, "abc") is None


def test_train_cache_verifier_refuses_a_bad_hold_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from extensions.cache.commands import train_cache_verifier

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "text_a\ttext_b\tlabel\n" + "".join(f"{p.a}\t{p.b}\t{p.label}\n" for p in toy_pairs())
    )
    args = argparse.Namespace(pairs=pairs, hold_out="7/5")
    assert train_cache_verifier(args) == 2
    assert "--hold-out '7/5'" in capsys.readouterr().err
