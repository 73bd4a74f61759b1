"""One request on an LLM endpoint, the same straight line for every protocol:

    adapter → open → start → decide → (answer | forward) → render → finish

The adapter only translates (request in, answer and errors out); the pipeline does
the work; this module moves bytes and makes sure ``finish`` runs exactly once,
whatever happens: an error answer, a model failure, a client that goes away (the
upstream call or stream is cancelled), or a bug (a 500, logged).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from extensions.pipeline.context import Ending, RequestContext, Result
from extensions.pipeline.decide import Answer, Forward
from extensions.pipeline.errors import CLIENT_CLOSED, GatewayError
from extensions.pipeline.pipeline import Pipeline, RawRequest
from extensions.protocols.base import Adapter
from extensions.protocols.chunks import Accumulator, completion_chunks
from extensions.server.http import (
    Receive,
    Send,
    end_stream,
    send_events,
    send_json,
    start_stream,
    unless_disconnected,
)

logger = logging.getLogger("gateway.server")


class Reply:
    """The response being written: knows whether its head went out already."""

    def __init__(self, send: Send, adapter: Adapter) -> None:
        self.send = send
        self.adapter = adapter
        self.started = False

    async def json(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.started = True
        await send_json(self.send, status, body, headers)

    async def error(self, error: GatewayError, headers: Mapping[str, str]) -> None:
        if self.started:  # mid-stream: an error event, then the end of the stream
            await send_events(self.send, [self.adapter.stream_error(error)])
            await end_stream(self.send)
            return
        await self.json(error.status, self.adapter.error(error), {**headers, **error.headers})

    async def stream(
        self,
        ctx: RequestContext,
        pipeline: Pipeline,
        chunks: AsyncIterator[dict[str, Any]] | Iterable[dict[str, Any]],
        first: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send the chunks as the adapter's event stream; the completion they add up to."""
        assert ctx.request is not None
        renderer = self.adapter.renderer(ctx.request)
        total = Accumulator()
        self.started = True
        await start_stream(self.send, pipeline.headers(ctx))
        await send_events(self.send, renderer.begin())
        if first is not None:
            total.add(first)
            await send_events(self.send, renderer.chunk(first))
        if isinstance(chunks, AsyncIterator):
            async for chunk in chunks:
                total.add(chunk)
                await send_events(self.send, renderer.chunk(chunk))
        else:
            for chunk in chunks:
                total.add(chunk)
                await send_events(self.send, renderer.chunk(chunk))
        await send_events(self.send, renderer.end())
        await end_stream(self.send)
        return total.completion()


async def _answer(ctx: RequestContext, pipeline: Pipeline, reply: Reply, answer: Answer) -> Result:
    """The gateway's own answer (a cache hit, the router's answer): no upstream call."""
    assert ctx.request is not None
    if ctx.stream:
        await reply.stream(ctx, pipeline, completion_chunks(answer.body))
    else:
        await reply.json(200, reply.adapter.render(answer.body, ctx.request), pipeline.headers(ctx))
    return Result(Ending.ANSWERED, 200, answer=answer.body)


async def _forward(
    ctx: RequestContext, pipeline: Pipeline, reply: Reply, forward: Forward
) -> Result:
    assert ctx.request is not None
    if not ctx.stream:
        body = await pipeline.complete(ctx, forward)
        await reply.json(200, reply.adapter.render(body, ctx.request), pipeline.headers(ctx))
        return Result(Ending.COMPLETED, 200, answer=body)
    upstream = await pipeline.stream(ctx, forward)
    chunks = pipeline.chunks(ctx, upstream)
    try:
        # the first chunk before the head: a failure up to here is still a proper error answer
        first = await anext(chunks, None)
        answer = await reply.stream(ctx, pipeline, chunks, first)
    finally:
        await upstream.aclose()
    return Result(Ending.COMPLETED, 200, answer=answer)


async def exchange(
    pipeline: Pipeline, adapter: Adapter, raw: RawRequest, send: Send, receive: Receive
) -> None:
    ctx = pipeline.open(raw)
    reply = Reply(send, adapter)
    result = Result(Ending.FAILED, 500)
    try:
        await pipeline.start(ctx, raw, adapter)
        decision = await pipeline.decide(ctx)
        if isinstance(decision, Answer):
            result = await _answer(ctx, pipeline, reply, decision)
        else:
            gone, outcome = await unless_disconnected(
                receive, _forward(ctx, pipeline, reply, decision)
            )
            result = Result(Ending.DISCONNECTED, CLIENT_CLOSED) if gone else outcome
    except GatewayError as error:
        result = Result(Ending.FAILED, error.status, error)
        await reply.error(error, pipeline.headers(ctx))
    except OSError:  # the connection broke under us (some servers raise on send)
        result = Result(Ending.DISCONNECTED, CLIENT_CLOSED)
    except Exception as exc:  # a bug: the client gets a plain 500, the log the traceback
        logger.exception("request %s failed", ctx.id)
        internal = GatewayError(f"Internal error ({type(exc).__name__}); request {ctx.id}.")
        result = Result(Ending.FAILED, 500, internal)
        try:
            await reply.error(internal, pipeline.headers(ctx))
        except Exception:  # noqa: BLE001 - the connection may be gone too
            logger.debug("could not send the 500 for %s", ctx.id)
    finally:
        await pipeline.finish(ctx, result)
