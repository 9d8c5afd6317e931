"""Shared fixtures of the ONNX frontend tests: onnxruntime as the oracle, a model builder, the
import -> verify -> run -> compare -> save/load round trip every test model goes through."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import fc.ir
import fc.np_ops
from fc.frontend.onnx import import_onnx
from fc.testing import check_close

Dims = Sequence[int | str]


def seeded_input(shape: Sequence[int], seed: int = 0, dtype: str = "float32") -> np.ndarray:
    """N(0, 1) input, the same for fc and the oracle."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(dtype)


def ort_run(model: onnx.ModelProto | str | Path, feeds: Mapping[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # IR v3 models list unused initializers: keep the log quiet
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(feeds))))


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Dims],
    outputs: Sequence[str],
    initializers: Mapping[str, np.ndarray] | None = None,
    *,
    opset: int = 13,
    input_dtype: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """A one-graph ONNX model; outputs are declared by name only (no type, no shape)."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, input_dtype, list(d)) for n, d in inputs.items()],
        [onnx.ValueInfoProto(name=n) for n in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()],
    )
    ir = 7 if opset < 15 else (8 if opset < 19 else 9)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def roundtrip_check(graph: fc.ir.Graph, feeds: Mapping[str, np.ndarray], tmp: Path,
                    expected: Mapping[str, np.ndarray]) -> fc.ir.Graph:
    """save -> load -> save: byte-identical files, and the reloaded graph computes exactly the
    outputs the imported one did (``expected``, already checked against the oracle)."""
    j1, p1 = fc.ir.save(graph, tmp / "first")
    again = fc.ir.load(j1, p1)
    j2, p2 = fc.ir.save(again, tmp / "second")
    assert j1.read_bytes() == j2.read_bytes(), "graph JSON changed on a save/load/save"
    assert p1.read_bytes() == p2.read_bytes(), "params npz changed on a save/load/save"
    got = fc.np_ops.run(again, feeds)
    assert list(got) == list(expected)
    for name, arr in expected.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=f"reloaded output {name!r}")
    return again


Checker = Callable[..., fc.ir.Graph]


@pytest.fixture
def check_vs_ort(tmp_path: Path) -> Checker:
    """``check(model, feeds, op=..., input_shapes=...)``: import, verify, run through
    fc.np_ops, compare every output with onnxruntime (``op``'s tolerance, or the model rel-L2
    with ``rel_l2_max``), round-trip the IR; returns the imported graph."""

    def check(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, op: str | None = None,
              rel_l2_max: float | None = None, input_shapes: Any = None,
              run_feeds: Mapping[str, np.ndarray] | None = None) -> fc.ir.Graph:
        graph = import_onnx(model, input_shapes=input_shapes)
        fc.ir.verify(graph)
        feeds = dict(run_feeds or feeds)
        expected = ort_run(model, feeds)
        got = fc.np_ops.run(graph, feeds)
        assert list(got) == list(expected), "fc's outputs are not the model's, in order"
        for name, ref in expected.items():
            check_close(got[name], ref, op=op, rel_l2_max=rel_l2_max, what=name)
        roundtrip_check(graph, feeds, tmp_path, got)
        return graph

    return check


@pytest.fixture
def roundtrip(tmp_path: Path) -> Callable[..., fc.ir.Graph]:
    def run(graph: fc.ir.Graph, feeds: Mapping[str, np.ndarray],
            expected: Mapping[str, np.ndarray]) -> fc.ir.Graph:
        return roundtrip_check(graph, feeds, tmp_path, expected)

    return run


# The helpers as fixtures: test modules cannot import this conftest by name.
@pytest.fixture(name="make_model")
def _make_model() -> Callable[..., onnx.ModelProto]:
    return make_model


@pytest.fixture(name="ort_run")
def _ort_run() -> Callable[..., dict[str, np.ndarray]]:
    return ort_run


@pytest.fixture(name="seeded_input")
def _seeded_input() -> Callable[..., np.ndarray]:
    return seeded_input
