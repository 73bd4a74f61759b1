"""The seam between the pipeline and the engine that calls models.

``Upstream`` has three calls: a complete chat answer, a chat stream, and embeddings.
The real implementation is LiteLLM's router (``extensions/proxy/upstream.py``: provider
unification, load balancing, retries, fallbacks, cooldowns); ``FakeUpstream`` is the
in-memory one the pipeline's unit tests use. Failures are raised as
``UpstreamFailed`` (a ``GatewayError``) with the status the call ended with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from extensions.pipeline.context import ChatRequest, EmbeddingRequest, Served, Usage
from extensions.pipeline.errors import UpstreamFailed
from extensions.protocols.chunks import completion, completion_chunks


@dataclass(frozen=True, slots=True)
class Call:
    """One model call: the group, the request as it goes upstream, the allowed fallbacks."""

    request_id: str
    model_group: str
    request: ChatRequest | EmbeddingRequest
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> groups


@dataclass(slots=True)
class Reply:
    body: dict[str, Any]  # a chat completion or an embeddings response
    served: Served


class StreamReply(Protocol):
    """An open stream: ``served`` names the deployment from the start; its usage and cost
    are filled in once the stream has ended."""

    served: Served

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def complete(self, call: Call) -> Reply: ...

    async def stream(self, call: Call) -> StreamReply: ...

    async def embed(self, call: Call) -> Reply: ...


# -- the in-memory fake ------------------------------------------------------------------------


@dataclass
class FakeModel:
    """How one model group of the fake answers."""

    text: str = "fake answer"
    cost_usd: float = 0.001
    prompt_tokens: int = 10
    completion_tokens: int = 20
    fail: UpstreamFailed | None = None  # raise this instead of answering
    fail_mid_stream: bool = False  # a stream that breaks after its first chunk
    delay_s: float = 0.0
    provider: str = "fake"


class FakeStream:
    def __init__(
        self,
        chunks: list[dict[str, Any]],
        served: Served,
        model: FakeModel,
        on_close: Callable[[], None],
    ) -> None:
        self.served = served
        self._chunks = chunks
        self._model = model
        self._on_close = on_close
        self.closed = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        for i, chunk in enumerate(self._chunks):
            if self._model.delay_s:
                await asyncio.sleep(self._model.delay_s)
            if i == 1 and self._model.fail_mid_stream:
                raise UpstreamFailed(502, "the stream broke")
            yield chunk
        self.served.usage = Usage(self._model.prompt_tokens, self._model.completion_tokens)
        self.served.cost_usd = self._model.cost_usd

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close()


class FakeUpstream:
    """Answers from ``models`` by group; records every call; counts open streams."""

    def __init__(self, models: Mapping[str, FakeModel] | None = None) -> None:
        self.models = dict(models or {})
        self.calls: list[Call] = []
        self.open_streams = 0

    def _model(self, call: Call) -> FakeModel:
        self.calls.append(call)
        model = self.models.get(call.model_group, FakeModel())
        if model.fail is not None and not model.fail_mid_stream:
            raise model.fail
        return model

    def _served(self, call: Call, model: FakeModel) -> Served:
        return Served(
            model_group=call.model_group,
            deployment=f"{call.model_group}-1",
            provider=model.provider,
        )

    def _body(self, call: Call, model: FakeModel) -> dict[str, Any]:
        body = completion(call.model_group, model.text)
        body["usage"] = {
            "prompt_tokens": model.prompt_tokens,
            "completion_tokens": model.completion_tokens,
            "total_tokens": model.prompt_tokens + model.completion_tokens,
        }
        return body

    async def complete(self, call: Call) -> Reply:
        model = self._model(call)
        if model.delay_s:
            await asyncio.sleep(model.delay_s)
        served = self._served(call, model)
        served.usage = Usage(model.prompt_tokens, model.completion_tokens)
        served.cost_usd = model.cost_usd
        return Reply(self._body(call, model), served)

    async def stream(self, call: Call) -> FakeStream:
        model = self._model(call)
        self.open_streams += 1

        def closed() -> None:
            self.open_streams -= 1

        chunks = list(completion_chunks(self._body(call, model)))
        return FakeStream(chunks, self._served(call, model), model, closed)

    async def embed(self, call: Call) -> Reply:
        model = self._model(call)
        assert isinstance(call.request, EmbeddingRequest)
        texts = call.request.input if isinstance(call.request.input, list) else [call.request.input]
        body = {
            "object": "list",
            "model": call.model_group,
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i in range(len(texts))
            ],
            "usage": {"prompt_tokens": model.prompt_tokens, "total_tokens": model.prompt_tokens},
        }
        served = self._served(call, model)
        served.usage = Usage(model.prompt_tokens, 0)
        served.cost_usd = model.cost_usd
        return Reply(body, served)
