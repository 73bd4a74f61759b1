"""Runs last among the integration tests: no configured key or provider secret appears
in any log line written by the processes of this test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import test_access, test_limits
from tests.support.stack import TEST_MASTER_KEY, TEST_SIM_KEY

pytestmark = pytest.mark.integration

SECRETS = [
    TEST_MASTER_KEY, TEST_SIM_KEY, test_access.SUPPORT_KEY.key, test_access.SUPPORT_KEY_2,
    test_access.RESEARCH_KEY, test_limits.KEY_A, test_limits.KEY_B, test_limits.KEY_SOLO,
    test_limits.KEY_SPENDER, test_limits.KEY_TOKENS,
]  # fmt: skip


def test_no_secret_in_any_log(log_dir: Path) -> None:
    logs = [p for p in log_dir.rglob("*.log") if p.is_file()]
    assert logs, "the session wrote no logs to scan"
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"{path.name} contains a configured secret"
