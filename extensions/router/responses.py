"""Answers that do not come from a model, as ordinary OpenAI chat completions
(zero usage, zero cost), so any OpenAI client handles them, streaming or not."""

from __future__ import annotations

import time
import uuid
from typing import Any


def completion_dict(model: str, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-gw-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }  # fmt: skip
