"""FoldInputAffine: a per-channel scale or shift before a Conv folds into its weights and
bias where exact; refusals; numerics against the original graph."""

from __future__ import annotations

import numpy as np
import pytest

from fc.ir import Graph
from fc.passes.fold_input_affine import FoldInputAffine, fold_input_affine_pass
from fc.testing import apply_pass, assert_refused, assert_same_outputs

P = pytest.param


def _build(op: str, const_shape: tuple[int, ...], *, pads=(0, 0, 0, 0), group: int = 1,
           bias: bool = True):
    def build() -> Graph:
        rng = np.random.default_rng(0)
        g = Graph()
        x = g.add_input("x", (2, 4, 6, 6))
        c = g.add_const("c", (rng.uniform(0.5, 2.0, const_shape)).astype(np.float32))
        y = g.add_node(op, [x, c], name="affine").output
        ins = [y, g.add_const("w", rng.standard_normal((6, 4 // group, 3, 3)).astype(np.float32))]
        if bias:
            ins.append(g.add_const("b", rng.standard_normal(6).astype(np.float32)))
        g.outputs.append(g.add_node("Conv", ins, {"pads": pads, "group": group},
                                    name="conv").output)
        return g

    return build


@pytest.mark.parametrize("build", [
    P(_build("Mul", (4, 1, 1), pads=(1, 1, 1, 1)), id="scale_padded"),
    P(_build("Div", (1, 4, 1, 1), group=2), id="divide_grouped"),
    P(_build("Mul", (), pads=(1, 0, 1, 0)), id="scalar_scale"),
    P(_build("Sub", (4, 1, 1)), id="shift_unpadded"),
    P(_build("Add", (4, 1, 1), bias=False, group=2), id="shift_grouped_no_bias"),
])
def test_folds(build) -> None:
    before, after = apply_pass(fold_input_affine_pass(), build, count=1, remaining=["Conv"])
    assert_same_outputs(before, after, {"x": np.random.default_rng(1).standard_normal(
        (2, 4, 6, 6)).astype(np.float32)}, op="Conv")


@pytest.mark.parametrize(("build", "reason"), [
    P(_build("Add", (4, 1, 1), pads=(1, 1, 1, 1)), "a shift before the padded Conv", id="shift_padded"),
    P(_build("Mul", (1, 1, 6, 1)), "broadcasts over the spatial dims", id="spatial_constant"),
])
def test_refusals(build, reason: str) -> None:
    assert_refused(FoldInputAffine(), build(), reason)
