"""IR files against an adversary (issue 16): npz judged from its zip directory before any
data is read, member names that cannot become paths, outputs that are never half-written,
DOT sources that survive any name."""

from __future__ import annotations

import errno
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fc.errors import FcError, IRError, LimitError
from fc.ir import Graph, load, save
from fc.ir.draw import dot_available, render, to_dot
from fc.ir.serialize import atomic_write, read_npz, write_directory, write_npz
from fc.limits import limits


def _add_member(npz: Path, name: str, nbytes: int) -> None:
    """Append a deflated member of ``nbytes`` zeros (a few KiB on disk per MiB)."""
    with zipfile.ZipFile(npz, "a", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.uint8))
            header["shape"] = (nbytes,)
            np.lib.format.write_array_header_1_0(f, header)
            chunk = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)


def test_undeclared_big_member_is_refused_before_it_is_decompressed(saved_ir) -> None:
    gpath, ppath = saved_ir
    _add_member(ppath, "ghost.npy", 256 << 20)
    assert ppath.stat().st_size < 2 << 20  # a small file...
    tracemalloc.start()
    try:
        with pytest.raises(IRError, match=r"member 'ghost\.npy' is not a weight the graph "
                                          "declares"):
            load(gpath, ppath)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # ...that never became 256 MiB


def test_member_above_the_limit_is_refused_from_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    write_npz(path, {})
    _add_member(path, "big.npy", 8 << 20)
    with limits(max_tensor_bytes=4 << 20), pytest.raises(LimitError, match=r"member 'big'"):
        read_npz(path)
    with limits(max_total_bytes=4 << 20), pytest.raises(LimitError, match="in total"):
        read_npz(path)
    assert read_npz(path)["big"].shape == (8 << 20,)


def test_header_larger_than_its_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("x.npy", "w") as f:
        header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.float32))
        header["shape"] = (1 << 40,)  # 4 TiB declared, 0 bytes of data
        np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(FcError, match=r"member 'x'"):
        read_npz(path)


@pytest.mark.parametrize("name", [
    pytest.param("../../etc/x", id="parent_dirs"),
    pytest.param("/abs/path", id="absolute"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("layer1/conv/kernel:0", id="tf_style"),
    pytest.param("100%", id="percent"),
    pytest.param("..", id="dotdot"),
])
def test_weight_names_never_become_zip_paths(name: str, tmp_path: Path) -> None:
    g = Graph("g")
    x = g.add_input("x", (1, 2))
    w = g.add_const(name, np.arange(2, dtype=np.float32))
    g.outputs.append(g.add_node("Add", [x, w], name="add").output)
    gpath, ppath = save(g, tmp_path / "m")
    members = zipfile.ZipFile(ppath).namelist()
    assert len(members) == 1 and not {"/", "\\"} & set(members[0])  # one plain file name
    back = load(gpath, ppath)
    assert list(back.initializers) == [name]
    np.testing.assert_array_equal(back.initializers[name].const, w.const)


def test_plain_names_stay_readable_by_numpy(saved_ir) -> None:
    _, ppath = saved_ir
    assert sorted(np.load(ppath).files) == ["conv_b", "conv_w", "fc_b", "fc_w"]


@pytest.mark.parametrize("name", [
    pytest.param("relu\\", id="trailing_backslash"),
    pytest.param('say "hi"', id="quotes"),
    pytest.param("two\nlines", id="newline"),
    pytest.param("\\N\\G", id="dot_escapes"),
])
def test_any_name_gives_valid_dot(name: str, tmp_path: Path) -> None:
    g = Graph(name)
    x = g.add_input(name + "_in", (1, 2))
    g.outputs.append(g.add_node("Relu", [x], name=name).output)
    source = to_dot(g, title=name)
    assert source.count("\n") == len(source.splitlines())  # no raw newline inside a string
    if dot_available():
        assert render(g, tmp_path / "g.png", title=name).stat().st_size > 0


# -- output paths --------------------------------------------------------------------------

def test_atomic_write_to_a_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FcError, match=rf"^{tmp_path}: is a directory; give a file name$"):
        with atomic_write(tmp_path) as f:
            f.write(b"x")


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", full)
    with pytest.raises(FcError, match=r"a\.npz: cannot write \(No space left on device\)"):
        write_npz(tmp_path / "a.npz", {"x": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def _fill(names: list[str]):  # type: ignore[no-untyped-def]
    def fill(tmp: Path) -> None:
        for n in names:
            (tmp / n).write_text(n)

    return fill


def test_write_directory_new_and_existing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_directory(out, _fill(["a", "b"])) == [out / "a", out / "b"]
    (out / "keep").write_text("mine")
    write_directory(out, _fill(["b", "c"]))
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c", "keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_directory_in_the_way_moves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_directory(out, _fill(["a", "b", "c"]))
    (out / "b").unlink()
    (out / "b").mkdir()
    (out / "a").write_text("old")
    with pytest.raises(FcError, match=r"out/b: a directory is in the way of an output file"):
        write_directory(out, _fill(["a", "b", "c"]))
    assert (out / "a").read_text() == "old"  # nothing moved, nothing left behind
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]


def test_output_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(FcError, match="exists and is not a directory"):
        write_directory(tmp_path / "out", _fill(["a"]))


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second file system")
def test_output_on_another_file_system(tmp_path: Path) -> None:
    """OUT on another file system than its parent (a mount point, a Docker volume): here a
    symlink into /dev/shm. A temporary directory in the parent could not be moved in."""
    import tempfile

    real = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        assert os.stat(real).st_dev != os.stat(tmp_path).st_dev
        out = tmp_path / "out"
        out.symlink_to(real)
        write_directory(out, _fill(["a", "b"]))
        assert sorted(p.name for p in real.iterdir()) == ["a", "b"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    finally:
        import shutil

        shutil.rmtree(real)


def test_failure_while_filling_leaves_out_as_it_was(tmp_path: Path) -> None:
    def fill(tmp: Path) -> None:
        (tmp / "a").write_text("new")
        raise FcError("boom")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FcError, match="boom"):
        write_directory(out, fill)
    assert list(out.iterdir()) == []
