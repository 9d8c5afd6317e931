"""fcc reconstruct tf: the distance line, the .pb's tensor names, NHWC at the boundary as
`fcc run` takes and writes it, exit 1 above --tol, --per-layer naming the first bad node,
the .pb written only when asked, and one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fc.cli import main
from fc.ir import Graph, save
from fc.reconstruct.tf import LOWERINGS


def _graph() -> Graph:
    """Conv -> Relu -> MaxPool (a 4-D output) -> Flatten -> Gemm; fed NHWC, the pooled output
    returned NHWC, as the IR of a Keras model is."""
    rng = np.random.default_rng(0)
    g = Graph("small_nhwc")
    x = g.add_input("image", (1, 3, 6, 6))
    y = g.add_node("Conv", [x, g.add_const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                            g.add_const("b", rng.standard_normal(4).astype(np.float32))],
                   {"pads": (1, 1, 1, 1)}, name="conv1").output
    y = g.add_node("Relu", [y], name="relu1").output
    p = g.add_node("MaxPool", [y], {"kernel_shape": (2, 2), "strides": (2, 2)}, name="pool").output
    f = g.add_node("Flatten", [p], name="flat").output
    z = g.add_node("Gemm", [f, g.add_const("fw", rng.standard_normal((5, 36)).astype(np.float32))],
                   {"transB": 1}, name="fc").output
    g.outputs.extend([z, p])
    g.layouts.update({"image": "NHWC", p.name: "NHWC"})
    return g


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("recon_tf")
    save(_graph(), tmp / "m")
    np.save(tmp / "in.npy", np.random.default_rng(1).standard_normal((1, 6, 6, 3)).astype(np.float32))
    return tmp


def _reconstruct(ir: Path, *extra: str) -> int:
    return main(["reconstruct", "tf", "--graph", str(ir / "m_graph.json"), "--input_npy",
                 str(ir / "in.npy"), *extra])


def test_distance_names_and_pb(ir, tmp_path, capsys) -> None:
    pb = tmp_path / "tf_reconstruct.pb"
    assert _reconstruct(ir, "--save_path", str(pb)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("distance: ") and float(out[0].split()[1]) < 1e-6
    assert out[1].startswith("max_abs: ") and out[2].startswith("cosine: ")
    assert "tf graph inputs: image:0 (NHWC)" in out
    assert "tf graph outputs: fc_out:0 (IR layout), pool_out:0 (NHWC)" in out
    assert f"wrote {pb}" in out
    import tensorflow as tf

    from fc.reconstruct.tf import run_graph_def

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(pb.read_bytes())
    z, p = run_graph_def(gd, ["image:0"], ["fc_out:0", "pool_out:0"], [np.load(ir / "in.npy")])
    assert z.shape == (1, 5) and p.shape == (1, 3, 3, 4)


def test_result_from_fcc_run_in_nhwc(ir, tmp_path, capsys) -> None:
    """`fcc run` writes NHWC outputs; `fcc reconstruct tf --result_npy` reads them back."""
    assert main(["run", "--graph", str(ir / "m_graph.json"), "--input_npy", str(ir / "in.npy"),
                 "--output_npy", str(tmp_path / "ref.npz")]) == 0
    with np.load(tmp_path / "ref.npz") as ref:
        assert ref["pool_out"].shape == (1, 3, 3, 4)
        np.savez(tmp_path / "off.npz", fc_out=ref["fc_out"] * 1.01, pool_out=ref["pool_out"])
    capsys.readouterr()
    assert _reconstruct(ir, "--result_npy", str(tmp_path / "ref.npz")) == 0
    assert float(capsys.readouterr().out.split()[1]) < 1e-6
    assert _reconstruct(ir, "--result_npy", str(tmp_path / "off.npz")) == 1
    assert float(capsys.readouterr().out.split()[1]) == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_per_layer_names_first_node_above_tol(ir, tmp_path, capsys) -> None:
    """A deliberately wrong Relu lowering (leaky): the per-layer report finds that node."""
    good = LOWERINGS.get("Relu")

    def leaky(ctx, x):
        return ctx.out(ctx.tf.nn.leaky_relu(ctx.arrange(x, x.perm), 0.1), x.perm)

    LOWERINGS.register("Relu", override=True)(leaky)
    try:
        rc = _reconstruct(ir, "--per-layer", "--json", str(tmp_path / "r.json"))
    finally:
        LOWERINGS.register("Relu", override=True)(good)
    assert rc == 1
    out = capsys.readouterr().out
    assert "first above tol 0.001: node 'relu1' (Relu), value 'relu1_out'" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [d["node"] for d in doc["per_layer"]] == ["conv1", "relu1", "pool", "flat", "fc"]
    assert doc["per_layer"][0]["rel_l2"] < 1e-6


@pytest.mark.parametrize("extra, message", [
    pytest.param(["--save_py", "{tmp}/m.py"], "writes a frozen .pb (--save_path), not Python",
                 id="no_python_source"),
    pytest.param(["--result_npy", "{tmp}/missing.npz"], "missing.npz: result file not found",
                 id="missing_result"),
])
def test_bad_input_one_line_exit_2_writes_nothing(ir, tmp_path, capsys, extra, message) -> None:
    extra = [e.format(tmp=tmp_path) for e in extra]
    assert _reconstruct(ir, "--save_path", str(tmp_path / "m.pb"), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_op_without_lowering_exit_2(ir, tmp_path, capsys) -> None:
    good = LOWERINGS.get("Gemm")
    LOWERINGS.unregister("Gemm")
    try:
        assert _reconstruct(ir, "--save_path", str(tmp_path / "m.pb")) == 2
    finally:
        LOWERINGS.register("Gemm")(good)
    err = capsys.readouterr().err.strip()
    assert err == ("fcc: error: graph 'small_nhwc': 1 op type(s) have no TensorFlow lowering: "
                   "Gemm x1 ('fc')")
    assert list(tmp_path.iterdir()) == []
