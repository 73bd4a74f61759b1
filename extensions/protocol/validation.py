"""Pure checks of OpenAI-style request bodies.

LiteLLM accepts some malformed bodies and fails deep inside, after retries and
fallbacks, with a traceback in the message. We check the shape first and answer
a precise 400 instead, naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_POSITIVE_INTS = ("max_tokens", "max_completion_tokens", "n")


@dataclass(frozen=True, slots=True)
class RequestProblem:
    """What is wrong with a request, for an OpenAI-style 400."""

    param: str
    message: str


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_message(i: int, msg: object) -> RequestProblem | None:
    where = f"messages[{i}]"
    if not isinstance(msg, Mapping):
        return RequestProblem(where, f"'{where}' must be an object with 'role' and 'content'.")
    role = msg.get("role")
    if not isinstance(role, str) or role not in ROLES:
        allowed = ", ".join(sorted(ROLES))
        return RequestProblem(f"{where}.role", f"'{where}.role' must be one of: {allowed}.")
    content = msg.get("content")
    if content is None:
        if role in {"assistant", "tool", "function"}:
            return None
        return RequestProblem(f"{where}.content", f"'{where}.content' is required.")
    if isinstance(content, str):
        return None
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                return RequestProblem(
                    f"{where}.content[{j}]",
                    f"'{where}.content[{j}]' must be an object with a 'type'.",
                )
            problem = _check_part(f"{where}.content[{j}]", part)
            if problem:
                return problem
        return None
    return RequestProblem(f"{where}.content", f"'{where}.content' must be a string or a list.")


def _check_part(where: str, part: Mapping[str, object]) -> RequestProblem | None:
    """The payload a content part's type names must be there (``text``, ``image_url.url``)."""
    kind = part["type"]
    if kind == "text" and not isinstance(part.get("text"), str):
        return RequestProblem(f"{where}.text", f"'{where}.text' must be a string.")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str) or not url:
            message = f"'{where}.image_url' must be an object with a 'url'."
            return RequestProblem(f"{where}.image_url", message)
    return None


RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def _check_response_format(data: Mapping[str, object]) -> RequestProblem | None:
    fmt = data.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") not in RESPONSE_FORMATS:
        return RequestProblem("response_format", "'response_format' must be an object whose "
                              f"'type' is one of: {', '.join(RESPONSE_FORMATS)}.")  # fmt: skip
    return None


def _check_sampling(data: Mapping[str, object]) -> RequestProblem | None:
    for name, (low, high) in _NUMBER_BOUNDS.items():
        v = data.get(name)
        if v is not None and (not _is_number(v) or not low <= float(v) <= high):  # type: ignore[arg-type]
            return RequestProblem(name, f"'{name}' must be a number between {low:g} and {high:g}.")
    for name in _POSITIVE_INTS:
        v = data.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            return RequestProblem(name, f"'{name}' must be a positive integer.")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return RequestProblem("stream", "'stream' must be true or false.")
    return None


def check_chat_request(data: Mapping[str, object]) -> RequestProblem | None:
    """The first problem with a chat-completions body, or None if its shape is valid."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return RequestProblem("messages", "'messages' must be a non-empty list of messages.")
    for i, msg in enumerate(messages):
        problem = _check_message(i, msg)
        if problem:
            return problem
    return _check_response_format(data) or _check_sampling(data)


def check_embedding_request(data: Mapping[str, object]) -> RequestProblem | None:
    """The first problem with an embeddings body, or None if its shape is valid."""
    inp = data.get("input")
    if isinstance(inp, str):
        return None if inp else RequestProblem("input", "'input' must not be empty.")
    if not isinstance(inp, list) or not inp:
        return RequestProblem("input", "'input' must be a string or a non-empty list.")
    if all(isinstance(x, str) for x in inp):
        return None
    if all(isinstance(x, int) and not isinstance(x, bool) for x in inp):
        return None
    if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in inp):
        return None
    return RequestProblem(
        "input", "'input' must be a string, a list of strings or a list of non-empty token lists."
    )
