"""Key verification and presentation, as pure functions."""

from __future__ import annotations

import pytest

from extensions.access.keys import KeyVerifier, Role, bearer_key
from extensions.pipeline.admission import presented_key
from extensions.pipeline.errors import Unauthenticated

pytestmark = pytest.mark.unit


def test_master_key_verifies() -> None:
    principal = KeyVerifier.from_master_key("sk-master").verify("sk-master")
    assert principal is not None and principal.role is Role.OPERATOR


@pytest.mark.parametrize("presented", [None, "", "sk-maste", "sk-master2", "Bearer sk-master"])
def test_other_keys_are_refused(presented: str | None) -> None:
    assert KeyVerifier.from_master_key("sk-master").verify(presented) is None


def test_verifier_keeps_only_a_digest() -> None:
    v = KeyVerifier.from_master_key("sk-master")
    assert b"sk-master" not in v.master_digest
    assert "sk-master" not in repr(v)


def test_empty_master_key_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyVerifier.from_master_key("")


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("abc", None),
        ("Bearer Bearer abc", None),
        ("Bearer ", None),
        ("Bearer a b", None),
    ],
)
def test_only_bearer_keys_are_read(header: str, key: str | None) -> None:
    assert bearer_key(header) == key


def test_x_api_key_only_where_the_protocol_uses_it() -> None:
    assert presented_key({"x-api-key": "k"}, x_api_key=True) == "k"
    assert presented_key({"x-api-key": "k"}, x_api_key=False) is None
    assert presented_key({"authorization": "Bearer a", "x-api-key": "k"}, x_api_key=True) == "a"
    with pytest.raises(Unauthenticated):
        presented_key({"authorization": "Basic a"}, x_api_key=True)
