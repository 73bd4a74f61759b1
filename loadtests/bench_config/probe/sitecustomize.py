"""Diagnostics for ``loadtests/benchmark.py --gc-probe`` (never loaded otherwise).

Put on PYTHONPATH of a server it records every garbage collection longer than 2 ms
(epoch time, generation, milliseconds) to ``$BENCH_GC_DIR/gc-<pid>.txt``: a collection
runs on the thread that triggered it, usually the event loop, so these are stalls.
With ``BENCH_GC_FREEZE_FILE`` set it also calls ``gc.collect(); gc.freeze()`` once that
file exists (the benchmark creates it when the server is up), to try what moving the
start-up heap out of the collector's reach does. With ``BENCH_ORT_THREADS=N`` every
ONNX Runtime session gets N intra-op threads and no spin-waiting (what the encoder's
thread pool costs: by default one spinning thread per core).
"""

import gc
import os
import sys
import threading
import time

_DIR = os.environ.get("BENCH_GC_DIR")
_FREEZE_FILE = os.environ.get("BENCH_GC_FREEZE_FILE")
_ORT_THREADS = os.environ.get("BENCH_ORT_THREADS")
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
    frozen = False
    path = os.path.join(_DIR or ".", f"gc-{os.getpid()}.txt")
    while True:
        time.sleep(0.5)
        if _FREEZE_FILE and not frozen and os.path.exists(_FREEZE_FILE):
            gc.collect()
            gc.freeze()
            frozen = True
            _rows.append(f"{time.time():.3f} freeze {gc.get_freeze_count()}\n")
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


def _patch_onnxruntime(threads: int) -> None:
    """Give every InferenceSession ``threads`` intra-op threads, no spinning (when imported)."""
    import builtins

    original_import = builtins.__import__

    def patch() -> None:
        import onnxruntime as ort

        base = ort.InferenceSession

        class Session(base):
            def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs):
                options = sess_options or ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                super().__init__(path_or_bytes, options, *args, **kwargs)

        ort.InferenceSession = Session

    def watching_import(name, *args, **kwargs):
        module = original_import(name, *args, **kwargs)
        ort = sys.modules.get("onnxruntime")
        if builtins.__import__ is watching_import and hasattr(ort, "InferenceSession"):
            builtins.__import__ = original_import
            patch()
        return module

    builtins.__import__ = watching_import


if _ORT_THREADS:
    _patch_onnxruntime(int(_ORT_THREADS))

if _DIR:
    gc.callbacks.append(_callback)
    _start_writer()
    os.register_at_fork(after_in_child=_after_fork)
