"""A short, seeded run of the loaders' fuzz harness (``fc.fuzz``): every format fc reads,
mutated byte-wise and structurally, gives a result or one FcError line. The long run is
``benchmarks/fuzz_loaders.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fc.errors import FcError
from fc.fuzz import FORMATS, Format, fuzz, judge

#: cases per format in the default run (a .pt2 case runs torch.export.load: seconds each; a
#: .keras case builds and traces a Keras model: half a second; a SavedModel is loaded by TF)
CASES = {"torch-pt2": 5, "tf-keras": 10, "tf-savedmodel": 20, "tf-h5": 40}
DEFAULT_CASES = 60
#: formats whose few short-run mutants may all be refused: a config is all validation, and
#: a .pt2 (CRC-checked zip members) rarely survives a mutation; their long runs accept some
ALL_REFUSED = {"quant-config", "torch-pt2"}


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in FORMATS])
def test_mutated_inputs_never_break_the_promise(name: str) -> None:
    cases = CASES.get(name, DEFAULT_CASES)
    report = fuzz(FORMATS[name], cases=cases, seed=0)
    found = {k: f"{e.message} ({len(e.data)}-byte input)" for k, e in report.examples.items()}
    assert report.failures == 0, found
    assert report.cases == cases
    # the mutants reach past the first byte: some are accepted, some refused
    assert report.outcomes["refused"] > 0, report.outcomes
    assert name in ALL_REFUSED or report.outcomes["accepted"] > 0, report.outcomes


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in FORMATS])
def test_seeds_are_accepted(name: str) -> None:
    fmt = FORMATS[name]
    assert [judge(fmt, s)[1] for s in fmt.seeds()] == ["accepted"] * len(fmt.seeds())


def _target(data: bytes, tmp: Path) -> None:
    if data.startswith(b"\x00"):
        raise IndexError("a loader bug")
    if data.startswith(b"\x01"):
        raise FcError("two\nlines")
    raise FcError("one clean line")


def test_the_harness_reports_what_breaks_the_promise() -> None:
    fmt = Format("toy", lambda: [b"\x00", b"\x01", b"\x02"], _target)
    assert judge(fmt, b"\x02")[1] == "refused"
    bug, outcome = judge(fmt, b"\x00")
    assert outcome == "failure" and bug is not None and bug.kind.startswith("IndexError at ")
    assert judge(fmt, b"\x01")[0].kind.startswith("multi-line FcError")  # type: ignore[union-attr]
    report = fuzz(fmt, cases=40, seed=1)
    assert report.failures > 0 and report.outcomes["refused"] > 0


def _runner():  # type: ignore[no-untyped-def]
    import importlib.util

    path = Path(__file__).parents[2] / "benchmarks" / "fuzz_loaders.py"
    spec = importlib.util.spec_from_file_location("fuzz_loaders", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_long_runs_table_gives_each_format_its_own_counts() -> None:
    """Two formats in one run: each row is that format's report (the 2026-12-02 note gave
    calibration-table and image-list the same 8,880 cases), the outcomes add up to the
    cases, and the distinct inputs are counted (a format with one possible input has 1)."""
    a = fuzz(Format("alpha-format-with-a-long-name", lambda: [b"\x02" * 8], _target),
             cases=40, seed=1)
    b = fuzz(Format("beta", lambda: [b"\x02"], lambda d, t: None), cases=20, seed=1)
    assert (a.cases, b.cases) == (40, 20)
    assert 1 < a.distinct <= 40 and b.distinct <= 20
    assert sum(a.outcomes.values()) == 40 and b.outcomes["accepted"] == 20
    rows = _runner().table([a, b]).splitlines()
    head = rows[0].split()
    cells = [dict(zip(head[:7], r.split()[:7], strict=True)) for r in rows[1:]]
    assert [c["format"] for c in cells] == [a.format, "beta"]
    assert [int(c["cases"]) for c in cells] == [40, 20]
    assert [int(c["distinct"]) for c in cells] == [a.distinct, b.distinct]
    assert int(cells[0]["refused"]) + int(cells[0]["failures"]) + int(cells[0]["accepted"]) == 40
