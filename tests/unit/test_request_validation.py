"""Pure checks of request bodies before anything is spent."""

from __future__ import annotations

import pytest

from extensions.protocols.validation import check_chat_request, check_embedding_request

pytestmark = pytest.mark.unit
OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": OK_MESSAGES},
        {"messages": [{"role": "system", "content": "be brief"}, *OK_MESSAGES]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"messages": [{"role": "assistant", "content": None, "tool_calls": []}]},
        {"messages": OK_MESSAGES, "temperature": 0, "top_p": 1, "max_tokens": 5, "stream": True},
    ],
)
def test_valid_chat_bodies_pass(body: dict[str, object]) -> None:
    assert check_chat_request(body) is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0]"),
        ({"messages": OK_MESSAGES, "temperature": 3}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": True}, "temperature"),
        ({"messages": OK_MESSAGES, "top_p": "1"}, "top_p"),
        ({"messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": OK_MESSAGES, "n": 1.5}, "n"),
        ({"messages": OK_MESSAGES, "stream": "yes"}, "stream"),
    ],
)
def test_invalid_chat_bodies_name_the_param(body: dict[str, object], param: str) -> None:
    problem = check_chat_request(body)
    assert problem is not None
    assert problem.param == param


@pytest.mark.parametrize("inp", ["hello", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_valid_embedding_inputs(inp: object) -> None:
    assert check_embedding_request({"input": inp}) is None


@pytest.mark.parametrize("inp", [None, "", [], [1, "a"], {"text": "x"}, [True]])
def test_invalid_embedding_inputs(inp: object) -> None:
    problem = check_embedding_request({"input": inp})
    assert problem is not None and problem.param == "input"
