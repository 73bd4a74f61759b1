"""Pure checks of OpenAI-style request bodies.

LiteLLM accepts some malformed bodies and fails deep inside, after retries and
fallbacks, with a traceback in the message. We check the shape first and answer
a precise 400 instead, naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
        return RequestProblem(
            "response_format",
            "'response_format' must be an object whose "
            f"'type' is one of: {', '.join(RESPONSE_FORMATS)}.",
        )
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
    return _check_types(data)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Optional chat parameters and the JSON types they must have (checked before any upstream
# call: LiteLLM would pass a wrong type on, and providers answer it differently).
_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "seed": ("an integer", _is_int),
    "user": ("a string", lambda v: isinstance(v, str)),
    "logprobs": ("true or false", lambda v: isinstance(v, bool)),
    "top_logprobs": ("an integer between 0 and 20", lambda v: _is_int(v) and 0 <= v <= 20),  # type: ignore[operator]
    "parallel_tool_calls": ("true or false", lambda v: isinstance(v, bool)),
    "logit_bias": ("an object", lambda v: isinstance(v, Mapping)),
    "stream_options": ("an object", lambda v: isinstance(v, Mapping)),
    "metadata": ("an object", lambda v: isinstance(v, Mapping)),
    "top_k": ("a positive integer", lambda v: _is_int(v) and v >= 1),  # type: ignore[operator]
    "reasoning_effort": ("a string", lambda v: isinstance(v, str)),
    "service_tier": ("a string", lambda v: isinstance(v, str)),
    "prompt_cache_key": ("a string", lambda v: isinstance(v, str)),
    "safety_identifier": ("a string", lambda v: isinstance(v, str)),
    "modalities": (
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    ),
}


def _check_types(data: Mapping[str, object]) -> RequestProblem | None:
    for name, (what, ok) in _TYPES.items():
        v = data.get(name)
        if v is not None and not ok(v):
            return RequestProblem(name, f"'{name}' must be {what}.")
    return _check_stop(data.get("stop")) or _check_tools(data)


def _check_stop(stop: object) -> RequestProblem | None:
    if stop is None or isinstance(stop, str):
        return None
    if isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        return None
    return RequestProblem("stop", "'stop' must be a string or a list of up to 4 strings.")


def _check_tools(data: Mapping[str, object]) -> RequestProblem | None:
    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return RequestProblem("tools", "'tools' must be a list of tools.")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                return RequestProblem(
                    f"tools[{i}]",
                    f"'tools[{i}]' must be an object with "
                    "'type': 'function' and a 'function' with a 'name'.",
                )
    choice = data.get("tool_choice")
    if choice is not None and not isinstance(choice, str | Mapping):
        return RequestProblem("tool_choice", "'tool_choice' must be a string or an object.")
    functions = data.get("functions")
    if functions is not None and not isinstance(functions, list):
        return RequestProblem("functions", "'functions' must be a list.")
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
