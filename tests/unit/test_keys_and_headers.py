"""Key verification and the deployment headers, as pure functions."""

from __future__ import annotations

import pytest

from extensions.access.keys import KeyVerifier, Role, strip_bearer
from extensions.hooks.headers import CallInfo, deployment_headers

pytestmark = pytest.mark.unit


def test_master_key_verifies_with_or_without_bearer() -> None:
    v = KeyVerifier.from_master_key("sk-master")
    for presented in ("sk-master", "Bearer sk-master", "bearer  sk-master "):
        principal = v.verify(presented)
        assert principal is not None and principal.role is Role.OPERATOR


@pytest.mark.parametrize("presented", [None, "", "sk-maste", "sk-master2", "Bearer "])
def test_other_keys_are_refused(presented: str | None) -> None:
    assert KeyVerifier.from_master_key("sk-master").verify(presented) is None


def test_verifier_keeps_only_a_digest() -> None:
    v = KeyVerifier.from_master_key("sk-master")
    assert b"sk-master" not in v.master_digest
    assert "sk-master" not in repr(v)


def test_empty_master_key_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyVerifier.from_master_key("")


def test_strip_bearer() -> None:
    assert strip_bearer("Bearer abc") == "abc"
    assert strip_bearer("abc") == "abc"


def test_deployment_headers_from_litellm_call_info() -> None:
    info = CallInfo.from_litellm(
        {"metadata": {"model_group": "gpt-sim"}},
        {"model_id": "gpt-sim-b", "custom_llm_provider": "openai", "model_info": {"id": "x"}},
    )
    assert deployment_headers(info) == {
        "x-gateway-model-group": "gpt-sim",
        "x-gateway-deployment": "gpt-sim-b",
        "x-gateway-provider": "openai",
    }


def test_deployment_headers_fall_back_to_model_info_and_skip_unknowns() -> None:
    info = CallInfo.from_litellm({}, {"model_info": {"id": "claude-sim"}})
    assert deployment_headers(info) == {"x-gateway-deployment": "claude-sim"}
    assert deployment_headers(CallInfo.from_litellm({}, None)) == {}
