"""Ctrl-C (issue 16): fcc exits 130 with "interrupted", and OUT is complete or as it was —
never half-written, never a temporary directory left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fc import interrupt
from fc.cli import main
from fc.ir.serialize import write_directory


@pytest.fixture
def handler():  # type: ignore[no-untyped-def]
    before = signal.getsignal(signal.SIGINT)
    interrupt.install()
    interrupt.reset()
    yield
    signal.signal(signal.SIGINT, before)
    interrupt.reset()


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_deferred_holds_ctrl_c_to_its_end(handler) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            _ctrl_c()
            done.append("rest of the section")
    assert done == ["rest of the section"] and interrupt.interrupted()


def test_ctrl_c_while_filling_leaves_out_as_it_was(handler, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def fill(tmp: Path) -> None:
        (tmp / "a").write_text("a")
        _ctrl_c()
        (tmp / "b").write_text("b")  # pragma: no cover - interrupted before

    with pytest.raises(KeyboardInterrupt):
        write_directory(out, fill)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_moving_in_completes_the_move(handler, tmp_path: Path,
                                                   monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    real_replace = os.replace

    def replace_then_ctrl_c(src, dst):  # type: ignore[no-untyped-def]
        real_replace(src, dst)
        if not interrupt.interrupted():
            _ctrl_c()

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)

    def fill(tmp: Path) -> None:
        for n in "abc":
            (tmp / n).write_text(n)

    with pytest.raises(KeyboardInterrupt):
        write_directory(out, fill)
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]  # complete, no temp


def test_a_swallowed_ctrl_c_still_stops_fcc(handler, tmp_path: Path, capsys,
                                            monkeypatch) -> None:
    """A library that swallows KeyboardInterrupt (a bare except, a finalizer) cannot make
    fcc write its output as if nothing happened."""
    import fc.api

    real = fc.api.import_model

    def swallowing(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            _ctrl_c()
        except KeyboardInterrupt:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(fc.api, "import_model", swallowing)
    out = tmp_path / "out"
    assert main(["compile", "mxnet", "mobilenet0.5", "-o", str(out), "--no-png"]) == 130
    assert capsys.readouterr().err == "fcc: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def _wait_for_library(pid: int, name: str, timeout: float = 60.0) -> None:
    """Block until process ``pid`` has loaded a shared library whose path contains ``name``
    (so the signal lands in a known phase, whatever the machine's load)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if name in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            return  # gone already
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize(("library", "delay"), [
    pytest.param("_multiarray_umath", 0.0, id="during_imports"),  # fc.cli imports numpy
    pytest.param("libmxnet", 0.5, id="during_the_mxnet_model"),
])
def test_real_ctrl_c(library: str, delay: float, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "fc", "compile", "mxnet", "mobilenet0.5", "-o",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    _wait_for_library(proc.pid, library)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    left = sorted(p.name for p in tmp_path.iterdir())
    if proc.returncode == 0:  # finished before the signal: then the output is complete
        assert left == ["out"] and len(os.listdir(out)) == 6
    else:
        assert (proc.returncode, err.decode()) == (130, "fcc: interrupted\n")
        assert left == []


def _wait_for_temp(directory: Path, pid: int, timeout: float = 120.0) -> None:
    """Block until fcc has made its temporary output directory (``.out.*.tmp``) in
    ``directory``: the signal then lands while the output files are being written."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and Path(f"/proc/{pid}").exists():
        if any(p.name.startswith(".out.") for p in directory.iterdir()):
            return
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
@pytest.mark.parametrize("phase", [
    pytest.param(("libmxnet", 1.0), id="mxnet_plus_1s", marks=pytest.mark.slow),
    pytest.param(("libmxnet", 2.5), id="mxnet_plus_2_5s", marks=pytest.mark.slow),
    pytest.param(("temp", 0.0), id="while_writing"),
    pytest.param(("temp", 0.05), id="while_writing_plus_50ms", marks=pytest.mark.slow),
])
@pytest.mark.parametrize("existing", [pytest.param(False, id="new_out"),
                                      pytest.param(True, id="existing_out")])
def test_ctrl_c_at_varying_moments(phase: tuple[str, float], existing: bool,
                                   tmp_path: Path) -> None:
    """Wherever Ctrl-C lands, fcc exits 130 with "fcc: interrupted" and leaves OUT as it was
    (no OUT, or OUT with its old files only) with no temporary directory, or it had already
    finished and OUT is complete: never exit 0 with a partial OUT, never a silent kill."""
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    proc = subprocess.Popen([sys.executable, "-m", "fc", "compile", "mxnet", "mobilenet0.5",
                             "-o", str(out), "--no-png"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    what, delay = phase
    if what == "temp":
        _wait_for_temp(out if existing else tmp_path, proc.pid)
    else:
        _wait_for_library(proc.pid, what)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    before = ["keep.txt"] if existing else None
    now = sorted(os.listdir(out)) if out.exists() else None
    expected = ["out"] if existing or proc.returncode == 0 else []
    assert sorted(p.name for p in tmp_path.iterdir()) == expected  # no .out.*.tmp
    if proc.returncode == 0:  # finished before the signal: then the output is complete
        assert now is not None and len(set(now) - set(before or [])) == 5, now
    else:
        assert (proc.returncode, err.decode()) == (130, "fcc: interrupted\n")
        assert now == before
