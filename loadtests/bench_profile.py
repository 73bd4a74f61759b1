"""Where a server's CPU goes during a benchmark window: py-spy, summarised.

``loadtests/benchmark.py --profile DIR`` samples every process of the server under test
(``py-spy record --subprocesses --nonblocking``, 100 Hz, active samples only) for the
measured window and writes py-spy's raw collapsed stacks to ``DIR``. This module turns
them into the numbers the report prints:

- **areas**: each sample is charged to the innermost frame from a named package
  (``extensions`` = ours, ``litellm``, the ASGI stack, pydantic, ONNX/tokenizers, ...),
  so "litellm 55%" means LiteLLM's own code was running, not something it called;
- **ours (inclusive)**: the share of samples with any frame of ``extensions/`` on the
  stack, and our functions ranked by inclusive share;
- **top self**: the functions whose own code was running most.

Shares are of the samples in which a thread was running (idle threads are not sampled),
so with a CPU-bound server they are shares of its CPU time. py-spy itself takes about a
tenth of a core per process it samples, taken from the server on a 2-core machine:
profiled windows are slower, so the figures to quote come from runs without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

RATE_HZ = 100
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")

# first match wins, tested against the frame's file (py-spy prints it relative to the
# sys.path entry it was imported from)
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ours", ("extensions/",)),
    ("litellm", ("litellm/",)),
    (
        "encoder (onnx, tokenizers)",
        (
            "onnxruntime/",
            "optimum/",
            "sentence_transformers/",
            "transformers/",
            "tokenizers/",
            "torch/",
        ),
    ),
    (
        "asgi (starlette, fastapi, servers)",
        ("starlette/", "fastapi/", "uvicorn/", "granian/", "h11/", "httptools/", "anyio/"),
    ),
    (
        "http client (httpx, aiohttp)",
        ("httpx/", "httpcore/", "aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/"),
    ),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("openai sdk", ("openai/",)),
    ("prometheus_client", ("prometheus_client/",)),
    ("redis", ("redis/",)),
    ("vector index", ("usearch/", "numpy/")),
    ("tokenizer (tiktoken)", ("tiktoken/",)),
    ("asyncio", ("asyncio/", "uvloop/")),
    ("json", ("json/", "orjson/")),
    ("logging", ("logging/",)),
)


def area_of(file: str) -> str | None:
    for name, prefixes in AREAS:
        if any(p in file for p in prefixes):
            return name
    return None


@dataclass(frozen=True)
class Frame:
    func: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.func} ({self.file})"


# a sample of a thread running with no Python frame (the ASGI server's own threads)
NATIVE = Frame("(native code, no Python frame)", "")


def parse_frame(text: str) -> Frame:
    m = _FRAME.match(text)
    return Frame(m["func"], m["file"]) if m else Frame(text, "")


def read_stacks(paths: Iterable[Path]) -> list[tuple[list[Frame], int]]:
    """Collapsed stacks (outermost frame first) and their sample counts."""
    out: list[tuple[list[Frame], int]] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            m = _LINE.match(line.strip())
            if m:
                # --subprocesses puts a "process N:<command line>" frame at the root
                names = [f for f in m["stack"].split(";") if not f.startswith("process ")]
                frames = [parse_frame(f) for f in names] or [NATIVE]
                out.append((frames, int(m["count"])))
    return out


def summarise(stacks: Sequence[tuple[list[Frame], int]], top: int = 12) -> dict[str, Any]:
    """Areas, our inclusive share and functions, and the top self-time functions."""
    total = sum(n for _, n in stacks)
    areas: Counter[str] = Counter()
    ours_inclusive = 0
    ours_funcs: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, n in stacks:
        owner = next((a for f in reversed(frames) if (a := area_of(f.file))), "other")
        areas[owner] += n
        if frames:
            self_time[frames[-1].label] += n
        mine = {f.label for f in frames if f.file.startswith("extensions/")}
        if mine:
            ours_inclusive += n
            ours_funcs.update({label: n for label in mine})

    def share(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "areas_pct": {a: share(n) for a, n in areas.most_common()},
        "ours_inclusive_pct": share(ours_inclusive),
        "ours_top_inclusive_pct": {f: share(n) for f, n in ours_funcs.most_common(top)},
        "top_self_pct": {f: share(n) for f, n in self_time.most_common(top)},
    }


class Recorder:
    """py-spy on a process tree for one window (``start`` before the load, ``finish``
    after it); the raw stacks go to ``out_dir/<label>.txt``."""

    def __init__(self, out_dir: Path) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
            exe = str(venv) if venv.exists() else None
        if exe is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy; it is in [dev])")
        self.exe = exe
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._path: Path | None = None

    def start(self, pid: int, seconds: float, label: str) -> None:
        self._path = self.out_dir / f"{label}.txt"
        cmd = [self.exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
               "--rate", str(RATE_HZ), "--duration", str(max(1, round(seconds))),
               "--format", "raw", "--nolineno", "--output", str(self._path)]  # fmt: skip
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def cpu_s(self) -> float:
        """CPU seconds py-spy has used so far (it runs beside the server: the benchmark
        counts it as its own, not as noise from other processes)."""
        if self._proc is None:
            return 0.0
        try:
            times = psutil.Process(self._proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def finish(self, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """Wait for py-spy; the window's summary (None if it recorded nothing)."""
        if self._proc is None or self._path is None:
            return None
        try:
            _, err = self._proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _, err = self._proc.communicate()
        self._proc = None
        if not self._path.exists():
            print(f"  py-spy wrote nothing: {err.decode(errors='replace')[-300:]}", flush=True)
            return None
        summary = summarise(read_stacks([self._path]))
        summary["stacks"] = str(self._path)
        return summary


def render(label: str, summary: dict[str, Any], top: int = 8) -> list[str]:
    areas = ", ".join(f"{a} {p:.0f}%" for a, p in summary["areas_pct"].items() if p >= 1)
    lines = [
        f"profile {label} ({summary['samples']} samples): {areas}",
        f"  extensions/ on the stack in {summary['ours_inclusive_pct']:.0f}% of samples; "
        "ours by inclusive share:",
    ]
    ours = list(summary["ours_top_inclusive_pct"].items())[:top]
    lines += [f"    {p:5.1f}%  {f}" for f, p in ours]
    lines.append("  top self time:")
    lines += [f"    {p:5.1f}%  {f}" for f, p in list(summary["top_self_pct"].items())[:top]]
    return lines
