"""The benchmark's profile summary (py-spy raw stacks -> areas, our functions, self time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench_profile import read_stacks, summarise

pytestmark = pytest.mark.unit

ROOT = 'process 7:"python -m litellm"'
RAW = "\n".join([
    f"{ROOT};run (granian/server/mp.py);handle (litellm/proxy/x.py);dumps (json/__init__.py) 30",
    f"{ROOT};run (granian/server/mp.py);__call__ (extensions/server/front.py);"
    "handle (litellm/proxy/x.py) 20",
    f"{ROOT};_bootstrap (threading.py);encode (extensions/embedding/encoder.py);"
    "run (onnxruntime/capi/session.py) 40",
    'process 8:"python -m litellm" 10',
])  # fmt: skip


def test_samples_are_charged_to_the_innermost_named_package(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    path.write_text(RAW)
    summary = summarise(read_stacks([path]))
    assert summary["samples"] == 100
    # the innermost frame of a named package (json is one); native-only samples: "other"
    assert summary["areas_pct"] == {"encoder (onnx, tokenizers)": 40.0, "json": 30.0,
                                    "litellm": 20.0, "other": 10.0}  # fmt: skip
    assert summary["ours_inclusive_pct"] == 60.0
    assert summary["ours_top_inclusive_pct"] == {
        "encode (extensions/embedding/encoder.py)": 40.0,
        "__call__ (extensions/server/front.py)": 20.0,
    }
    top = summary["top_self_pct"]
    assert top["run (onnxruntime/capi/session.py)"] == 40.0
    assert top["(native code, no Python frame) ()"] == 10.0
