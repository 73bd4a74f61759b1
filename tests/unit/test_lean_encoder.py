"""The serving encoder (ONNX graph written from the weights, no torch) against
sentence-transformers on PyTorch, on the builtin model and on folders like the ones
``gateway finetune-router`` writes; its cache; the token window; what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from extensions.embedding.encoder import BatchingEncoder, resolve_model_path, sentence_encoder
from extensions.embedding.folder import ModelFolderError, Pooling, read_model_folder
from extensions.embedding.onnx_export import MODEL_FILE
from extensions.embedding.settings import Embedding, Quantize

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BUILTIN = "builtin:all-MiniLM-L6-v2"
WINDOW = 64
# the collision that made the semantic cache ask for the window: equal in the first 64 tokens
CAT = "Please answer in one sentence. " * 12 + "translate cat"
DOG = "Please answer in one sentence. " * 12 + "translate dog"
# Short, long past the 64-token window, unicode, code, empty-ish.
SAMPLE = [
    "reset my password",
    "hi",
    "",
    "   ",
    "?",
    "How do I cancel my subscription and get a refund for last month?",
    "The app crashes every time I open the settings page on Android 14.",
    "translate cat into French",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "What's the weather like in São Paulo tomorrow?",
    "Ünïcödé façade — naïve café",
    "日本語のテキストを英語に翻訳してください",
    "Пожалуйста, помогите мне с заказом",
    "مرحبا كيف حالك",
    "emoji only 😀🎉🚀",
    "SELECT * FROM users WHERE id = 42;",
    "def f(x): return x ** 2 + 1",
    "https://example.com/path?query=1&other=two",
    "e-mail: someone@example.org, phone +1 (555) 010-2030",
    "I I I I I I I I I I",
    "The quick brown fox jumps over the lazy dog.",
    "Summarise this: " + "the committee met again to discuss the budget. " * 12,
    " ".join(f"word{i}" for i in range(120)),
    CAT,
    DOG,
    "ALL CAPS SHOUTING ABOUT A BROKEN INVOICE",
    "tab\tseparated\tvalues\nand a new line",
    "1234567890 0987654321",
    "Ich möchte mein Passwort zurücksetzen.",
    "¿Dónde está la biblioteca?",
]
# Measured on this sample (python -m loadtests.bench_encoder prints it): min cosine(int8,
# fp32 torch) = 0.9688, mean 0.9887; sentence-transformers' own int8 export: 0.9624, 0.9878.
INT8_MIN_COSINE = 0.95
FORBIDDEN = ("torch", "sentence_transformers", "transformers", "optimum", "sklearn")


def torch_reference(folder: str | Path, texts: list[str]) -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = WINDOW
    return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def cosines(a: Any, b: Any) -> Any:
    return (np.asarray(a) * np.asarray(b)).sum(axis=1)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("encoder-cache")


@pytest.fixture(scope="module")
def reference() -> Any:
    return torch_reference(resolve_model_path(BUILTIN), SAMPLE)


@pytest.fixture(scope="module")
def fp32(cache_dir: Path) -> Iterator[BatchingEncoder]:
    encoder = sentence_encoder(Embedding(cache_dir=cache_dir, max_seq_length=WINDOW))
    yield encoder
    encoder.close()


def test_fp32_matches_sentence_transformers(fp32: BatchingEncoder, reference: Any) -> None:
    vectors = fp32.encode_sync(SAMPLE)
    assert vectors.shape == (len(SAMPLE), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float((1.0 - cosines(vectors, reference)).max()) < 1e-4


def test_int8_stays_close(cache_dir: Path, reference: Any) -> None:
    settings = Embedding(cache_dir=cache_dir, max_seq_length=WINDOW, quantize=Quantize.INT8)
    encoder = sentence_encoder(settings)
    try:
        found = cosines(encoder.encode_sync(SAMPLE), reference)
    finally:
        encoder.close()
    assert float(found.min()) >= INT8_MIN_COSINE
    assert float(found.mean()) >= 0.98
    assert float(found.max()) < 0.99999  # it is really the quantised graph


async def test_async_batches_give_the_sync_vectors(fp32: BatchingEncoder) -> None:
    import asyncio

    parts = await asyncio.gather(*(fp32.encode([text]) for text in SAMPLE[:8]))
    np.testing.assert_allclose(np.vstack(parts), fp32.encode_sync(SAMPLE[:8]), atol=1e-5)


def test_window_says_which_texts_were_cut(fp32: BatchingEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    tokenizer = SentenceTransformer(str(resolve_model_path(BUILTIN)), device="cpu").tokenizer
    window = fp32.window
    assert window is not None and window.max_tokens == WINDOW
    for text in SAMPLE:
        assert window.token_count(text) == len(tokenizer(text)["input_ids"])
    assert [fp32.fits(t) for t in (CAT, DOG, "translate cat")] == [False, False, True]
    # why it matters: past the window the two requests are the same vector
    same = fp32.encode_sync([CAT, DOG])
    assert float(same[0] @ same[1]) > 0.9999
    assert [fp32.fits("word " * n) for n in (61, 62, 63)] == [True, True, False]


def test_fake_encoders_never_truncate() -> None:
    fake = BatchingEncoder(lambda texts: np.ones((len(texts), 2), np.float32), 2, "fake")
    assert fake.window is None and fake.fits("x " * 10_000)


def test_finetuned_folder_loads_and_matches(tmp_path: Path, cache_dir: Path) -> None:
    """A folder written by ``gateway finetune-router`` (a few real training steps)."""
    from extensions.router.examples import Example
    from extensions.router.finetune import FineTuneSettings, fine_tune

    texts = ["reset my password", "I forgot my login", "the app crashes", "it freezes on start"]
    examples = [
        Example(f"{t} {i}", "account" if j < 2 else "bug")
        for i in range(6)
        for j, t in enumerate(texts)
    ]
    out = fine_tune(
        BUILTIN,
        examples,
        tmp_path / "tuned",
        FineTuneSettings(epochs=1, batch_size=8, threads=1),
        hold_out_calibration=False,
    )
    folder = read_model_folder(out)
    assert folder.pooling == (Pooling.MEAN,) and folder.normalize
    encoder = sentence_encoder(Embedding(model=str(out), cache_dir=cache_dir))
    try:
        tuned = encoder.encode_sync(SAMPLE[:10])
    finally:
        encoder.close()
    assert float((1.0 - cosines(tuned, torch_reference(out, SAMPLE[:10]))).max()) < 1e-4
    builtin = torch_reference(resolve_model_path(BUILTIN), SAMPLE[:10])
    assert float(cosines(tuned, builtin).min()) < 0.9999  # the weights really changed


def test_other_bert_shapes_and_cls_pooling(tmp_path: Path, cache_dir: Path) -> None:
    """Any BERT sentence-transformers folder: 3 layers, 4 heads, width 64, CLS pooling."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    builtin = resolve_model_path(BUILTIN)
    hf = tmp_path / "hf"
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(builtin / name, hf / name)
    transformer = models.Transformer(str(hf))
    pooling = models.Pooling(64, pooling_mode="cls")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(tmp_path / "st"))
    encoder = sentence_encoder(Embedding(model=str(tmp_path / "st"), cache_dir=cache_dir))
    try:
        assert encoder.dim == 64
        ours = encoder.encode_sync(SAMPLE)
    finally:
        encoder.close()
    theirs = torch_reference(tmp_path / "st", SAMPLE)
    assert float((1.0 - cosines(ours, theirs)).max()) < 1e-4


def test_unsupported_folders_are_refused_with_the_reason(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(resolve_model_path(BUILTIN), folder)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(
        json.dumps(
            [
                *modules,
                {
                    "idx": 3,
                    "name": "3",
                    "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense",
                },
            ]
        )
    )
    with pytest.raises(ModelFolderError, match="Dense"):
        read_model_folder(folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ModelFolderError, match="hidden_act"):
        read_model_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match=r"model\.safetensors"):
        read_model_folder(folder)
    with pytest.raises(ModelFolderError, match=r"modules\.json"):
        read_model_folder(tmp_path)


def test_export_is_cached_and_the_cache_key_follows_the_settings(cache_dir: Path) -> None:
    settings = Embedding(cache_dir=cache_dir, max_seq_length=WINDOW)
    first = sentence_encoder(settings)
    again = sentence_encoder(settings)
    other = sentence_encoder(settings.model_copy(update={"max_seq_length": 32}))
    try:
        assert first.fingerprint == again.fingerprint != other.fingerprint
        folder = cache_dir / "onnx" / first.fingerprint.split("#")[1]
        meta = json.loads((folder / "export.json").read_text())
        assert meta["quantize"] == "none" and (folder / MODEL_FILE).is_file()
        leftovers = [p.name for p in (cache_dir / "onnx").iterdir() if ".tmp" in p.name]
        assert leftovers == []
    finally:
        for encoder in (first, again, other):
            encoder.close()


LEAN_PROCESS = """
import json, sys
from pathlib import Path
from extensions.embedding.encoder import sentence_encoder
from extensions.embedding.settings import Embedding
encoder = sentence_encoder(Embedding(cache_dir=Path(sys.argv[1]), quantize=sys.argv[2]))
vectors = encoder.encode_sync(["reset my password", "the app crashes"])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))
print(json.dumps({"loaded": loaded, "shape": list(vectors.shape),
                  "fits": [encoder.fits("hi"), encoder.fits("word " * 100)]}))
"""


def _lean_process(cache: Path, quantize: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(LEAN_PROCESS),
            str(cache),
            quantize,
            ",".join(FORBIDDEN),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_exporting_and_encoding_never_import_torch(tmp_path: Path) -> None:
    """Export, quantisation and encoding in a fresh process: none of the training stack."""
    out, err = _lean_process(tmp_path, "int8").communicate(timeout=240)
    assert err.strip() == "", err
    report = json.loads(out)
    assert report == {"loaded": [], "shape": [2, 384], "fits": [True, False]}


def test_two_workers_starting_together_share_one_export(tmp_path: Path) -> None:
    procs = [_lean_process(tmp_path, "none") for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["shape"] == [2, 384]
    entries = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert len(entries) == 2 and entries[1] == f"{entries[0]}.lock"  # one export, no tmp left
