"""FoldPad: an explicit constant Pad folded into the pads of the Conv / AveragePool / MaxPool
that reads it; checked against torch (F.pad, then the layer) on the original graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.ir
import fc.np_ops
from fc.ir import Graph
from fc.ir.schema import FLT_MAX
from fc.passes.fold_pad import FoldPad
from fc.passes.infra import FusionPass
from fc.testing import assert_refused, check_close

T = torch.from_numpy
X_SHAPE = (2, 4, 7, 7)


def _ops(g: Graph) -> list[str]:
    return [n.op_type for n in g]


def _onnx_pads(tlbr: tuple[int, int, int, int]) -> tuple[int, ...]:
    top, left, bottom, right = tlbr
    return (0, 0, top, left, 0, 0, bottom, right)


def _torch_pad(x: torch.Tensor, tlbr: tuple[int, int, int, int], value: float) -> torch.Tensor:
    top, left, bottom, right = tlbr
    return F.pad(x, (left, right, top, bottom), value=value)


# (pre-op, pad tlbr, pad value, layer op, layer attrs, torch layer on the padded tensor)
def _conv(group: int, stride: int, pad: int):
    w = np.random.default_rng(1).standard_normal((8, 4 // group, 3, 3)).astype(np.float32)
    attrs = {"group": group, "strides": (stride, stride), "pads": (pad,) * 4}
    return w, attrs, lambda y: F.conv2d(y, T(w), None, stride, pad, 1, group)


FOLD_CASES = [
    pytest.param("", (1, 1, 1, 1), 0.0, "Conv", *_conv(1, 1, 0), id="conv_group1"),
    pytest.param("", (1, 2, 0, 1), 0.0, "Conv", *_conv(2, 2, 1), id="conv_group2_asym_stride2"),
    pytest.param("", (2, 2, 2, 2), 0.0, "Conv", *_conv(4, 1, 0), id="conv_depthwise"),
    pytest.param("", (1, 1, 1, 1), 0.0, "AveragePool", None,
                 {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "count_include_pad": 1},
                 lambda y: F.avg_pool2d(y, 3, 1, 1, count_include_pad=True), id="avgpool_cip1"),
    pytest.param("", (1, 0, 1, 0), 0.0, "AveragePool", None,
                 {"kernel_shape": (3, 3), "strides": (2, 2)},
                 lambda y: F.avg_pool2d(y, 3, 2, 0, count_include_pad=False),
                 id="avgpool_cip0_no_own_pads"),
    pytest.param("", (1, 1, 0, 0), 0.0, "AveragePool", None,
                 {"kernel_shape": (2, 2), "strides": (2, 2), "ceil_mode": 1, "count_include_pad": 1},
                 lambda y: F.avg_pool2d(y, 2, 2, 0, ceil_mode=True, count_include_pad=True),
                 id="avgpool_ceil_mode"),
    pytest.param("", (1, 1, 1, 1), -FLT_MAX, "MaxPool", None,
                 {"kernel_shape": (3, 3), "strides": (2, 2)},
                 lambda y: F.max_pool2d(y, 3, 2), id="maxpool_neg_flt_max"),
    pytest.param("Relu", (1, 1, 1, 1), 0.0, "MaxPool", None, {"kernel_shape": (3, 3)},
                 lambda y: F.max_pool2d(y, 3, 1), id="maxpool_zero_after_relu"),
    pytest.param("Conv+relu", (0, 0, 1, 1), 0.0, "MaxPool", None,
                 {"kernel_shape": (2, 2), "strides": (2, 2)},
                 lambda y: F.max_pool2d(y, 2, 2), id="maxpool_zero_after_fused_relu"),
]


@pytest.mark.parametrize("pre, tlbr, value, op, w, attrs, torch_layer", FOLD_CASES)
def test_fold(pre, tlbr, value, op, w, attrs, torch_layer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    w0 = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    g = Graph()
    src = g.add_input("x", X_SHAPE)
    if pre == "Relu":
        src = g.add_node("Relu", [src], name="relu").output
    elif pre == "Conv+relu":
        src = g.add_node("Conv", [src, g.add_const("w0", w0)], {"activation": "relu"},
                         name="conv0").output
    pad = g.add_node("Pad", [src], {"pads": _onnx_pads(tlbr), "value": value}, name="pad",
                     provenance=["pad0"])
    layer = g.add_node(op, [pad.output] + ([g.add_const("w", w)] if w is not None else []), attrs,
                       name="layer", provenance=["layer0"])
    g.outputs = [layer.output]
    shape_before = layer.output.shape
    p = FusionPass(FoldPad())
    assert p(g).count == 1, p.refusals
    fc.ir.verify(g)

    assert "Pad" not in _ops(g) and _ops(g)[-1] == op
    assert layer.output.shape == shape_before and layer.provenance == ("layer0", "pad0")
    if op == "AveragePool":
        assert layer.attrs["count_include_pad"] == 1
    xt = T(x)
    if pre == "Relu":
        xt = F.relu(xt)
    elif pre == "Conv+relu":
        xt = F.relu(F.conv2d(xt, T(w0)))
    ref = torch_layer(_torch_pad(xt, tlbr, value))
    check_close(fc.np_ops.run(g, x)[layer.output.name], ref.numpy(), op="Conv")


def test_pad_shared_by_two_convs_folds_into_both():
    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    g = Graph()
    pad = g.add_node("Pad", [g.add_input("x", X_SHAPE)], {"pads": _onnx_pads((1, 1, 1, 1))},
                     name="pad")
    c1 = g.add_node("Conv", [pad.output, g.add_const("w1", w1)], name="c1")
    c2 = g.add_node("Conv", [pad.output, g.add_const("w2", w2)], {"pads": (1, 0, 1, 0)}, name="c2")
    g.outputs = [c1.output, c2.output]
    assert FusionPass(FoldPad())(g).count == 1
    fc.ir.verify(g)
    assert _ops(g) == ["Conv", "Conv"]
    assert (c1.attrs["pads"], c2.attrs["pads"]) == ((1, 1, 1, 1), (2, 1, 2, 1))
    out = fc.np_ops.run(g, x)
    check_close(out[c1.output.name], F.conv2d(T(x), T(w1), padding=1).numpy(), op="Conv")
    check_close(out[c2.output.name], F.conv2d(T(x), T(w2), padding=(2, 1)).numpy(), op="Conv")


# -- refusals -----------------------------------------------------------------------------
def _refusal_graph(case: str) -> Graph:
    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add_input("x", (1, 4, 4, 4))
    pad_attrs = {"pads": _onnx_pads((1, 1, 1, 1))}
    op, attrs = "Conv", {}
    if case in ("reflect", "edge"):
        pad_attrs["mode"] = case
    elif case == "nonzero_value":
        pad_attrs["value"] = 1.0
    elif case == "channel_pad":
        pad_attrs["pads"] = (0, 1, 0, 0, 0, 0, 0, 0)
    elif case == "negative_pad":
        pad_attrs["pads"] = (0, 0, -1, 0, 0, 0, 1, 0)
    elif case == "zero_pad_maxpool":
        op, attrs = "MaxPool", {"kernel_shape": (3, 3)}
    elif case == "avgpool_cip0_own_pads":
        op, attrs = "AveragePool", {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)}
    elif case == "pool_pads_reach_kernel":
        pad_attrs["value"] = -FLT_MAX
        op, attrs = "MaxPool", {"kernel_shape": (2, 2), "pads": (1, 1, 1, 1)}
    elif case == "ceil_mode_shape":
        pad_attrs = {"pads": _onnx_pads((0, 0, 1, 1)), "value": -FLT_MAX}
        op, attrs = "MaxPool", {"kernel_shape": (2, 2), "strides": (2, 2), "ceil_mode": 1}
    elif case == "dilated_maxpool":
        pad_attrs["value"] = -FLT_MAX
        op, attrs = "MaxPool", {"kernel_shape": (2, 2), "dilations": (2, 2)}
    pad = g.add_node("Pad", [x], pad_attrs, name="pad")
    ins = [pad.output]
    if op == "Conv":
        cin = pad.output.shape[1]
        ins.append(g.add_const("w", rng.standard_normal((2, cin, 3, 3)).astype(np.float32)))
    g.outputs = [g.add_node(op, ins, attrs, name="layer").output]
    if case == "pad_is_graph_output":
        g.outputs.append(pad.output)
    if case == "other_user_not_foldable":
        g.outputs.append(g.add_node("Relu", [pad.output], name="relu").output)
    return g


REFUSALS = [
    pytest.param("reflect", "mode 'reflect'", id="reflect"),
    pytest.param("edge", "mode 'edge'", id="edge"),
    pytest.param("nonzero_value", "pad value 1.0 is not 0", id="nonzero_value_before_conv"),
    pytest.param("zero_pad_maxpool", "may be negative", id="zero_pad_before_maxpool_on_input"),
    pytest.param("channel_pad", "batch or channel dims", id="channel_pad"),
    pytest.param("negative_pad", "crop", id="negative_pad"),
    pytest.param("avgpool_cip0_own_pads", "count_include_pad=0 with pads", id="avgpool_cip0_own_pads"),
    pytest.param("pool_pads_reach_kernel", "are invalid", id="pool_pads_reach_kernel"),
    pytest.param("ceil_mode_shape", "change the output shape", id="ceil_mode_changes_shape"),
    pytest.param("dilated_maxpool", "dilated MaxPool", id="dilated_maxpool"),
    pytest.param("pad_is_graph_output", "is a graph output", id="pad_is_graph_output"),
    pytest.param("other_user_not_foldable", "'relu' (Relu) is not one of", id="other_user_relu"),
]


@pytest.mark.parametrize("case, reason", REFUSALS)
def test_refusals(case, reason):
    assert_refused(FoldPad(), _refusal_graph(case), reason)
