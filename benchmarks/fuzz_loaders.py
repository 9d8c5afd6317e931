"""Fuzz fc's loaders for as long as asked, and print what was tried and what broke.

    python benchmarks/fuzz_loaders.py --seconds 600            # 10 minutes per format
    python benchmarks/fuzz_loaders.py --seconds 60 --formats onnx ir-npz --out fuzz_failures

Each format (``fc.fuzz.FORMATS``: onnx, mxnet-symbol, mxnet-params, ir-json, ir-npz, torch-pt2,
quant-config, tf-pb, tf-keras, tf-savedmodel, tf-h5, calibration-table, image-list, image) is
fed inputs mutated byte-wise and structurally by hypothesis; a *failure* is anything but a result
or one ``FcError`` line (another exception, a multi-line message, a case over 20 s, a
MemoryError under the address-space cap). Progress is printed every 30 s; at the end, a table
per format (each row from that format's own report): cases, distinct inputs among them, the
accepted/refused/failure split, wall and CPU seconds, cases per CPU second; the load average at
the start and the end; then each failure kind with its message. Run one format per process
(``--formats NAME``, its own log) to keep the formats' figures apart. ``--out`` keeps each
failing input to reproduce it with ``fc.fuzz.run_case(FORMATS[name], Path(file).read_bytes())``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from fc.fuzz import FORMATS, Failure, Report, fuzz, save_failure


class _Log:
    """Keeps failing inputs (if asked) and prints progress every 30 s."""

    def __init__(self, out: Path | None):
        self.out = out
        self.saved = 0
        self.last = time.monotonic()

    def keep(self, failure: Failure) -> None:
        if self.out is not None:
            save_failure(failure, self.out, self.saved)
            self.saved += 1

    def progress(self, report: Report) -> None:
        if time.monotonic() - self.last >= 30:
            self.last = time.monotonic()
            print(f"  {report.format}: {report.cases} cases ({report.distinct} distinct), "
                  f"{report.failures} failures, load {_load()}",
                  flush=True)


def _keeper(path: Path | None):  # type: ignore[no-untyped-def]
    if path is None:
        return None

    def keep(data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return keep


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def table(reports: list[Report]) -> str:
    """One row per format, each from its own report: cases tried, how many of them were
    different inputs, the outcomes (accepted + refused + failures = cases), wall and CPU
    seconds, and cases per CPU second (the rate that does not depend on the machine's load)."""
    width = max([len("format"), *(len(r.format) for r in reports)]) + 2
    head = (f"{'format':<{width}}{'cases':>9}{'distinct':>10}{'accepted':>10}{'refused':>9}"
            f"{'failures':>10}{'kinds':>7}{'wall s':>8}{'cpu s':>8}{'cases/cpu s':>13}")
    rows = [head]
    for r in reports:
        assert r.outcomes["accepted"] + r.outcomes["refused"] + r.failures == r.cases, r
        rows.append(f"{r.format:<{width}}{r.cases:>9}{r.distinct:>10}{r.outcomes['accepted']:>10}"
                    f"{r.outcomes['refused']:>9}{r.failures:>10}{len(r.kinds):>7}"
                    f"{r.seconds:>8.0f}{r.cpu_seconds:>8.0f}"
                    f"{r.cases / max(r.cpu_seconds, 1e-9):>13.1f}")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="per format (default 60)")
    p.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    p.add_argument("--out", type=Path, help="directory for the inputs that failed")
    p.add_argument("--seed", type=int, help="a fixed seed (default: random)")
    p.add_argument("--keep-last", type=Path, metavar="FILE",
                   help="write each input to FILE before it runs: after a case that kills "
                        "the process (a C++ abort in a framework), FILE holds it")
    p.add_argument("--memory-gib", type=float, default=8.0,
                   help="address-space cap of this process, so a blow-up is a MemoryError "
                        "(default 8)")
    args = p.parse_args()
    cap = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(f"fuzz_loaders: {args.seconds:.0f} s per format, address space <= "
          f"{args.memory_gib:g} GiB, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}"
          f", nice {os.nice(0)}, load average {_load()}", flush=True)

    reports: list[Report] = []
    for name in args.formats:
        print(f"{name}: fuzzing...", flush=True)
        log = _Log(args.out)
        reports.append(fuzz(FORMATS[name], seconds=args.seconds, seed=args.seed,
                            on_failure=log.keep, progress=log.progress,
                            on_case=_keeper(args.keep_last)))

    print()
    print(table(reports))
    print(f"load average at the end: {_load()}")
    for r in reports:
        for kind, n in r.kinds.most_common():
            # messages quote the mutated input: escaped, so that a lone surrogate or a line
            # break cannot end the report (the quant-config run's UnicodeEncodeError)
            message = r.examples[kind].message.encode("unicode_escape").decode("ascii")
            print(f"{r.format}: {n} x {kind}: {message}")
    return 1 if any(r.failures for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
