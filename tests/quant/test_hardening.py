"""Malformed quantization configs and calibration tables (issue 16, found by fc.fuzz): one
line naming the file."""

from __future__ import annotations

import numpy as np
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


# -- YAML only YAML can say (fc.yamlio) ------------------------------------------------------

def _alias_bomb() -> str:
    """490 bytes that are 9^9 (387 million) strings once walked or printed."""
    levels = ['&l0 ["ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha", "ha"]']
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


_CONFIG = """MODEL:
    graph: 'g_graph.json'
QUAN:
    strategy: {value}
    qconfig:
        image_path: 'imgs'
"""


@pytest.fixture
def alarm():  # noqa: ANN201
    """A case that regresses hangs: fail after 20 s instead."""
    import signal

    def expire(signum, frame):  # noqa: ANN001
        raise AssertionError("no answer after 20 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(("value", "fragment"), [
    pytest.param(_alias_bomb(), "line 4: alias *l0: fc's configuration files take no YAML "
                 "aliases", id="alias_bomb_9_to_the_9"),
    pytest.param("[" * 3000 + "]" * 3000, "line 4: nested deeper than 64 levels",
                 id="nested_3000_deep"),
    pytest.param("2001-13-40", "line 4: timestamp value '2001-13-40' cannot be read "
                 "(ValueError: month must be in 1..12)", id="unquoted_bad_date"),
    pytest.param("9" * 5000, "line 4: int value '9999", id="5000_digit_integer"),
    pytest.param("0x" + "f" * 5000, "has 20000 bits, more than a 64-bit integer",
                 id="20000_bit_hex_integer"),
    pytest.param("!!float x", "line 4: float value 'x' cannot be read", id="float_tag_on_text"),
    pytest.param("!!timestamp x", "line 4: timestamp value 'x' cannot be read (AttributeError",
                 id="timestamp_tag_on_text"),  # the 10-minute run: 90 of 32,296 cases
])
def test_yaml_only_yaml_can_say_is_one_line(value: str, fragment: str, tmp_path, alarm) -> None:
    """Before fc.yamlio: the alias bomb hung fcc, growing (its error message printed the
    value), nesting was a RecursionError and the scalars ValueErrors, all tracebacks."""
    (tmp_path / "g_graph.json").write_text("{}")
    (tmp_path / "imgs").mkdir()
    path = tmp_path / "q.yml"
    path.write_text(_CONFIG.format(value=value))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: invalid YAML") and "\n" not in str(err.value)
    assert fragment in str(err.value), str(err.value)


def test_every_yaml_reader_refuses_the_bomb(tmp_path, alarm, capsys) -> None:
    """The pruning config, the checklist's models file, the low-rank config and
    ``fcc quant --set`` read YAML through fc.yamlio too."""
    from fc.checklist import load_models
    from fc.commands.compress import _lowrank_config
    from fc.passes.prune_config import load_prune_config

    path = tmp_path / "x.yml"
    path.write_text(f"layers: {_alias_bomb()}\n")
    for read in (load_prune_config, load_models, _lowrank_config):
        with pytest.raises(FcError) as err:
            read(str(path))
        assert "alias *l0" in str(err.value) and "\n" not in str(err.value), read
    from fc.cli import main

    assert main(["quant", "quantize", "--config", "cfg.yml", "--set",
                 f"QUAN.strategy={_alias_bomb()}"]) == 2
    assert capsys.readouterr().err.startswith("fcc: error: --set 'QUAN.strategy=[&l0")


def test_plain_yaml_reads_as_before() -> None:
    import yaml

    from fc.yamlio import safe_load

    text = "a: [1, 2.5, {b: c}]\nd: 2001-02-03\ne: ~\nf: 0x10\ng: 'x'\n"
    assert safe_load(text) == yaml.safe_load(text)


@pytest.mark.parametrize("key", [
    pytest.param("a\nb", id="newline"),
    pytest.param("\udb20\ude0f", id="lone_surrogates"),
    pytest.param("x\x00y", id="nul"),
])
def test_unprintable_config_keys_are_one_printable_line(key: str, tmp_path, capsys) -> None:
    """Found by the 10-minute quant-config run (14 of 21,940 cases): a key holding a line
    break or lone surrogates (YAML's "\\u" escapes) made the unknown-key error two lines, and
    one that fcc could not even print (UnicodeEncodeError on stderr)."""
    import json

    from fc.cli import main

    (tmp_path / "g_graph.json").write_text("{}")
    path = tmp_path / "q.yml"
    path.write_text(json.dumps({"MODEL": {"graph": "g_graph.json", key: 1}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).isprintable(), str(err.value)
    assert "unknown key 'MODEL." in str(err.value)
    path.write_text(json.dumps({"MODEL": {"graph": "g_graph.json"},
                                "QUAN": {"qconfig": {"layers": {key: []}}}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).isprintable() and "QUAN.qconfig.layers.'" in str(err.value)
    assert main(["quant", "quantize", "--config", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and err_text[:-1].isprintable(), err_text
    err_text.encode("utf-8")  # printable on any UTF-8 stderr


def test_fcc_prints_any_error_as_one_encodable_line(monkeypatch, capsys) -> None:
    """The CLI's own guard, for messages quoting user text from anywhere."""
    from fc import cli

    assert cli._one_line("node 'a\nb' \udb20: bad") == "node 'a\\nb' \\udb20: bad"
    assert cli._one_line("plain é") == "plain é"


# -- images: judged by the size their header declares ----------------------------------------

def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels and holds almost nothing."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_image_declaring_more_than_the_limit_is_refused_before_decoding(tmp_path) -> None:
    """A 100-byte PNG declaring 12000 x 12000 RGB pixels: 549 MiB as Pillow holds it, above
    the 512 MiB limit (and below Pillow's own bomb threshold, which would only warn)."""
    from fc.quant.images import load_image

    path = tmp_path / "big.png"
    path.write_bytes(_png_header(12000, 12000))
    assert path.stat().st_size < 200
    with pytest.raises(FcError) as err:
        load_image(path, "RGB")
    assert str(err.value).startswith(f"{path}: image of 12000x12000 pixels (RGB) decoded "
                                     "would take 549 MiB, above fc's limit of 512 MiB per "
                                     "tensor (raise it with "), str(err.value)


def test_pillow_decompression_bomb_is_one_line(tmp_path) -> None:
    """30000 x 30000 pixels: Pillow raises DecompressionBombError at open (a traceback
    before), whatever fc's limit."""
    from fc.limits import limits
    from fc.quant.images import load_image

    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(30000, 30000))
    with limits(max_tensor_bytes=8 << 30), pytest.raises(FcError) as err:
        load_image(path, "RGB")
    assert str(err.value).startswith(f"{path}: refused by Pillow as a decompression bomb (")
    assert "\n" not in str(err.value)


def test_image_limit_counts_what_pillow_holds(tmp_path) -> None:
    from PIL import Image

    from fc.limits import limits
    from fc.quant.images import load_image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(path)  # L: one byte a pixel
    with limits(max_tensor_bytes=120_000):
        assert load_image(path, "L").size == (400, 300)
    with limits(max_tensor_bytes=119_999), pytest.raises(FcError, match="would take 117 KiB"):
        load_image(path, "L")


def test_path_with_line_breaks_is_one_line(tmp_path) -> None:
    """Found by the 10-minute quant-config run: a folder path holding line breaks made the
    folder-not-found error as many lines."""
    import json

    (tmp_path / "g_graph.json").write_text("{}")
    path = tmp_path / "q.yml"
    path.write_text(json.dumps({"MODEL": {"graph": "g_graph.json"},
                                "QUAN": {"qconfig": {"image_path": "i\n\n\nmgs"}}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).isprintable() and "folder not found: '" in str(err.value)
