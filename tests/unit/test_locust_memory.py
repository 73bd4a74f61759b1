"""run_locust's memory record: RSS per process, growth measured after the warm-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadtests.run_locust import MemorySampler, write_memory

pytestmark = pytest.mark.unit


def test_growth_is_measured_from_the_first_sample_after_warm_up() -> None:
    sampler = MemorySampler(pid=1, every_s=10)
    sampler.rows = [(0.0, 11, 300.0), (0.0, 12, 300.0),        # starting
                    (60.0, 11, 800.0), (60.0, 12, 800.0),      # warmed up
                    (600.0, 11, 840.0), (600.0, 12, 920.0),    # the end
                    (600.0, 13, 50.0)]  # fmt: skip # one sample only: not counted
    summary = sampler.summary(warmup_s=60)
    assert summary["total_after_warmup_mb"] == 1600.0 and summary["total_end_mb"] == 1760.0
    assert summary["change_pct"] == 10.0 and summary["flat_within_10pct"]
    worker = summary["processes"]["12"]
    assert worker == {"first_mb": 300.0, "after_warmup_mb": 800.0, "end_mb": 920.0,
                      "max_mb": 920.0, "samples": 3}  # fmt: skip
    sampler.rows.append((610.0, 12, 1000.0))
    assert not sampler.summary(warmup_s=60)["flat_within_10pct"]


def test_samples_a_live_process_tree(tmp_path: Path) -> None:
    sampler = MemorySampler(pid=os.getpid(), every_s=60)
    sampler.sample()
    sampler.sample()
    assert {pid for _, pid, _ in sampler.rows} >= {os.getpid()}
    assert all(mb > 1 for _, _, mb in sampler.rows)
    summary = write_memory(tmp_path, sampler, warmup_s=0)
    assert (tmp_path / "locust_memory.csv").read_text().startswith("seconds,pid,rss_mb\n")
    assert str(os.getpid()) in summary["processes"]
