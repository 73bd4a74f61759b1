"""Write a BERT encoder as an ONNX graph from ``config.json`` and safetensors weights.

No torch: the weights are read as numpy arrays and the graph is spelt out with
``onnx.helper``. Inputs ``input_ids`` and ``attention_mask`` (int64, batch × tokens),
output ``last_hidden_state`` (float32, batch × tokens × hidden), as the Hugging Face
``BertModel`` computes it for single sentences:

    x = LayerNorm(word[ids] + position[0:n] + token_type[0])
    per layer:  a = softmax(q·kᵀ/√d + mask) · v         (per head)
                x = LayerNorm(x + a·Wo + bo)
                x = LayerNorm(x + gelu(x·Wi + bi)·Wo2 + bo2)

Single sentences always have token type 0, so that row is folded into the position
table and the graph takes no ``token_type_ids``; 1/√d is folded into the query
weights. GELU is the exact (erf) one, written as PyTorch exports it so that ONNX
Runtime fuses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from extensions.embedding.folder import BertConfig, ModelFolderError

OPSET = 17  # LayerNormalization is a standard operator from 17 on
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
Array = npt.NDArray[np.float32]


class _Builder:
    """Nodes and initialisers of one graph; every node gets a fresh output name."""

    def __init__(self, weights: Mapping[str, npt.NDArray[np.generic]]) -> None:
        self._weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def weight(self, key: str) -> Array:
        for name in (key, f"bert.{key}"):  # BertFor… checkpoints prefix the encoder
            if name in self._weights:
                return np.asarray(self._weights[name], dtype=np.float32)
        raise ModelFolderError(f"model.safetensors has no tensor {key!r}")

    def const(self, name: str, value: npt.NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x: str, key: str, scale: float = 1.0) -> str:
        """``x · Wᵀ + b`` with the (out, in) weight stored transposed, as MatMul wants it."""
        w = self.const(f"{key}.weight", self.weight(f"{key}.weight").T * np.float32(scale))
        b = self.const(f"{key}.bias", self.weight(f"{key}.bias") * np.float32(scale))
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, key: str, eps: float) -> str:
        gamma = self.const(f"{key}.weight", self.weight(f"{key}.weight"))
        beta = self.const(f"{key}.bias", self.weight(f"{key}.bias"))
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)


def build_bert_graph(
    config: BertConfig, weights: Mapping[str, npt.NDArray[np.generic]]
) -> onnx.ModelProto:
    """The encoder as an ONNX model; raises ``ModelFolderError`` for a missing tensor."""
    g = _Builder(weights)
    ids, mask = INPUTS
    x = _embeddings(g, config, ids)
    bias = _mask_bias(g, mask)
    shapes = _head_shapes(g, config)
    for i in range(config.num_hidden_layers):
        x = _layer(g, config, f"encoder.layer.{i}", x, bias, shapes)
    g.nodes.append(helper.make_node("Identity", [x], [OUTPUT], name="output"))
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in INPUTS
    ]
    output_shape: list[str | int] = ["batch", "tokens", config.hidden_size]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, output_shape)]
    graph = helper.make_graph(g.nodes, "bert_encoder", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "model-gateway"
    onnx.checker.check_model(model)
    return model


def _embeddings(g: _Builder, config: BertConfig, ids: str) -> str:
    words = g.const("word_embeddings", g.weight("embeddings.word_embeddings.weight"))
    positions = g.weight("embeddings.position_embeddings.weight")
    types = g.weight("embeddings.token_type_embeddings.weight")
    table = g.const("position_and_type_embeddings", positions + types[0])
    length = g.op("Shape", [ids], start=1, end=2)
    zero = g.const("zero", np.array([0], dtype=np.int64))
    summed = g.op("Add", [g.op("Gather", [words, ids]), g.op("Slice", [table, zero, length, zero])])
    return g.layer_norm(summed, "embeddings.LayerNorm", config.layer_norm_eps)


def _mask_bias(g: _Builder, mask: str) -> str:
    """0 for real tokens, -10000 for padding, shaped (batch, 1, 1, tokens) to add to scores."""
    one = g.const("one", np.array(1.0, dtype=np.float32))
    big = g.const("minus_ten_thousand", np.array(-10000.0, dtype=np.float32))
    padded = g.op("Sub", [one, g.op("Cast", [mask], to=TensorProto.FLOAT)])
    axes = g.const("mask_axes", np.array([1, 2], dtype=np.int64))
    return g.op("Unsqueeze", [g.op("Mul", [padded, big]), axes])


def _head_shapes(g: _Builder, config: BertConfig) -> tuple[str, str]:
    split = np.array([0, 0, config.num_attention_heads, config.head_size], dtype=np.int64)
    merged = np.array([0, 0, config.hidden_size], dtype=np.int64)
    return g.const("split_heads", split), g.const("merge_heads", merged)


def _layer(
    g: _Builder, config: BertConfig, key: str, x: str, bias: str, shapes: tuple[str, str]
) -> str:
    split, merged = shapes
    scale = 1.0 / math.sqrt(config.head_size)

    def heads(name: str, perm: list[int], s: float = 1.0) -> str:
        projected = g.linear(x, f"{key}.attention.self.{name}", s)
        return g.op("Transpose", [g.op("Reshape", [projected, split])], perm=perm)

    q = heads("query", [0, 2, 1, 3], scale)  # (batch, heads, tokens, head_size)
    k = heads("key", [0, 2, 3, 1])  # (batch, heads, head_size, tokens)
    v = heads("value", [0, 2, 1, 3])
    scores = g.op("Add", [g.op("MatMul", [q, k]), bias])
    context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merged])
    attended = g.linear(context, f"{key}.attention.output.dense")
    eps = config.layer_norm_eps
    x = g.layer_norm(g.op("Add", [attended, x]), f"{key}.attention.output.LayerNorm", eps)
    hidden = _gelu(g, g.linear(x, f"{key}.intermediate.dense"))
    out = g.linear(hidden, f"{key}.output.dense")
    return g.layer_norm(g.op("Add", [out, x]), f"{key}.output.LayerNorm", eps)


def _gelu(g: _Builder, x: str) -> str:
    """``x · ½ · (1 + erf(x / √2))``, in the order ONNX Runtime's Gelu fusion matches."""
    root2 = g.const(f"{x}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = g.const(f"{x}.one", np.array(1.0, dtype=np.float32))
    half = g.const(f"{x}.half", np.array(0.5, dtype=np.float32))
    erf = g.op("Erf", [g.op("Div", [x, root2])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, one])]), half])
