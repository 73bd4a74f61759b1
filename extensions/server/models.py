"""Pure: the model list a key may use (``GET /v1/models``), in OpenAI's or Anthropic's shape
(the latter when the request carries ``anthropic-version``, as the Anthropic SDK does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CREATED = 1767225600  # 2026-01-01: model groups have no creation date of their own


def model_list(names: Sequence[str], anthropic: bool) -> dict[str, Any]:
    if anthropic:
        data = [
            {"type": "model", "id": n, "display_name": n, "created_at": "2026-01-01T00:00:00Z"}
            for n in names
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": CREATED, "owned_by": "gateway"} for n in names
        ],
    }
