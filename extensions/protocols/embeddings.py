"""OpenAI Embeddings (``POST /v1/embeddings``): input checked, the result passed through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extensions.pipeline.context import EmbeddingRequest, NeutralRequest, Protocol
from extensions.pipeline.errors import BadRequest, GatewayError
from extensions.protocols.base import openai_error, refuse_fields, sse
from extensions.protocols.openai_chat import client_cache
from extensions.protocols.validation import check_embedding_request

FORWARDED = frozenset({"encoding_format", "dimensions", "user"})
FIELDS = FORWARDED | {"model", "input", "cache", "metadata"}


def parse_embeddings(body: Mapping[str, Any], headers: Mapping[str, str]) -> EmbeddingRequest:
    refuse_fields(body, FIELDS)
    problem = check_embedding_request(body)
    if problem is not None:
        raise BadRequest(problem.message, param=problem.param)
    if body.get("metadata") is not None and not isinstance(body["metadata"], Mapping):
        raise BadRequest("'metadata' must be an object.", param="metadata")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise BadRequest("'dimensions' must be a positive integer.", param="dimensions")
    params = {k: v for k, v in body.items() if k in FORWARDED and v is not None}
    return EmbeddingRequest(
        model=str(body["model"]),
        input=body["input"],
        params=params,
        client_cache=client_cache(body, headers),
    )


class EmbeddingsAdapter:
    protocol = Protocol.EMBEDDINGS

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> NeutralRequest:
        return parse_embeddings(body, headers)

    def render(self, answer: Mapping[str, Any], request: NeutralRequest) -> dict[str, Any]:
        return dict(answer)

    def renderer(self, request: NeutralRequest) -> Any:
        raise BadRequest("Embeddings cannot be streamed.", param="stream")

    def error(self, error: GatewayError) -> dict[str, Any]:
        return openai_error(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return sse(openai_error(error))
