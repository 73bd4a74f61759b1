"""Several workers with per-process state: the launcher says what each keeps alone."""

from __future__ import annotations

import pytest

from extensions.launcher import (
    DEFAULT_GATEWAY_CONFIG,
    DEFAULT_LITELLM_CONFIG,
    ProxyLaunch,
    check_configs,
    per_worker_state,
    warn_per_worker_state,
)

pytestmark = pytest.mark.unit


def test_embedded_default_keeps_everything_in_process() -> None:
    config = check_configs(ProxyLaunch())
    assert per_worker_state(config) == [
        "caches (cache.tier: memory)",
        "rate limits, budgets and usage (access.limits.store: memory)",
        "dashboard counters (observability.dashboard.store: memory)",
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_warning_only_with_several_workers(
    workers: int, capsys: pytest.CaptureFixture[str]
) -> None:
    launch = ProxyLaunch(DEFAULT_LITELLM_CONFIG, DEFAULT_GATEWAY_CONFIG, workers=workers)
    warn_per_worker_state(launch, check_configs(launch))
    err = capsys.readouterr().err
    if workers == 1:
        assert err == ""
    else:
        assert "2 workers, and each keeps its own caches (cache.tier: memory)" in err
        assert "access.limits.store: redis" in err
