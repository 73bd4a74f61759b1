"""Diagnostics for ``loadtests/benchmark.py --gc-probe`` (never loaded otherwise).

Put on PYTHONPATH of a server it records every garbage collection longer than 2 ms
(epoch time, generation, milliseconds) to ``$BENCH_GC_DIR/gc-<pid>.txt``: a collection
runs on the thread that triggered it, usually the event loop, so these are stalls.
"""

import gc
import os
import threading
import time

_DIR = os.environ.get("BENCH_GC_DIR")
_started = [0.0]
_rows: list[str] = []


def _callback(phase: str, info: dict) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms > 2.0:
        _rows.append(f"{time.time():.3f} {info['generation']} {ms:.1f}\n")


def _writer() -> None:
    path = os.path.join(_DIR or ".", f"gc-{os.getpid()}.txt")
    while True:
        time.sleep(0.5)
        if _rows:
            batch = _rows[:]
            del _rows[: len(batch)]
            with open(path, "a") as f:
                f.writelines(batch)


def _start_writer() -> None:
    threading.Thread(target=_writer, name="bench-gc-probe", daemon=True).start()


def _after_fork() -> None:  # forked workers (granian) have no writer thread yet
    _rows.clear()
    _start_writer()


if _DIR:
    gc.callbacks.append(_callback)
    _start_writer()
    os.register_at_fork(after_in_child=_after_fork)
