"""Complexity counts on small hand-built graphs, checked against counts worked out by hand."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fc.cli import main
from fc.ir import Graph, save
from fc.ir.complexity import complexity, summary_line

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _conv_graph(x_shape, w_shape, **attrs) -> Graph:
    g = Graph("conv")
    x = g.add_input("x", x_shape)
    n = g.add_node("Conv", [x, g.add_const("w", _w(*w_shape)), g.add_const("b", _w(w_shape[0]))],
                   attrs, name="conv")
    g.outputs.append(n.output)
    return g


@pytest.mark.parametrize(
    "x_shape, w_shape, attrs, expected_macs",
    [
        # N*Ho*Wo * M*C*kh*kw, worked out by hand
        pytest.param((1, 3, 8, 8), (4, 3, 3, 3), {"pads": (1, 1, 1, 1)}, 1 * 8 * 8 * 4 * 3 * 9,
                     id="3x3_same"),
        pytest.param((2, 3, 8, 8), (4, 3, 3, 3), {"strides": (2, 2)}, 2 * 3 * 3 * 4 * 3 * 9,
                     id="3x3_stride2_batch2"),
        pytest.param((1, 8, 5, 5), (8, 1, 3, 3), {"group": 8, "pads": (1, 1, 1, 1)},
                     25 * 8 * 9, id="depthwise"),
        pytest.param((1, 8, 4, 4), (6, 4, 1, 1), {"group": 2}, 16 * 6 * 4, id="grouped_1x1"),
    ],
)
def test_conv_dense_flops(x_shape, w_shape, attrs, expected_macs):
    c = complexity(_conv_graph(x_shape, w_shape, **attrs))
    (layer,) = c.layers
    assert layer.dense_flops == expected_macs
    assert layer.sparse_flops == expected_macs  # random weights have no zeros
    assert layer.params == int(np.prod(w_shape)) + w_shape[0]


def test_pruning_half_the_weights_halves_sparse_flops():
    g = _conv_graph((1, 16, 10, 10), (32, 16, 3, 3), pads=(1, 1, 1, 1))
    w = g.initializers["w"]
    flat = w.const.copy().ravel()
    flat[::2] = 0  # prune exactly half
    w.const = flat.reshape(w.shape)
    (layer,) = complexity(g).layers
    assert layer.sparse_flops * 2 == layer.dense_flops
    assert layer.nnz == w.const.size // 2 + 32  # half the weights, every bias


def test_gemm_and_transposed_weight():
    g = Graph("fc")
    x = g.add_input("x", (4, 10))
    wt = _w(7, 10)
    wt[0, :] = 0  # one output unit pruned: 10 zero weights
    n = g.add_node("Gemm", [x, g.add_const("w", wt), g.add_const("b", _w(7))], {"transB": 1})
    g.outputs.append(n.output)
    c = complexity(g)
    assert c.dense_flops == 4 * 7 * 10
    assert c.sparse_flops == 4 * 6 * 10
    assert c.nnz == 60 + 7 and c.params == 70 + 7
    assert c.sparsity == pytest.approx(1 - 67 / 77)


def test_conv_transpose_counts_every_input_pixel_times_every_weight():
    g = Graph("deconv")
    x = g.add_input("x", (1, 4, 3, 3))
    n = g.add_node("ConvTranspose", [x, g.add_const("w", _w(4, 2, 3, 3))], {"strides": (2, 2)})
    g.outputs.append(n.output)
    assert complexity(g).dense_flops == 9 * 4 * 2 * 9


def test_non_mac_layers_have_no_flops_but_count_params():
    g = Graph("bn")
    x = g.add_input("x", (1, 3, 4, 4))
    ps = [g.add_const(k, np.ones(3, np.float32)) for k in ("s", "b", "m", "v")]
    n = g.add_node("BatchNormalization", [x, *ps])
    r = g.add_node("Relu", [n.output])
    g.outputs.append(r.output)
    c = complexity(g)
    assert c.dense_flops == 0 and c.params == 12 and c.nnz == 12
    assert [la.op for la in c.layers] == ["BatchNormalization", "Relu"]


def test_cli_prints_summary_line_and_writes_tables(tmp_path, capsys):
    g = _conv_graph((1, 3, 8, 8), (4, 3, 3, 3), pads=(1, 1, 1, 1))
    g.initializers["w"].const[0] = 0  # 27 of 108 weights pruned
    gj, pz = save(g, tmp_path / "m")
    rc = main(["complexity", "--graph-json", str(gj), "--params-file", str(pz),
               "--csv", str(tmp_path / "t.csv"), "--json", str(tmp_path / "t.json")])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    dense = 64 * 108
    sparse = 64 * 81
    assert last == (f"nnz: {81 + 4}, sparsity: {1 - 85 / 112}, dense_flops: {float(dense)}, "
                    f"sparse_flops: {float(sparse)}")
    assert last == summary_line(complexity(g))
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert rows[0]["op"] == "Conv" and float(rows[0]["sparse_flops"]) == sparse
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["summary"]["dense_flops"] == dense
