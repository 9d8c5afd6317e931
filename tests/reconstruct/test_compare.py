"""The framework-neutral report: distances against hand-computed values, the worst output,
the first layer above tolerance with its provenance, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fc.errors import FcError
from fc.ir import Graph
from fc.reconstruct.compare import Report, compare_layers, compare_outputs, distance


def test_distance_values() -> None:
    r = np.array([3.0, 4.0], np.float32)
    y = np.array([3.0, 4.5], np.float32)
    d = distance("y", y, r)
    assert d.rel_l2 == pytest.approx(0.5 / 5.0)
    assert d.max_abs == pytest.approx(0.5)
    assert d.cosine == pytest.approx((9 + 18) / (5 * math.hypot(3, 4.5)))
    assert distance("y", r, r).rel_l2 == 0.0


def test_distance_non_finite_and_shape() -> None:
    assert distance("y", np.array([np.nan, 1.0]), np.array([1.0, 1.0])).rel_l2 == math.inf
    with pytest.raises(FcError, match=r"y: shape \[2\] differs from the reference's \[3\]"):
        distance("y", np.zeros(2), np.zeros(3))


def test_report_worst_lines_and_exit_verdict() -> None:
    ref = {"a": np.ones(4), "b": np.ones(4)}
    got = {"a": np.ones(4), "b": np.array([1, 1, 1, 1.1])}
    rep = Report("torch", "g", 1e-3, compare_outputs(got, ref))
    lines = rep.lines()
    assert lines[0] == f"distance: {0.1 / 2:.3e}"
    assert rep.worst.name == "b" and not rep.ok
    assert "  worst: b" in lines and lines[-1].startswith("ABOVE TOL")
    assert Report("torch", "g", 0.1, rep.outputs).ok


def test_missing_output_named() -> None:
    with pytest.raises(FcError, match=r"no output \['b'\]"):
        compare_outputs({"a": np.ones(1)}, {"a": np.ones(1), "b": np.ones(1)})


def test_first_layer_above_tol_names_provenance(tmp_path) -> None:
    g = Graph("g")
    x = g.add_input("x", (1, 4))
    n1 = g.add_node("Relu", [x], name="r1", provenance=["layer1.relu"])
    n2 = g.add_node("Neg", [n1.output], name="n2", provenance=["layer2.neg", "layer2.act"])
    n3 = g.add_node("Abs", [n2.output], name="n3")
    g.outputs = [n3.output]
    golden = {v.name: np.arange(1.0, 5.0) for v in (n1.output, n2.output, n3.output)}
    got = dict(golden, **{n2.output.name: np.arange(1.0, 5.0) * 1.01,
                          n3.output.name: np.arange(1.0, 5.0) * 1.1})
    layers = compare_layers(g, got, golden)
    assert [d.node for d in layers] == ["r1", "n2", "n3"]
    rep = Report("torch", "g", 1e-3, compare_outputs({"n3_out": got["n3_out"]},
                                                     {"n3_out": golden["n3_out"]}), layers=layers)
    first = rep.first_above_tol
    assert first is not None and first.node == "n2"
    assert ("first above tol 0.001: node 'n2' (Neg) from layer2.neg, layer2.act, value 'n2_out', "
            "distance 1.000e-02") in rep.lines()
    rep.write_json(tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ok"] is False and doc["distance"] == pytest.approx(0.1)
    assert doc["first_above_tol"]["provenance"] == ["layer2.neg", "layer2.act"]
    assert [d["node"] for d in doc["per_layer"]] == ["r1", "n2", "n3"]
