"""Sum -> Add chains and Clip(0, inf) -> Relu, checked against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fc.ir import Graph, verify
from fc.ir.schema import FLT_MAX
from fc.np_ops import run
from fc.passes.canonicalize import CanonicalizeOps
from fc.testing import check_close

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("n", [pytest.param(2, id="two"), pytest.param(3, id="three"),
                               pytest.param(5, id="five")])
def test_sum_becomes_adds(n):
    g = Graph("sum")
    xs = [g.add_input(f"x{i}", (2, 3, 4)) for i in range(n)]
    s = g.add_node("Sum", xs, name="s")
    g.outputs.append(s.output)
    assert CanonicalizeOps()(g).count == 1
    verify(g)
    assert [nd.op_type for nd in g] == ["Add"] * (n - 1)
    assert g.outputs[0].name == "s_out" and all(nd.provenance == s.provenance for nd in g)
    feeds = {f"x{i}": RNG.standard_normal((2, 3, 4)).astype(np.float32) for i in range(n)}
    expected = torch.stack([torch.from_numpy(a) for a in feeds.values()]).sum(0).numpy()
    check_close(run(g, feeds)["s_out"], expected)


@pytest.mark.parametrize("lo, hi, op", [pytest.param(0.0, FLT_MAX, "Relu", id="relu"),
                                        pytest.param(0.0, 6.0, "Clip", id="relu6_kept"),
                                        pytest.param(-1.0, FLT_MAX, "Clip", id="negative_min_kept")])
def test_clip(lo, hi, op):
    g = Graph("clip")
    x = g.add_input("x", (8,))
    g.outputs.append(g.add_node("Clip", [x], {"min": lo, "max": hi}).output)
    CanonicalizeOps()(g)
    verify(g)
    assert [nd.op_type for nd in g] == [op]
    a = RNG.standard_normal(8).astype(np.float32) * 10
    check_close(run(g, {"x": a})[g.outputs[0].name], torch.clamp(torch.from_numpy(a), lo, hi).numpy())
