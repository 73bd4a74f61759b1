"""The file shadow mode writes and ``gateway calibrate-cache --pairs FILE.jsonl`` reads.

One JSON object per line, one per semantic candidate the cache looked at: the
new question, the cached one, their similarity and the verifier's score, the
router and intent, and, once the model has answered, how alike the fresh and the
cached answers are. A reviewer may add ``"label": 0 | 1``; without it the
calibration labels a pair by ``answer_similarity`` (a weak label).

The lines hold user questions: write them only where the request log may hold
content (``observability.request_log.content``), and keep them as long as it does.
"""

from __future__ import annotations

import json
from typing import Final, Literal

from pydantic import Field

from extensions.config.base import StrictModel

SHADOW_FORMAT: Final = "cache-shadow/1"


class ShadowRecord(StrictModel):
    format: Literal["cache-shadow/1"] = "cache-shadow/1"
    ts: float = 0.0  # unix time of the lookup
    router: str | None = None
    intent: str | None = None
    query: str = Field(min_length=1)  # the new question
    cached_query: str = Field(min_length=1)  # the question whose answer would be served
    similarity: float = Field(ge=-1.0, le=1.0)
    score: float | None = Field(None, ge=0.0, le=1.0)  # the verifier's
    served: bool = False  # would serve mode have served it (similarity and verifier passed)
    answer_similarity: float | None = Field(None, ge=-1.0, le=1.0)  # cached vs fresh answer
    label: int | None = Field(None, ge=0, le=1)  # a reviewer's: 1 = same question

    def to_line(self) -> str:
        return json.dumps(self.model_dump(), separators=(",", ":"), ensure_ascii=False) + "\n"
