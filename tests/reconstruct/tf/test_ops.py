"""Every TF lowering against the golden executor: one-node IR graphs frozen to a GraphDef
and run by TensorFlow's own kernels (an implementation independent of fc's numpy ones).

Cases with ``layout="NHWC"`` feed the graph channels-last, as a Keras model's IR is fed, so
the lowering meets an input already arranged for TF.
"""

from __future__ import annotations

import numpy as np
import pytest

from fc.ir.activations import ACTIVATIONS as ACTIVATION_TABLE
from fc.ir.schema import all_schemas
from fc.reconstruct.tf import LOWERINGS
from fc.reconstruct.tf.activations import ACTIVATIONS

P = pytest.param


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, np.float32)


def test_every_schema_has_a_lowering() -> None:
    assert sorted(set(all_schemas()) - set(LOWERINGS)) == []


def test_every_fused_activation_has_a_tf_form() -> None:
    assert sorted(ACTIVATION_TABLE) == sorted(ACTIVATIONS)


CONV = [
    P((1, 3, 9, 9), (4, 3, 3, 3), {"pads": (1, 1, 1, 1)}, True, id="pad1_bias"),
    P((2, 3, 9, 8), (4, 3, 3, 3), {"strides": (2, 2), "pads": (0, 0, 1, 1)}, False,
      id="stride2_same_asymmetric"),
    P((1, 4, 9, 9), (6, 4, 3, 2), {"dilations": (2, 1), "pads": (2, 0, 1, 1)}, True, id="dilated"),
    P((1, 4, 7, 7), (6, 2, 3, 3), {"group": 2, "pads": (1, 1, 1, 1)}, True, id="group2"),
    P((1, 4, 7, 7), (8, 1, 3, 3), {"group": 4, "strides": (2, 2), "pads": (0, 0, 1, 1)}, True,
      id="depthwise_mult2"),
    P((1, 4, 7, 7), (4, 1, 3, 3), {"group": 4, "strides": (2, 1), "pads": (1, 1, 1, 1)}, False,
      id="depthwise_unequal_strides"),
]


@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
@pytest.mark.parametrize(("x", "w", "attrs", "bias"), CONV)
def test_conv(x, w, attrs, bias, layout, one_node, check_frozen) -> None:
    consts = {1: rand(1, *w, scale=0.3), 2: rand(2, w[0]) if bias else None}
    check_frozen(one_node("Conv", [x], attrs, consts=consts, layout=layout))


@pytest.mark.parametrize(("activation", "alpha", "beta"), [
    P(a, *{"clip": (0.0, 6.0), "leaky_relu": (0.1, 0.0), "elu": (0.7, 0.0),
           "hard_sigmoid": (0.2, 0.5), "gelu": (1.0, 0.0)}.get(a, (0.0, 0.0)), id=a)
    for a in sorted(ACTIVATION_TABLE)])
def test_conv_fused_activation(activation, alpha, beta, one_node, check_frozen) -> None:
    consts = {1: rand(1, 4, 3, 3, 3, scale=0.5), 2: rand(2, 4)}
    g = one_node("Conv", [(1, 3, 6, 6)], {"pads": (1, 1, 1, 1), "activation": activation,
                                         "act_alpha": alpha, "act_beta": beta}, consts=consts)
    check_frozen(g, op="Gelu" if activation == "gelu" else "Conv")


@pytest.mark.parametrize(("x", "w", "attrs"), [
    P((1, 4, 5, 5), (4, 3, 3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, id="stride2_pad1"),
    P((1, 4, 5, 4), (4, 3, 3, 3), {"strides": (2, 2), "pads": (0, 1, 1, 0),
                                   "output_padding": (1, 1)}, id="asymmetric_output_padding"),
    P((1, 4, 5, 5), (4, 2, 3, 3), {"group": 2, "dilations": (2, 2)}, id="group2_dilated"),
    P((1, 2, 3, 3), (2, 2, 2, 2), {"strides": (2, 2), "output_padding": (3, 0)},
      id="output_padding_beyond_stride"),
])
def test_conv_transpose(x, w, attrs, one_node, check_frozen) -> None:
    consts = {1: rand(1, *w, scale=0.3), 2: rand(2, w[1] * attrs.get("group", 1))}
    check_frozen(one_node("ConvTranspose", [x], attrs, consts=consts))


def _bn_consts(c: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(3)
    return {1: rng.uniform(0.5, 1.5, c).astype(np.float32), 2: rand(4, c),
            3: rand(5, c), 4: rng.uniform(0.5, 1.5, c).astype(np.float32)}


@pytest.mark.parametrize("shape", [P((2, 3, 4, 5), id="4d"), P((2, 3), id="2d"),
                                   P((2, 3, 5), id="3d")])
def test_batch_norm(shape, one_node, check_frozen) -> None:
    g = one_node("BatchNormalization", [shape], {"epsilon": 1e-3}, consts=_bn_consts(shape[1]))
    check_frozen(g)


@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
def test_scale(layout, one_node, check_frozen) -> None:
    g = one_node("Scale", [(1, 3, 4, 4)], {"activation": "relu"},
                 consts={1: rand(1, 3), 2: rand(2, 3)}, layout=layout)
    check_frozen(g)


@pytest.mark.parametrize(("a", "b", "c", "attrs"), [
    P((2, 5), (3, 5), (3,), {"transB": 1}, id="dense_transB"),
    P((5, 2), (5, 3), (2, 3), {"transA": 1, "alpha": 0.5, "beta": 2.0}, id="transA_alpha_beta"),
    P((2, 5), (5, 3), None, {"activation": "relu"}, id="no_bias_relu"),
])
def test_gemm(a, b, c, attrs, one_node, check_frozen) -> None:
    consts = {1: rand(1, *b), 2: None if c is None else rand(2, *c)}
    check_frozen(one_node("Gemm", [a], attrs, consts=consts))


@pytest.mark.parametrize(("a", "b"), [P((2, 5), (5, 3), id="2d"), P((2, 4, 5), (5, 3), id="batched"),
                                      P((5,), (2, 5, 3), id="vector_lhs"),
                                      P((2, 4, 5), (5,), id="vector_rhs")])
def test_matmul(a, b, one_node, check_frozen) -> None:
    check_frozen(one_node("MatMul", [a, b]))


POOLS = [
    P({"kernel_shape": (3, 3), "strides": (2, 2), "pads": (0, 0, 1, 1)}, id="tf_same"),
    P({"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}, id="symmetric_pad"),
    P({"kernel_shape": (2, 3), "strides": (2, 2), "ceil_mode": 1}, id="ceil_mode"),
    P({"kernel_shape": (3, 3), "strides": (1, 1)}, id="valid"),
]


@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
@pytest.mark.parametrize("attrs", POOLS)
def test_max_pool(attrs, layout, one_node, check_frozen) -> None:
    check_frozen(one_node("MaxPool", [(1, 3, 8, 7)], attrs, layout=layout))


def test_max_pool_dilated(one_node, check_frozen) -> None:
    g = one_node("MaxPool", [(1, 2, 9, 9)], {"kernel_shape": (2, 2), "strides": (2, 2),
                                             "dilations": (2, 2), "pads": (1, 1, 0, 0)})
    check_frozen(g)


@pytest.mark.parametrize("include_pad", [P(0, id="exclude_pad"), P(1, id="include_pad")])
@pytest.mark.parametrize("attrs", POOLS)
def test_average_pool(attrs, include_pad, one_node, check_frozen) -> None:
    g = one_node("AveragePool", [(1, 3, 8, 7)], {**attrs, "count_include_pad": include_pad})
    check_frozen(g)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
def test_global_pool(op, layout, one_node, check_frozen) -> None:
    check_frozen(one_node(op, [(2, 3, 5, 4)], layout=layout))


@pytest.mark.parametrize("size", [P(3, id="odd"), P(4, id="even")])
def test_lrn(size, one_node, check_frozen) -> None:
    g = one_node("LRN", [(1, 6, 3, 3)], {"size": size, "alpha": 1e-2, "beta": 0.75, "bias": 2.0})
    check_frozen(g)


@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
def test_layer_norm(layout, one_node, check_frozen) -> None:
    g = one_node("LayerNormalization", [(2, 3, 4, 5)], {"axis": 1, "epsilon": 1e-3},
                 consts={1: rand(1, 3, 4, 5), 2: rand(2, 5)}, layout=layout)
    check_frozen(g)


def test_instance_norm(one_node, check_frozen) -> None:
    g = one_node("InstanceNormalization", [(2, 3, 4, 5)], consts={1: rand(1, 3), 2: rand(2, 3)})
    check_frozen(g)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [P(1, id="channels"), P(-1, id="last")])
def test_softmax(op, axis, one_node, check_frozen) -> None:
    check_frozen(one_node(op, [(2, 3, 4, 5)], {"axis": axis}, layout="NHWC"))


UNARY = ["Relu", "Sigmoid", "Tanh", "HardSwish", "SiLU", "Exp", "Abs", "Neg", "Erf",
         "Identity", "Dropout"]


@pytest.mark.parametrize("op", UNARY)
def test_unary(op, one_node, check_frozen) -> None:
    check_frozen(one_node(op, [(2, 3, 4, 5)], layout="NHWC"))


@pytest.mark.parametrize("op", ["Log", "Sqrt", "Reciprocal"])
def test_unary_positive(op, one_node, check_frozen) -> None:
    g = one_node("Abs", [(2, 3)])
    y = g.add_node(op, [g.outputs[0]], name="positive").output
    g.outputs[:] = [y]
    check_frozen(g, op=op)


@pytest.mark.parametrize(("op", "attrs"), [
    P("LeakyRelu", {"alpha": 0.2}, id="leaky_relu"), P("Elu", {"alpha": 0.5}, id="elu"),
    P("Elu", {}, id="elu_alpha1"), P("HardSigmoid", {}, id="hard_sigmoid"),
    P("Clip", {"min": -0.5, "max": 0.7}, id="clip"), P("Clip", {"min": 0.0, "max": 6.0}, id="relu6"),
    P("Gelu", {}, id="gelu"), P("Gelu", {"approximate": "tanh"}, id="gelu_tanh"),
])
def test_unary_with_attributes(op, attrs, one_node, check_frozen) -> None:
    check_frozen(one_node(op, [(2, 3, 4, 5)], attrs, layout="NHWC"))


def test_prelu(one_node, check_frozen) -> None:
    g = one_node("PRelu", [(2, 3, 4, 5)], consts={1: rand(1, 3, 1, 1)}, layout="NHWC")
    check_frozen(g)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("other", [
    P((3, 1, 1), id="const_channel"), P((5,), id="const_last_axis"), P((), id="const_scalar"),
    P("input", id="two_inputs"),
])
def test_binary(op, other, one_node, check_frozen) -> None:
    if other == "input":
        g = one_node(op, [(2, 3, 4, 5), (2, 3, 4, 5)], layout="NHWC")
    else:
        g = one_node(op, [(2, 3, 4, 5)], consts={1: (rand(9, *other) + 3).astype(np.float32)},
                     layout="NHWC")
    check_frozen(g)


def test_binary_mixed_layouts(one_node, check_frozen) -> None:
    """One NHWC-fed input, one NCHW-fed: the result takes the first's arrangement."""
    g = one_node("Add", [(2, 3, 4, 5), (2, 3, 4, 5)])
    g.layouts["x0"] = "NHWC"
    check_frozen(g)


def test_pow(one_node, check_frozen) -> None:
    g = one_node("Abs", [(2, 3)])
    y = g.add_node("Pow", [g.outputs[0], g.add_const("e", np.float32(1.5))], name="pow").output
    g.outputs[:] = [y]
    check_frozen(g, op="Pow")


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic(op, one_node, check_frozen) -> None:
    g = one_node(op, [(2, 3, 4, 5), (2, 3, 4, 5), (5,)], layout="NHWC")
    check_frozen(g)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize(("axes", "keepdims"), [
    P((2, 3), 1, id="spatial_keep"), P((2, 3), 0, id="spatial_drop"), P((1,), 0, id="channels"),
    P((), 0, id="all"),
])
def test_reduce(op, axes, keepdims, one_node, check_frozen) -> None:
    g = one_node(op, [(2, 3, 4, 5)], {"axes": axes, "keepdims": keepdims}, layout="NHWC")
    check_frozen(g)


def test_cast(one_node, check_frozen) -> None:
    g = one_node("Cast", [(2, 3)], {"to": "int32"})
    check_frozen(g)


@pytest.mark.parametrize("layout", [P(None, id="nchw"), P("NHWC", id="nhwc")])
def test_concat(layout, one_node, check_frozen) -> None:
    g = one_node("Concat", [(1, 2, 3, 3), (1, 4, 3, 3)], {"axis": 1},
                 consts={2: rand(3, 1, 1, 3, 3)}, layout=layout)
    check_frozen(g)


def test_split(one_node, check_frozen) -> None:
    g = one_node("Split", [(1, 6, 3, 3)], {"axis": 1, "split": (2, 4)}, layout="NHWC",
                 num_outputs=2)
    check_frozen(g)


@pytest.mark.parametrize("attrs", [
    P({"starts": (1, 0), "ends": (3, 2**63 - 1), "axes": (1, 3), "steps": (1, 2)}, id="forward"),
    P({"starts": (-1,), "ends": (-2**63,), "axes": (2,), "steps": (-1,)}, id="reverse"),
])
def test_slice(attrs, one_node, check_frozen) -> None:
    check_frozen(one_node("Slice", [(2, 4, 5, 6)], attrs, layout="NHWC"))


@pytest.mark.parametrize(("shape", "target"), [
    P((2, 3, 4, 5), (0, -1), id="flatten_like"), P((2, 3, 4, 5), (0, 3, 20), id="merge"),
    P((2, 12), (0, 3, 2, 2), id="split_axis"),
])
def test_reshape(shape, target, one_node, check_frozen) -> None:
    g = one_node("Reshape", [shape], {"shape": target}, layout="NHWC")
    check_frozen(g, batch=3)


def test_flatten(one_node, check_frozen) -> None:
    check_frozen(one_node("Flatten", [(2, 3, 4, 5)], layout="NHWC"), batch=2)


def test_transpose_then_relu(one_node, check_frozen) -> None:
    g = one_node("Transpose", [(2, 3, 4, 5)], {"perm": (0, 3, 1, 2)}, layout="NHWC")
    y = g.add_node("Relu", [g.outputs[0]], name="relu").output
    g.outputs[:] = [y]
    check_frozen(g)


@pytest.mark.parametrize(("op", "shape", "axes"), [
    P("Squeeze", (2, 3, 1, 1), (2, 3), id="squeeze"), P("Squeeze", (2, 3, 1, 5), (), id="squeeze_all"),
    P("Unsqueeze", (2, 3), (2, 3), id="unsqueeze"),
])
def test_squeeze_unsqueeze(op, shape, axes, one_node, check_frozen) -> None:
    check_frozen(one_node(op, [shape], {"axes": axes}, layout="NHWC"))


@pytest.mark.parametrize(("mode", "pads"), [
    P("constant", (0, 0, 1, 2, 0, 0, 2, 1), id="constant"),
    P("reflect", (0, 0, 1, 2, 0, 0, 2, 1), id="reflect"),
    P("edge", (0, 0, 1, 2, 0, 0, 3, 1), id="edge"),
    P("constant", (0, 0, -1, 2, 0, 0, 1, -2), id="crop_and_pad"),
])
def test_pad(mode, pads, one_node, check_frozen) -> None:
    g = one_node("Pad", [(1, 2, 4, 5)], {"pads": pads, "mode": mode, "value": 0.5}, layout="NHWC")
    check_frozen(g)


RESIZE = [
    P("linear", "half_pixel", "round_prefer_floor", (1, 1, 2, 2), id="bilinear_half_pixel"),
    P("linear", "align_corners", "round_prefer_floor", (1, 1, 2, 2), id="bilinear_align_corners"),
    P("linear", "asymmetric", "round_prefer_floor", (1, 1, 2, 3), id="bilinear_asymmetric"),
    P("nearest", "asymmetric", "floor", (1, 1, 2, 2), id="nearest"),
    P("nearest", "tf_half_pixel_for_nn", "floor", (1, 1, 2, 2), id="nearest_half_pixel"),
    P("nearest", "align_corners", "round_prefer_ceil", (1, 1, 2, 2), id="nearest_align_corners"),
    P("nearest", "half_pixel", "round_prefer_floor", (1, 1, 2, 2), id="nearest_onnx_default"),
    P("linear", "half_pixel", "round_prefer_floor", (1, 1, 0.6, 1.5), id="bilinear_fractional"),
    P("cubic", "half_pixel", "round_prefer_floor", (1, 1, 2, 2), id="cubic"),
]


@pytest.mark.parametrize(("mode", "ctm", "nearest", "scales"), RESIZE)
def test_resize(mode, ctm, nearest, scales, one_node, check_frozen) -> None:
    g = one_node("Resize", [(1, 2, 5, 4)], {"mode": mode, "scales": scales,
                                            "coordinate_transformation_mode": ctm,
                                            "nearest_mode": nearest}, layout="NHWC")
    check_frozen(g)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode, one_node, check_frozen) -> None:
    g = one_node("DepthToSpace", [(1, 8, 2, 3)], {"blocksize": 2, "mode": mode})
    check_frozen(g)


def test_space_to_depth(one_node, check_frozen) -> None:
    check_frozen(one_node("SpaceToDepth", [(1, 2, 4, 6)], {"blocksize": 2}))


@pytest.mark.parametrize(("indices", "axis"), [
    P(np.array([2, 0, -1]), 1, id="vector_negative"), P(np.array(1), 3, id="scalar"),
    P(np.array([[0, 1], [1, 0]]), 2, id="matrix"),
])
def test_gather(indices, axis, one_node, check_frozen) -> None:
    g = one_node("Gather", [(2, 3, 4, 5)], {"axis": axis}, consts={1: indices.astype(np.int64)},
                 layout="NHWC")
    check_frozen(g)
