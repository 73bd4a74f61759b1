"""The encoder's ONNX Runtime session: few threads, no spin-waiting (it shares the CPU with
the event loops), and the shipped model loaded with those options."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from extensions.embedding.encoder import BatchingEncoder, load_onnx_encoder
from extensions.embedding.onnx_encoder import onnx_session_options
from extensions.embedding.settings import Embedding

pytestmark = pytest.mark.unit

SPINNING = "session.intra_op.allow_spinning"


@pytest.mark.parametrize("threads", [1, 3])
def test_session_options_bound_threads_and_never_spin(threads: int) -> None:
    options = onnx_session_options(threads)
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry(SPINNING) == "0"


def test_onnx_threads_default_is_one_and_bounded() -> None:
    assert Embedding().onnx_threads == 1
    with pytest.raises(ValueError, match="onnx_threads"):
        Embedding(onnx_threads=0)


def test_loaded_model_runs_with_the_configured_session(tmp_path: Path) -> None:
    """The options reach the InferenceSession of the serving encoder."""
    model = load_onnx_encoder(Embedding(onnx_threads=2, cache_dir=tmp_path))
    used = model.session.get_session_options()
    assert used.intra_op_num_threads == 2
    assert used.get_session_config_entry(SPINNING) == "0"
    vectors = model(["reset my password"])
    assert vectors.shape == (1, 384) and abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-5


def test_encode_sync_sends_short_batches_of_similar_length_and_keeps_the_order() -> None:
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    texts = [chr(97 + i % 26) * (1 + (i * 7) % 50) for i in range(300)]
    encoder = BatchingEncoder(encode, 2, "fake")
    try:
        out = encoder.encode_sync(texts, batch_size=64)
    finally:
        encoder.close()
    assert max(len(batch) for batch in seen) == 64 and sum(map(len, seen)) == 300
    lengths = [[len(t) for t in batch] for batch in seen]
    assert all(max(a) <= min(b) for a, b in itertools.pairwise(lengths))
    np.testing.assert_array_equal(out, [[len(t), ord(t[0])] for t in texts])
