"""Corrupt .pt2 archives (issue 16, found by fc.fuzz): one line, exit 2, no output."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from fc.cli import main


@pytest.fixture(scope="module")
def pt2(tmp_path_factory) -> bytes:
    buf = io.BytesIO()
    torch.export.save(torch.export.export(torch.nn.Conv2d(3, 4, 1).eval(),
                                          (torch.zeros(1, 3, 4, 4),)), buf)
    return buf.getvalue()


def _bad_local_header(data: bytes) -> bytes:
    """The local header magic of the weights member broken (the central directory intact):
    torch.export.load fails deep inside, after logging its own warnings."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    info = next(i for i in zf.infolist() if "weight" in i.filename)
    at = info.header_offset
    return data[:at] + b"PK\x00\x00" + data[at + 4:]


def _name_not_utf8(data: bytes) -> bytes:
    """A member name flagged UTF-8 that is not."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    name = zf.namelist()[0].encode()
    return data.replace(name, name[:-1] + b"\xff")


@pytest.mark.parametrize(("corrupt", "fragment"), [
    pytest.param(_bad_local_header, "torch.export.load failed", id="bad_header"),
    pytest.param(_name_not_utf8, "not a .pt2 file", id="name_not_utf8"),
])
def test_corrupt_archive_is_one_line(corrupt, fragment, pt2: bytes, tmp_path: Path,
                                     capsys) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(corrupt(pt2))
    assert main(["compile", "torch", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2"]


def test_member_above_the_limit_is_refused_from_the_zip_directory(pt2: bytes, tmp_path: Path,
                                                                  capsys) -> None:
    """A 2 MiB member deflated to a few KiB: judged by the size the directory declares,
    before torch inflates it (the limit lowered to 1 MiB to keep the test small)."""
    buf = io.BytesIO(pt2)
    prefix = zipfile.ZipFile(buf).namelist()[0].split("/")[0]
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{prefix}/data/weights/weight_9", bytes(2 << 20))
    path = tmp_path / "m.pt2"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < len(pt2) + 20_000
    assert main(["compile", "torch", str(path), "-o", str(tmp_path / "out"),
                 "--max-tensor-size", "1M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"member '{prefix}/data/weights/weight_9' would take 2 MiB, above fc's limit of " \
           "1 MiB per tensor" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2"]
