"""gc.freeze after start-up: what it freezes and that it is logged."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from extensions.proxy.heap import freeze_heap

pytestmark = pytest.mark.unit


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_moves_live_objects_to_the_permanent_generation(
    unfrozen: None, caplog: pytest.LogCaptureFixture
) -> None:
    kept = [object() for _ in range(1000)]
    with caplog.at_level("INFO", logger="gateway.heap"):
        frozen = freeze_heap()
    assert frozen >= len(kept) and gc.get_freeze_count() >= len(kept)
    assert f"froze the start-up heap: {frozen} objects" in caplog.text


def test_garbage_is_collected_before_freezing(unfrozen: None) -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.collect()
    before = len(gc.get_objects())
    for _ in range(500):
        Cycle()  # unreachable cycles: only the collector frees them
    assert len(gc.get_objects()) >= before + 500
    freeze_heap()
    assert gc.get_freeze_count() < before + 500
