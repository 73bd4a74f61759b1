"""Export a model folder to ONNX (and quantise it) once, into the cache folder of its fingerprint.

``<cache_dir>/onnx/<fingerprint>/model.onnx`` plus ``export.json`` (what was built,
from what). Workers starting together take a file lock, so one exports and the
others wait and reuse the result; the export is written to a private folder and
renamed into place, so a crash never leaves a half-written model where a worker
would load it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from extensions.embedding.folder import ModelFolder
from extensions.embedding.settings import Quantize

MODEL_FILE = "model.onnx"
# Part of the cache key: bump it when the graph builder or the quantisation changes,
# so caches written by an older gateway are not reused.
GRAPH_FORMAT = "bert-onnx-1"


def int8_config() -> str:
    """The dynamic-quantisation preset for this CPU (VNNI where it has it)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2"


def prepare_onnx(folder: ModelFolder, target: Path, quantize: Quantize) -> Path:
    """The ONNX file for ``folder`` in ``target``, exported first if it is not there yet."""
    model_file = target / MODEL_FILE
    if model_file.is_file():
        return model_file
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f"{target.name}.lock")):
        if model_file.is_file():  # another worker exported it while this one waited
            return model_file
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            export(folder, tmp, quantize)
            if target.exists():  # left by an older gateway or an interrupted run
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model_file


def export(folder: ModelFolder, out: Path, quantize: Quantize) -> None:
    """Write ``out/model.onnx`` (fp32, or int8 weights with dynamic activations)."""
    import onnx
    from safetensors.numpy import load_file

    from extensions.embedding.bert_graph import build_bert_graph

    model = build_bert_graph(folder.config, load_file(str(folder.weights)))
    preset = None
    if quantize is Quantize.NONE:
        onnx.save(model, str(out / MODEL_FILE))
    else:
        fp32 = out / "fp32.onnx"
        onnx.save(model, str(fp32))
        del model
        preset = int8_config()
        quantize_int8(fp32, out / MODEL_FILE, preset)
        fp32.unlink()
    meta = {
        "format": GRAPH_FORMAT,
        "source": str(folder.root),
        "quantize": quantize.value,
        "int8_preset": preset,
    }
    (out / "export.json").write_text(json.dumps(meta, indent=2))


def quantize_int8(source: Path, out: Path, preset: str) -> None:
    """Dynamic int8 as sentence-transformers' ``export_dynamic_quantized_onnx_model`` did it
    (optimum's avx2 / avx512_vnni presets): per-channel symmetric weights (uint8 on AVX2,
    int8 with VNNI), asymmetric uint8 activations, every integer-capable operator, the
    attention products included."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type = QuantType.QInt8 if preset == "avx512_vnni" else QuantType.QUInt8
    options = {"WeightSymmetric": True, "ActivationSymmetric": False, "MatMulConstBOnly": False}
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_dynamic(
            source, out, per_channel=True, weight_type=weight_type, extra_options=options
        )
    finally:
        root.removeFilter(_no_preprocessing_advice)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """ONNX Runtime advises shape-inference pre-processing on the root logger: it changes
    nothing for this graph, and a warning at every first start would only worry people."""
    return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
