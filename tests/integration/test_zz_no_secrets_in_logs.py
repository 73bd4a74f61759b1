"""Runs last among the integration tests: no configured key or provider secret appears
in any log line written by the processes of this test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.loadtest_config import loadtest_keys
from tests.integration import (
    test_access,
    test_isolation,
    test_limits,
    test_observability,
    test_reload,
)
from tests.support.stack import TEST_MASTER_KEY, TEST_SIM_KEY

pytestmark = pytest.mark.integration

SECRETS = [
    TEST_MASTER_KEY, TEST_SIM_KEY, test_access.SUPPORT_KEY.key, test_access.SUPPORT_KEY_2,
    test_access.RESEARCH_KEY, test_limits.KEY_A, test_limits.KEY_B, test_limits.KEY_SOLO,
    test_limits.KEY_SPENDER, test_limits.KEY_TOKENS, test_observability.APP_KEY, test_reload.KEY,
    *(key for _, key in test_isolation.KEYS.values()), *loadtest_keys().values(),
]  # fmt: skip


def test_no_secret_in_any_log(log_dir: Path) -> None:
    logs = [p for p in log_dir.rglob("*") if p.is_file() and p.suffix in (".log", ".jsonl")]
    assert logs, "the session wrote no logs to scan"
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"{path.name} contains a configured secret"
