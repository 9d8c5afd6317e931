"""Helpers shared by the benchmark scripts: timing, peak memory, tables, the ResNet-50 export.

The scripts import this module as ``_common`` (``python benchmarks/<name>.py`` puts
``benchmarks/`` first on ``sys.path``; spawned children inherit that path).

Peak memory, and why it is measured this way:

* **Peak RSS increase** (``PeakRSS``): Linux keeps a process's resident-set high-water mark
  (``VmHWM``), and writing ``5`` to ``/proc/self/clear_refs`` resets it to the current RSS.
  So "reset, run, read VmHWM minus the RSS at the reset" is exactly the extra resident memory
  the run needed at its peak, whatever allocated it (numpy, BLAS scratch, onnxruntime's
  arena, torch's allocator). It is measured in a fresh spawned process per engine, so one
  engine's freed-but-cached memory cannot hide another's. Where the reset is refused, the
  fallback is ``ru_maxrss`` minus the RSS before the run, which is wrong when an earlier phase
  of the process peaked higher (and in a child, whose ``ru_maxrss`` starts at its parent's
  RSS: see ``ChildRun``); ``method`` says which one was used.
* **tracemalloc peak**: the peak of Python-heap allocations (numpy registers its buffers with
  tracemalloc, so arrays count); it misses memory allocated by C++ libraries (onnxruntime,
  torch, BLAS scratch) and slows pure-Python code down, so it is never used while timing.
"""

from __future__ import annotations

import datetime
import gc
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MiB",
    "PeakRSS",
    "Timing",
    "time_runs",
    "rss_kib",
    "tracemalloc_peak",
    "run_isolated",
    "ChildRun",
    "run_child",
    "REPORT_PEAK_RSS",
    "format_table",
    "print_table",
    "fmt_mib",
    "machine_line",
    "numpy_blas_threads",
    "blas_info",
    "export_resnet50_onnx",
    "verdict",
]

MiB = 1024 * 1024


# -- timing ---------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall times of repeated runs, in seconds (warm-up runs excluded)."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def median_ms(self) -> float:
        return self.median * 1e3

    def spread(self) -> str:
        """``min-max`` in ms, to show how noisy the median is."""
        return f"{min(self.times) * 1e3:.0f}-{max(self.times) * 1e3:.0f}"


def time_runs(fn: Callable[[], Any], *, repeat: int, warmup: int = 1, settle: float = 0.0
              ) -> tuple[Timing, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times timed; return the timing and
    the last result.

    ``settle`` seconds of sleep come first. Engines' thread pools keep spinning for a while
    after a call (OpenBLAS busy-waits ~0.1 s, onnxruntime spins, OpenMP has a block time);
    measured here, a torch run right after an fc (OpenBLAS) run took 0.8-2.4 s instead of
    35 ms. So engines are timed one after the other, never interleaved, with a pause between.
    A ``gc.collect()`` before each run keeps collector pauses of earlier garbage out of it.
    """
    if settle:
        time.sleep(settle)
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return Timing(times), result


# -- memory ---------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib() -> int:
    """Current resident set size in KiB (``VmRSS``; ``ru_maxrss`` where /proc is missing)."""
    rss = _status_kib("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Context manager: the peak resident memory *added* by the code inside it.

    ``with PeakRSS() as m: work()`` then ``m.increase_mib``, ``m.peak_mib`` (the absolute
    process peak during the block), ``m.base_mib`` and ``m.method``.
    """

    def __enter__(self) -> PeakRSS:
        gc.collect()
        #: the process's peak so far (imports, loading), before the reset forgets it
        self.hwm_before_kib = _status_kib("VmHWM") or 0
        self.method = ("VmHWM after clear_refs reset" if _reset_peak()
                       else "ru_maxrss (peak reset unavailable)")
        self.base_kib = rss_kib()
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM") if self.method.startswith("VmHWM") else None
        self.peak_kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @property
    def increase_mib(self) -> float:
        return max(0, self.peak_kib - self.base_kib) / 1024

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def base_mib(self) -> float:
        return self.base_kib / 1024

    @staticmethod
    def process_peak_mib(*earlier: PeakRSS) -> float:
        """The process's whole-life peak RSS now: the high-water marks the ``PeakRSS`` blocks
        reset, and the current one. (Not ``ru_maxrss``: see ``ChildRun``.)"""
        now = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max([now, *(m.hwm_before_kib for m in earlier)]) / 1024


def tracemalloc_peak(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak traced Python-heap allocation (MiB, numpy arrays included) while ``fn`` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / MiB, result


def run_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` in a fresh *spawned* Python process and return its result.

    ``fn`` must be a module-level function of an importable module or of the running script
    (which must guard its entry point with ``if __name__ == "__main__"``). A fresh process
    per measurement keeps memory cached by one engine's allocator out of another's figure.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


#: Python code a child runs first so that it reports its own peak RSS on exit (see ChildRun)
REPORT_PEAK_RSS = """
import atexit, sys
def _report_peak_rss():
    with open("/proc/self/status") as f:
        hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")]
    print(f"BENCH vmhwm_kib {hwm[0] if hwm else -1}", file=sys.stderr, flush=True)
atexit.register(_report_peak_rss)
"""
_HWM_LINE = re.compile(r"^BENCH vmhwm_kib (-?\d+)$", re.MULTILINE)


@dataclass
class ChildRun:
    """One command run as a child process: wall time, its output, and its peak RSS if it ran
    ``REPORT_PEAK_RSS`` (``None`` otherwise).

    Why not ``getrusage(RUSAGE_CHILDREN)`` or ``os.wait4``: on Linux a child's ``ru_maxrss``
    starts from the *parent's* resident set at the time of the fork (the kernel records the
    pre-exec memory map's high-water mark), so a child started by a 700 MiB benchmark process
    "peaks" at 700 MiB however little it uses. ``VmHWM`` belongs to the memory map the child
    gets at exec, so it is the child's own peak. Grandchildren (e.g. Graphviz's ``dot``) are
    not included.
    """

    wall: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def peak_rss_mib(self) -> float | None:
        m = _HWM_LINE.search(self.stderr)
        return int(m.group(1)) / 1024 if m and int(m.group(1)) >= 0 else None


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> ChildRun:
    """Run ``cmd`` to completion, capturing its output; the wall time includes start-up."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    return ChildRun(time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr)


# -- numerics and printing --------------------------------------------------------------------


def fmt_mib(mib: float) -> str:
    return f"{mib:.1f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print(f"\n{title}")
    print(format_table(headers, rows))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def numpy_blas_threads() -> str:
    """How many threads numpy's OpenBLAS uses (asked through ctypes; "?" if not found)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        libs = set()
    for path in sorted(libs):
        lib = ctypes.CDLL(path)
        for symbol in ("openblas_get_num_threads64_", "openblas_get_num_threads",
                       "scipy_openblas_get_num_threads64_"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                return str(getter())
    return "?"


def blas_info() -> str:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel (core type), threads.

    ``architecture`` is the kernel set OpenBLAS chose (``OPENBLAS_CORETYPE`` or its own CPU
    detection): it bounds every GEMM the golden executor runs."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS: (threadpoolctl not installed: pip install -e '.[bench]')"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "BLAS: (no BLAS library loaded)"
    return "; ".join(
        f"BLAS: {p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture', '?')}, "
        f"{p.get('num_threads')} threads ({p.get('threading_layer', '?')}), "
        f"{Path(p.get('filepath', '?')).name}" for p in pools)


def machine_line() -> str:
    """Date, cores and library versions: the context every printed figure depends on."""
    parts = [datetime.date.today().isoformat(), f"{os.cpu_count()} cores",
             platform.processor() or platform.machine(), f"python {platform.python_version()}",
             f"numpy {np.__version__}",
             # numpy's OpenBLAS kernels: this workplace pins Haswell (AVX2) even on AVX-512
             # CPUs, which bounds fc's GEMMs (SkylakeX kernels are ~1.7x faster here).
             f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}"]
    try:
        load = os.getloadavg()
        parts.append(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")
    except OSError:
        pass
    return ", ".join(parts)


# -- the ResNet-50 model shared by the benchmarks -----------------------------------------------


def export_resnet50_onnx(path: str | os.PathLike, *, seed: int = 0, keep_bn: bool = True,
                         opset: int = 17) -> Path:
    """Export fc's torch zoo ResNet-50 (seeded random weights) to ONNX with a dynamic batch.

    torch 2.13's default exporter is the dynamo one, which needs onnxscript (not installed);
    ``dynamo=False`` selects the TorchScript exporter. In eval mode that exporter folds every
    BatchNormalization into its Conv by itself; ``keep_bn`` exports with
    ``TrainingMode.PRESERVE`` instead (the model is in eval mode, so BN is exported as
    inference BN), which keeps the 53 BN nodes: the "IR for reconstruct" is then the
    trainable graph and fc's compile pipeline has the folding to do.
    """
    import warnings

    import torch

    from fc.zoo.torch import resnet50

    model = resnet50(seed)
    path = Path(path)
    training = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter DeprecationWarning
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                          opset_version=opset, training=training, input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path
