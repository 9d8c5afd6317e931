"""Config validation: every mistake is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fc.quant.config import ConfigError, load_config, resolve_tensor

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m_graph.json").write_text("{}")
    (tmp_path / "m_params.npz").write_bytes(b"")
    (tmp_path / "imgs").mkdir(exist_ok=True)
    p = tmp_path / "c.yml"
    p.write_text(text)
    return p


BASE = "MODEL:\n    graph: 'm_graph.json'\nQUAN:\n    qconfig:\n        image_path: 'imgs'\n"


def test_defaults_and_relative_paths(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    assert cfg.graph_path == tmp_path / "m_graph.json"
    assert cfg.params_path == tmp_path / "m_params.npz"
    assert cfg["QUAN.qconfig.image_path"] == str(tmp_path / "imgs")
    assert cfg.strategy == "symmetry_max" and cfg["QUAN.qconfig.method"] == "max"
    assert cfg.weight_bits == cfg.act_bits == 8 and cfg["QUAN.qconfig.weight_quan"] == "perchannel"
    assert cfg.table_path == tmp_path / "calibration.json"
    assert cfg["PREPROCESS.scale"] == pytest.approx(1 / 255)
    assert cfg["QUAN.qconfig.rounding"] == "gemmlowp"


def test_overrides_win_and_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(_write(tmp_path, BASE), {"QUAN.qconfig.bits": 6, "QUAN.strategy": "minmax",
                                               "QUAN.qconfig.table": "t.json"})
    assert cfg.act_bits == 6 and cfg.strategy == "minmax"
    assert cfg.table_path == tmp_path / "t.json"


@pytest.mark.parametrize("text, message", [
    pytest.param(BASE + "    bogus: 1\n", "unknown key QUAN.bogus", id="unknown_key"),
    pytest.param(BASE + "        methd: max\n", "unknown key QUAN.qconfig.methd", id="typo"),
    pytest.param(BASE + "        bits: eight\n", "QUAN.qconfig.bits: expected int, got str",
                 id="wrong_type"),
    pytest.param(BASE + "        bits: true\n", "QUAN.qconfig.bits: expected int, got bool",
                 id="bool_is_not_int"),
    pytest.param(BASE + "        bits: 17\n", "QUAN.qconfig.bits: 17 is not in 2..16", id="bits"),
    pytest.param(BASE + "        method: kl\n", "QUAN.qconfig.method: 'kl' is not one of",
                 id="choice"),
    pytest.param(BASE + "        rounding: even\n",
                 "QUAN.qconfig.rounding: 'even' is not one of gemmlowp, single", id="rounding"),
    pytest.param(BASE + "        rounding: 1\n", "QUAN.qconfig.rounding: expected str, got int",
                 id="rounding_type"),
    pytest.param(BASE.replace("imgs", "nowhere"), "QUAN.qconfig.image_path: folder not found",
                 id="missing_folder"),
    pytest.param(BASE.replace("m_graph.json", "x_graph.json"), "MODEL.graph: file not found",
                 id="missing_file"),
    pytest.param(BASE + "  strategy: fancy\n".replace("  ", "    "), "unknown quantization strategy",
                 id="strategy"),
    pytest.param("MODEL: [1, 2]\n", "MODEL must be a mapping", id="section_type"),
    pytest.param("MODEL:\n  graph: [\n", "invalid YAML at line", id="yaml"),
    pytest.param(BASE + "        layers: {conv1: {bits: 40}}\n", "QUAN.qconfig.layers.conv1",
                 id="layers"),
    pytest.param(BASE + "PREPROCESS:\n    resize: [1, 2, 3]\n", "PREPROCESS.resize", id="resize"),
])
def test_mistakes_are_one_line_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value) and "c.yml" in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_config_parses_up_to_its_model_files():
    with pytest.raises(ConfigError, match="MODEL.graph: file not found: .*moffett_ir"):
        load_config(REPO / "configs" / "resnet50_v1b.yml")


def test_tensor_references_accept_the_seed_form(digits):
    _, _, g = digits
    node = next(n for n in g if n.op_type == "Gemm")
    assert resolve_tensor(g, f"{node.name}:0", what="x", default="") == node.outputs[0].name
    assert resolve_tensor(g, "logits:0", what="x", default="") == "logits"
    assert resolve_tensor(g, "logits", what="x", default="") == "logits"
    assert resolve_tensor(g, None, what="x", default="d") == "d"
    with pytest.raises(ConfigError, match="EVALUATION.output_node 'nope:0'"):
        resolve_tensor(g, "nope:0", what="EVALUATION.output_node", default="")
