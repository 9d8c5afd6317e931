"""Every IR op rebuilt in torch computes what the golden executor computes: one small graph
per case, the torch module against ``fc.np_ops.run`` (whose kernels are checked against
onnxruntime), plus which torch layer each layer op became."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from fc.errors import ReconstructError
from fc.ir import Graph, all_schemas
from fc.np_ops import run
from fc.reconstruct.torch import LOWERINGS, reconstruct, run_numpy
from fc.testing import activation_cases, check_close

RNG = np.random.default_rng(0)


def _w(*shape: int, positive: bool = False) -> np.ndarray:
    a = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(a) + 0.5 if positive else a


def _graph(op: str, inputs: list, attrs: dict | None = None, num_outputs: int = 1) -> Graph:
    """One ``op`` node: a tuple is a graph input's shape, an array a weight, None absent."""
    g = Graph(f"{op.lower()}_case")
    vals = []
    for i, spec in enumerate(inputs):
        if spec is None:
            vals.append(None)
        elif isinstance(spec, np.ndarray):
            vals.append(g.add_const(f"w{i}", spec))
        else:
            vals.append(g.add_input(f"x{i}", spec))
    node = g.add_node(op, vals, attrs or {}, name="node", num_outputs=num_outputs)
    g.outputs = list(node.outputs)
    return g


def _feeds(g: Graph, positive: bool, batch: int | None = None) -> dict[str, np.ndarray]:
    out = {}
    for v in g.inputs:
        shape = (batch, *v.shape[1:]) if batch else v.shape
        a = RNG.standard_normal(shape).astype(np.float32)
        out[v.name] = np.abs(a) + 0.1 if positive else a
    return out


C = (2, 4, 7, 7)  # a small NCHW input
CASES = [
    # convolution
    pytest.param("Conv", [C, _w(6, 4, 3, 3), _w(6)], {"pads": (1, 1, 1, 1)}, nn.Conv2d, id="conv_pad1"),
    pytest.param("Conv", [C, _w(6, 4, 3, 3)], {"strides": (2, 2)}, nn.Conv2d, id="conv_stride2_nobias"),
    pytest.param("Conv", [C, _w(8, 2, 3, 3), _w(8)], {"group": 2, "dilations": (2, 2)}, nn.Conv2d,
                 id="conv_group2_dilation2"),
    pytest.param("Conv", [C, _w(4, 1, 3, 3), _w(4)], {"group": 4, "pads": (0, 1, 2, 1)}, nn.Conv2d,
                 id="conv_depthwise_asym_pads"),
    pytest.param("Conv", [C, _w(6, 4, 1, 1), _w(6)], {"activation": "clip", "act_alpha": 0.0,
                                                      "act_beta": 6.0}, nn.Conv2d, id="conv_fused_relu6"),
    pytest.param("Conv", [C, (6, 4, 3, 3)], {}, None, id="conv_computed_weight"),
    pytest.param("ConvTranspose", [C, _w(4, 3, 3, 3), _w(3)], {"strides": (2, 2), "pads": (1, 1, 1, 1),
                                                               "output_padding": (1, 1)},
                 nn.ConvTranspose2d, id="deconv_stride2_outpad"),
    pytest.param("ConvTranspose", [C, _w(4, 2, 4, 4)], {"strides": (2, 2), "group": 2,
                                                        "pads": (0, 1, 2, 1)},
                 nn.ConvTranspose2d, id="deconv_group2_asym_pads"),
    pytest.param("ConvTranspose", [C, _w(4, 3, 2, 2), _w(3)], {"strides": (2, 2), "activation": "relu"},
                 nn.ConvTranspose2d, id="deconv_fused_relu"),
    # normalization, dense
    pytest.param("BatchNormalization", [C, _w(4, positive=True), _w(4), _w(4), _w(4, positive=True)],
                 {"epsilon": 1e-3}, nn.BatchNorm2d, id="batchnorm_2d"),
    pytest.param("BatchNormalization", [(3, 5), _w(5), _w(5), _w(5), _w(5, positive=True)], {},
                 nn.BatchNorm1d, id="batchnorm_1d"),
    pytest.param("Gemm", [(3, 5), _w(4, 5), _w(4)], {"transB": 1}, nn.Linear, id="gemm_linear"),
    pytest.param("Gemm", [(3, 5), _w(5, 4), _w(4)], {"activation": "gelu"}, nn.Linear,
                 id="gemm_untransposed_fused_gelu"),
    pytest.param("Gemm", [(5, 3), _w(5, 4), _w(3, 4)], {"transA": 1, "alpha": 0.5, "beta": 2.0}, None,
                 id="gemm_transA_alpha_beta"),
    pytest.param("MatMul", [(2, 3, 5), _w(5, 4)], {}, None, id="matmul_const"),
    pytest.param("MatMul", [(2, 3, 5), (2, 5, 4)], {}, None, id="matmul_batched"),
    pytest.param("LayerNormalization", [(2, 3, 6), _w(6), _w(6)], {}, nn.LayerNorm, id="layernorm"),
    pytest.param("LayerNormalization", [(2, 3, 6), _w(6)], {"axis": 1, "epsilon": 1e-3}, None,
                 id="layernorm_axis1_broadcast_scale"),
    pytest.param("InstanceNormalization", [C, _w(4), _w(4)], {}, nn.InstanceNorm2d, id="instancenorm"),
    pytest.param("LRN", [C], {"size": 3}, nn.LocalResponseNorm, id="lrn_odd"),
    pytest.param("LRN", [C], {"size": 2, "alpha": 0.1}, None, id="lrn_even"),
    pytest.param("Scale", [C, _w(4), _w(4)], {"activation": "hard_swish"}, None, id="scale_fused"),
    pytest.param("Softmax", [(2, 3, 5)], {"axis": 1}, None, id="softmax"),
    pytest.param("LogSoftmax", [(2, 5)], {}, None, id="log_softmax"),
    # pools
    pytest.param("MaxPool", [C], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                  "ceil_mode": 1}, nn.MaxPool2d, id="maxpool_ceil"),
    pytest.param("MaxPool", [C], {"kernel_shape": (2, 2), "pads": (0, 0, 1, 1), "strides": (2, 2)},
                 nn.MaxPool2d, id="maxpool_asym_pads"),
    pytest.param("AveragePool", [C], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                      "count_include_pad": 1, "ceil_mode": 1}, nn.AvgPool2d,
                 id="avgpool_include_pad_ceil"),
    pytest.param("AveragePool", [C], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)},
                 nn.AvgPool2d, id="avgpool_exclude_pad"),
    pytest.param("AveragePool", [C], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 0, 2, 2),
                                      "ceil_mode": 1}, None, id="avgpool_asym_pads_ceil"),
    pytest.param("GlobalAveragePool", [C], {}, nn.AdaptiveAvgPool2d, id="global_avgpool"),
    pytest.param("GlobalMaxPool", [C], {}, nn.AdaptiveMaxPool2d, id="global_maxpool"),
    # activations
    *[pytest.param(op, [C], attrs, None, id=op.lower()) for op, attrs in [
        ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("HardSwish", {}), ("SiLU", {}),
        ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.7}),
        ("HardSigmoid", {"alpha": 0.25, "beta": 0.4}), ("Clip", {"min": -0.5, "max": 0.8}),
        ("Gelu", {}), ("Exp", {}), ("Abs", {}), ("Neg", {}),
        ("Erf", {}), ("Identity", {})]],
    pytest.param("Dropout", [C], {"ratio": 0.3}, nn.Dropout, id="dropout"),
    *[pytest.param(op, [C], {}, None, id=op.lower()) for op in ("Log", "Sqrt", "Reciprocal")],
    pytest.param("Gelu", [C], {"approximate": "tanh"}, None, id="gelu_tanh"),
    pytest.param("PRelu", [C, _w(4, 1, 1)], {}, nn.PReLU, id="prelu_per_channel"),
    pytest.param("PRelu", [C, _w(4, 7, 7)], {}, None, id="prelu_elementwise"),
    # elementwise
    pytest.param("Add", [C, _w(4, 1, 1)], {"activation": "relu"}, None, id="add_const_fused_relu"),
    pytest.param("Add", [C, C], {}, None, id="add"),
    pytest.param("Sub", [C, _w(7)], {}, None, id="sub_broadcast"),
    pytest.param("Mul", [C, C], {}, None, id="mul"),
    pytest.param("Div", [C, _w(1, 4, 1, 1, positive=True)], {}, None, id="div_const"),
    pytest.param("Pow", [C, np.array(2.0, np.float32)], {}, None, id="pow_scalar"),
    pytest.param("Max", [C, C, C], {}, None, id="max3"),
    pytest.param("Min", [C, C], {}, None, id="min2"),
    pytest.param("Sum", [C, C, C], {}, None, id="sum3"),
    pytest.param("Mean", [C, C], {}, None, id="mean2"),
    pytest.param("ReduceMean", [C], {"axes": (2, 3), "keepdims": 1}, None, id="reduce_mean_hw"),
    pytest.param("ReduceSum", [C], {"axes": (1,), "keepdims": 0}, None, id="reduce_sum_c"),
    pytest.param("ReduceMax", [C], {}, None, id="reduce_max_all"),
    pytest.param("Cast", [C], {"to": "float64"}, None, id="cast_f64"),
    # tensor
    pytest.param("Concat", [C, (2, 3, 7, 7)], {"axis": 1}, None, id="concat"),
    pytest.param("Slice", [C], {"starts": (1, 0), "ends": (3, 7), "axes": (1, 3), "steps": (1, 2)},
                 None, id="slice_step2"),
    pytest.param("Slice", [C], {"starts": (-1,), "ends": (-100,), "axes": (2,), "steps": (-2,)},
                 None, id="slice_negative_step"),
    pytest.param("Reshape", [C], {"shape": (0, -1)}, None, id="reshape_copy_batch"),
    pytest.param("Reshape", [C], {"shape": (0, 4, -1, 7)}, None, id="reshape_copy_and_infer"),
    pytest.param("Flatten", [C], {"axis": 1}, None, id="flatten1"),
    pytest.param("Flatten", [C], {"axis": 2}, None, id="flatten2"),
    pytest.param("Flatten", [C], {"axis": 0}, None, id="flatten0"),
    pytest.param("Transpose", [C], {"perm": (0, 2, 3, 1)}, None, id="transpose"),
    pytest.param("Squeeze", [(2, 1, 5, 1)], {"axes": (1,)}, None, id="squeeze_axis"),
    pytest.param("Squeeze", [(2, 1, 5, 1)], {}, None, id="squeeze_all"),
    pytest.param("Unsqueeze", [(2, 5)], {"axes": (1, -1)}, None, id="unsqueeze_two"),
    pytest.param("Pad", [C], {"pads": (0, 0, 1, 2, 0, 0, 3, 0), "value": 1.5}, None, id="pad_constant"),
    pytest.param("Pad", [C], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "mode": "reflect"}, None,
                 id="pad_reflect"),
    pytest.param("Pad", [C], {"pads": (0, 0, 1, 2, 0, 0, 2, 1), "mode": "edge"}, None, id="pad_edge"),
    pytest.param("Resize", [C], {"scales": (1, 1, 2, 2), "coordinate_transformation_mode": "asymmetric",
                                 "nearest_mode": "floor"}, None, id="resize_nearest"),
    pytest.param("Resize", [C], {"scales": (1, 1, 2, 3)}, None, id="resize_nearest_half_pixel"),
    pytest.param("Resize", [C], {"mode": "linear", "scales": (1, 1, 2, 2)}, None,
                 id="resize_bilinear"),
    pytest.param("Resize", [C], {"mode": "linear", "scales": (1, 1, 2, 2),
                                 "coordinate_transformation_mode": "align_corners"}, None,
                 id="resize_bilinear_align_corners"),
    pytest.param("Resize", [C], {"mode": "cubic", "scales": (1, 1, 2, 2)}, None, id="resize_bicubic"),
    pytest.param("DepthToSpace", [(2, 8, 3, 3)], {"blocksize": 2, "mode": "CRD"}, nn.PixelShuffle,
                 id="pixel_shuffle"),
    pytest.param("DepthToSpace", [(2, 8, 3, 3)], {"blocksize": 2}, None, id="depth_to_space_dcr"),
    pytest.param("SpaceToDepth", [(2, 2, 4, 6)], {"blocksize": 2}, None, id="space_to_depth"),
    pytest.param("Gather", [C, np.array([3, 0, -1], np.int64)], {"axis": 2}, None, id="gather"),
    pytest.param("Gather", [(5, 6), np.array(2, np.int64)], {"axis": 0}, None, id="gather_scalar"),
]


@pytest.mark.parametrize(("op", "inputs", "attrs", "layer"), CASES)
def test_op_matches_golden(op, inputs, attrs, layer) -> None:
    g = _graph(op, inputs, attrs)
    feeds = _feeds(g, positive=op in ("Log", "Sqrt", "Reciprocal"))
    module = reconstruct(g)
    got, ref = run_numpy(module, feeds), run(g, feeds)
    for name in ref:
        check_close(got[name], ref[name], op=op, what=name)
    layers = [type(m) for name, m in module.named_modules() if name and not list(m.children())]
    assert layers == ([layer] if layer else []), layers


def test_split_gives_every_output() -> None:
    g = _graph("Split", [C], {"axis": 2, "split": (2, 5)}, num_outputs=2)
    feeds = _feeds(g, positive=False)
    got, ref = run_numpy(reconstruct(g), feeds), run(g, feeds)
    assert list(got) == list(ref) == ["node_out0", "node_out1"]
    for name in ref:
        check_close(got[name], ref[name], what=name)


@pytest.mark.parametrize("op, inputs, attrs", [
    pytest.param("Reshape", [C], {"shape": (0, -1)}, id="reshape"),
    pytest.param("Flatten", [C], {"axis": 1}, id="flatten"),
    pytest.param("DepthToSpace", [(2, 8, 3, 3)], {"blocksize": 2}, id="depth_to_space"),
])
def test_batch_other_than_compiled(op, inputs, attrs) -> None:
    """A graph built at batch 2 runs at batch 5, as the golden executor does."""
    g = _graph(op, inputs, attrs)
    feeds = _feeds(g, positive=False, batch=5)
    got, ref = run_numpy(reconstruct(g), feeds), run(g, feeds)
    check_close(got["node_out"], ref["node_out"])


def test_weights_are_parameters_scalars_are_buffers() -> None:
    g = Graph("mixed")
    x = g.add_input("x", C)
    conv = g.add_node("Conv", [x, g.add_const("c.weight", _w(4, 4, 1, 1))], name="c")
    mul = g.add_node("Mul", [conv.output, g.add_const("s", _w(4, 1, 1))], name="m")
    pw = g.add_node("Pow", [mul.output, g.add_const("p", np.array(2.0, np.float32))], name="p")
    g.outputs = [pw.output]
    m = reconstruct(g)
    assert sorted(n for n, _ in m.named_parameters()) == ["c.weight", "s"]
    assert [n for n, _ in m.named_buffers()] == ["p"]
    assert isinstance(m.get_submodule("c"), nn.Conv2d)


def test_resize_without_torch_equivalent_is_refused() -> None:
    g = _graph("Resize", [C], {"mode": "linear", "scales": (1, 1, 2, 2),
                               "coordinate_transformation_mode": "asymmetric"})
    with pytest.raises(ReconstructError, match=r"node 'node' \(Resize\): linear resize has no "
                                               r"torch equivalent: coordinate_transformation_mode"):
        reconstruct(g)


def test_every_schema_has_a_lowering() -> None:
    assert sorted(set(all_schemas()) - set(LOWERINGS)) == []
    assert sorted(set(LOWERINGS) - set(all_schemas())) == []


def test_unsupported_ops_listed_at_once() -> None:
    """Ops without a lowering: one error naming each op type, its count and nodes."""
    from fc.ir.schema import _REGISTRY as schemas
    from fc.ir.schema import TensorType, register_op

    for op in ("FcTestOpA", "FcTestOpB"):
        register_op(op, inputs=("X",))(lambda x: TensorType(x.shape, x.dtype))
    try:
        g = Graph("g")
        v = g.add_input("x", (1, 3))
        for i, op in enumerate(("FcTestOpA", "Relu", "FcTestOpA", "FcTestOpB")):
            v = g.add_node(op, [v], name=f"n{i}").output
        g.outputs = [v]
        with pytest.raises(ReconstructError) as e:
            reconstruct(g)
        assert str(e.value) == ("graph 'g': 2 op type(s) have no torch lowering: "
                                "FcTestOpA x2 ('n0', 'n2'); FcTestOpB x1 ('n3')")
    finally:
        for op in ("FcTestOpA", "FcTestOpB"):
            schemas.pop(op)


def test_every_activation_of_the_table_has_a_torch_call() -> None:
    from fc.ir.activations import ACTIVATIONS
    from fc.reconstruct.torch.activations import TORCH_ACTIVATIONS

    assert sorted(TORCH_ACTIVATIONS) == sorted(ACTIVATIONS)


@pytest.mark.parametrize(("activation", "alpha", "beta"), [
    pytest.param(*case, id=f"{case[0]}_{case[1]:g}_{case[2]:g}") for case in activation_cases()])
def test_fused_activation_matches_golden(activation, alpha, beta) -> None:
    g = _graph("Conv", [C, _w(3, 4, 1, 1), _w(3)], {"activation": activation, "act_alpha": alpha,
                                                    "act_beta": beta})
    feeds = _feeds(g, positive=False)
    check_close(run_numpy(reconstruct(g), feeds)["node_out"], run(g, feeds)["node_out"],
                op="Gelu" if activation == "gelu" else "Conv")
