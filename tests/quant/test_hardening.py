"""Malformed quantization configs and calibration tables (issue 16, found by fc.fuzz): one
line naming the file."""

from __future__ import annotations

import pytest

from fc.errors import FcError
from fc.quant.calibration import TABLE_FORMAT, CalibrationTable
from fc.quant.config import ConfigError, load_config
from fc.quant.strategies import Range


@pytest.mark.parametrize("text", [
    pytest.param("\x00MODEL: {}\n", id="nul_character"),
    pytest.param("MODEL:\n  graph: [\n", id="unclosed_flow"),
    pytest.param("a: b: c\n", id="mapping_in_scalar"),
])
def test_invalid_yaml_is_one_line(text: str, tmp_path) -> None:
    path = tmp_path / "q.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: invalid YAML") as err:
        load_config(path)
    assert "\n" not in str(err.value)


_ENTRY = '{"min": -1.0, "max": 2.0, "threshold": 2.0}'


def _table(entry: str) -> str:
    return (f'{{"format": "{TABLE_FORMAT}", "version": 1, "method": "max", "meta": {{}}, '
            f'"tensors": {{"conv": {entry}}}}}')


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param(_table(_ENTRY.replace("2.0}", "NaN}")), "threshold must be a finite float32 "
                 "number, got nan", id="nan_threshold"),
    pytest.param(_table(_ENTRY.replace("2.0,", "1e39,")), "max must be a finite float32 "
                 "number, got 1e+39", id="above_float32"),
    pytest.param(_table(_ENTRY.replace("-1.0", "true")), "min must be a finite float32 number, "
                 "got True", id="boolean"),
    pytest.param(_table(_ENTRY.replace("-1.0", "3.0")), "needs min <= max", id="min_above_max"),
    pytest.param(_table(_ENTRY.replace("2.0}", "-2.0}")), "threshold >= 0",
                 id="negative_threshold"),
    pytest.param("[" * 100_000, "(JSON nested too deeply)", id="nested_100000_deep"),
])
def test_malformed_calibration_table_is_one_line(text: str, fragment: str, tmp_path) -> None:
    """Found by fc.fuzz: an infinite threshold made a ValueError deep in the scales."""
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(FcError) as err:
        CalibrationTable.read(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert fragment in str(err.value), str(err.value)


def test_well_formed_calibration_table_is_read(tmp_path) -> None:
    path = tmp_path / "table.json"
    path.write_text(_table(_ENTRY))
    assert CalibrationTable.read(path)["conv"] == Range(-1.0, 2.0, 2.0)


@pytest.mark.parametrize(("line", "fragment"), [
    pytest.param("a.png \u00b2", "unknown label '\u00b2'", id="superscript_digit_label"),
    pytest.param("a.png " + "9" * 5000, "unknown label '999", id="5000_digit_label"),
    pytest.param("a\0b.png 0", "the path holds a NUL character", id="nul_in_path"),
])
def test_malformed_image_list_line_is_one_line(line: str, fragment: str, tmp_path) -> None:
    """Found by fc.fuzz: int() of a non-ASCII digit, a NUL byte reaching the file system."""
    from fc.quant.accuracy import DatasetError, read_dataset

    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "val.txt"
    path.write_text(f"a.png 0\n{line}\n", encoding="utf-8")
    with pytest.raises(DatasetError) as err:
        read_dataset(path, tmp_path, num_classes=10)
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)
    assert fragment in str(err.value), str(err.value)
