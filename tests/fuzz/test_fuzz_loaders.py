"""A short, seeded run of the loaders' fuzz harness (``fc.fuzz``): every format fc reads,
mutated byte-wise and structurally, gives a result or one FcError line. The long run is
``benchmarks/fuzz_loaders.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fc.errors import FcError
from fc.fuzz import FORMATS, Format, fuzz, judge

#: cases per format in the default run (a .pt2 case runs torch.export.load: seconds each; a
#: .keras case builds and traces a Keras model: half a second)
CASES = {"torch-pt2": 5, "tf-keras": 10}
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
