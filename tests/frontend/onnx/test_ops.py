"""One ONNX node per case, across opsets: import, verify, run through fc.np_ops, compare with
onnxruntime (the op's tolerance), save/load round trip. Constant inputs are initializers, so
each case also checks that they become the right fc attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from onnx import helper

F32 = np.float32
I64 = np.int64
BIG = np.iinfo(np.int64).max


@dataclass
class Case:
    op: str
    opset: int
    shape: tuple[int, ...]
    consts: tuple[Any, ...] = ()  # extra inputs after x: arrays, or None for a skipped one
    attrs: dict[str, Any] = field(default_factory=dict)
    fc_op: str | None = None  # the fc op whose tolerance applies (default: op)
    outputs: int = 1
    positive: bool = False  # feed |x| + 0.1 (Log, Sqrt, ...)


def _w(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def _u(*shape: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 1.5, shape).astype(F32)


X4 = (2, 3, 9, 9)
CASES = {
    # convolution and pooling
    "conv_pads_group_dilation": Case("Conv", 11, (1, 4, 10, 10), (_w(6, 2, 3, 3), _w(6)),
                                     {"pads": [1, 2, 1, 0], "group": 2, "dilations": [2, 1]}),
    "conv_same_upper_s2": Case("Conv", 13, X4, (_w(4, 3, 3, 3),),
                               {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "conv_same_lower_k4_s2": Case("Conv", 13, X4, (_w(4, 3, 4, 4), _w(4)),
                                  {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    "conv_valid": Case("Conv", 7, X4, (_w(4, 3, 3, 3),), {"auto_pad": "VALID"}),
    "conv_transpose_s2_outpad": Case("ConvTranspose", 11, (1, 4, 5, 5), (_w(4, 3, 3, 3), _w(3)),
                                     {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                      "output_padding": [1, 1]}),
    "conv_transpose_output_shape": Case("ConvTranspose", 11, (1, 4, 5, 5), (_w(4, 3, 3, 3),),
                                        {"strides": [2, 2], "output_shape": [10, 10]}),
    "conv_transpose_output_shape_larger": Case("ConvTranspose", 11, (1, 4, 5, 5), (_w(4, 3, 3, 3),),
                                               {"strides": [2, 2], "output_shape": [12, 12]}),
    "conv_transpose_same_upper": Case("ConvTranspose", 11, (1, 4, 5, 5), (_w(4, 3, 3, 3),),
                                      {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "conv_transpose_same_lower": Case("ConvTranspose", 11, (1, 4, 5, 5), (_w(4, 3, 3, 3),),
                                      {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    "conv_transpose_group": Case("ConvTranspose", 13, (1, 4, 5, 5), (_w(4, 3, 3, 3),),
                                 {"group": 2}),
    "maxpool_same_upper": Case("MaxPool", 12, X4, (), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                       "auto_pad": "SAME_UPPER"}),
    "maxpool_ceil_dilation": Case("MaxPool", 12, X4, (), {"kernel_shape": [2, 2], "strides": [2, 2],
                                                          "ceil_mode": 1, "dilations": [2, 2]}),
    "maxpool_opset8_pads": Case("MaxPool", 8, X4, (), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    "avgpool_count_include_pad": Case("AveragePool", 11, X4, (),
                                      {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                       "count_include_pad": 1}),
    "avgpool_ceil_same_lower": Case("AveragePool", 11, X4, (),
                                    {"kernel_shape": [2, 2], "strides": [2, 2],
                                     "auto_pad": "SAME_LOWER"}),
    "global_average_pool": Case("GlobalAveragePool", 13, X4),
    "global_max_pool": Case("GlobalMaxPool", 13, X4),
    # normalization and dense
    "batchnorm_opset9": Case("BatchNormalization", 9, X4, (_u(3), _w(3), _w(3), _u(3)),
                             {"epsilon": 1e-3}),
    "batchnorm_opset15": Case("BatchNormalization", 15, X4, (_u(3), _w(3), _w(3), _u(3))),
    "instance_norm": Case("InstanceNormalization", 13, X4, (_u(3), _w(3)), {"epsilon": 1e-4}),
    "lrn": Case("LRN", 13, (1, 6, 5, 5), (), {"size": 3, "alpha": 1e-2, "beta": 0.6, "bias": 2.0}),
    "layer_norm_last": Case("LayerNormalization", 17, (2, 5, 8), (_u(8), _w(8))),
    "layer_norm_axis1": Case("LayerNormalization", 17, (2, 5, 8), (_u(5, 8), _w(5, 8)),
                             {"axis": 1, "epsilon": 1e-3}),
    "gemm_transB_alpha_beta": Case("Gemm", 13, (4, 6), (_w(5, 6), _w(5)),
                                   {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "gemm_transA_no_c": Case("Gemm", 11, (6, 4), (_w(6, 5),), {"transA": 1}),
    "matmul_batched": Case("MatMul", 13, (2, 3, 4), (_w(4, 5),)),
    "flatten_axis2": Case("Flatten", 13, X4, (), {"axis": 2}),
    "softmax_opset11_axis1": Case("Softmax", 11, (2, 3, 4, 5), (), {"axis": 1}),
    "softmax_opset11_last": Case("Softmax", 11, (2, 3, 4, 5), (), {"axis": 3}),
    "softmax_opset11_axis0": Case("Softmax", 11, (2, 3, 4), (), {"axis": 0}),
    "softmax_opset13_axis1": Case("Softmax", 13, (2, 3, 4, 5), (), {"axis": 1}),
    "logsoftmax_opset9_default": Case("LogSoftmax", 9, (2, 3, 4)),
    "logsoftmax_opset13": Case("LogSoftmax", 13, (2, 3, 4)),
    # activations and unary math
    "relu": Case("Relu", 13, X4),
    "sigmoid": Case("Sigmoid", 13, X4),
    "tanh": Case("Tanh", 13, X4),
    "exp": Case("Exp", 13, X4),
    "log": Case("Log", 13, X4, positive=True),
    "sqrt": Case("Sqrt", 13, X4, positive=True),
    "reciprocal": Case("Reciprocal", 13, X4, positive=True),
    "abs": Case("Abs", 13, X4),
    "neg": Case("Neg", 13, X4),
    "erf": Case("Erf", 13, X4),
    "identity": Case("Identity", 13, X4),
    "hard_swish": Case("HardSwish", 14, X4),
    "leaky_relu": Case("LeakyRelu", 13, X4, (), {"alpha": 0.2}),
    "elu": Case("Elu", 13, X4, (), {"alpha": 0.7}),
    "hard_sigmoid": Case("HardSigmoid", 13, X4, (), {"alpha": 0.3, "beta": 0.4}),
    "gelu_exact": Case("Gelu", 20, X4),
    "gelu_tanh": Case("Gelu", 20, X4, (), {"approximate": "tanh"}),
    "prelu_channel": Case("PRelu", 13, X4, (_w(3, 1, 1),)),
    "dropout_opset7": Case("Dropout", 7, X4, (), {"ratio": 0.3}),
    "dropout_opset12_ratio_input": Case("Dropout", 12, X4, (np.array(0.3, F32),)),
    # arithmetic
    "add_broadcast": Case("Add", 13, X4, (_w(3, 1, 1),)),
    "sub_scalar": Case("Sub", 13, X4, (np.array(0.5, F32),)),
    "mul_row": Case("Mul", 7, X4, (_w(9),)),
    "div_channel": Case("Div", 13, X4, (_u(3, 1, 1),)),
    "pow_float": Case("Pow", 13, X4, (np.array(3.0, F32),)),
    "pow_int_exponent": Case("Pow", 13, X4, (np.array(2, I64),)),
    "sum3": Case("Sum", 13, X4, (_w(3, 1, 1), _w(9))),
    "mean3": Case("Mean", 13, X4, (_w(3, 1, 1), _w(9))),
    "max3": Case("Max", 13, X4, (_w(3, 1, 1), _w(9))),
    "min2": Case("Min", 13, X4, (_w(1, 9),)),
    # Clip-6 (attributes) is the Clip of model opsets 7-10
    "clip6_attrs_opset10": Case("Clip", 10, X4, (), {"min": -0.5, "max": 0.7}),
    "clip6_default_opset7": Case("Clip", 7, X4),
    "clip_opset12_both": Case("Clip", 12, X4, (np.array(-0.5, F32), np.array(0.7, F32))),
    "clip_opset12_max_only": Case("Clip", 12, X4, (None, np.array(0.7, F32))),
    "clip_opset13_min_only": Case("Clip", 13, X4, (np.array(-0.2, F32),)),
    "clip_opset13_none": Case("Clip", 13, X4),
    "cast_float64": Case("Cast", 13, X4, (), {"to": 11}),
    "cast_int32": Case("Cast", 13, X4, (), {"to": 6}),
    # reductions
    "reduce_mean_attr": Case("ReduceMean", 13, X4, (), {"axes": [2, 3], "keepdims": 0}),
    "reduce_mean_opset18_input": Case("ReduceMean", 18, X4, (np.array([1, -1], I64),)),
    "reduce_sum_opset13_input": Case("ReduceSum", 13, X4, (np.array([1], I64),), {"keepdims": 0}),
    "reduce_sum_all": Case("ReduceSum", 13, X4),
    "reduce_sum_noop_empty": Case("ReduceSum", 13, X4, (), {"noop_with_empty_axes": 1}),
    "reduce_max_attr": Case("ReduceMax", 13, X4, (), {"axes": [1]}),
    # data movement
    "reshape_static": Case("Reshape", 13, X4, (np.array([2, -1, 9], I64),)),
    "reshape_zero_copy": Case("Reshape", 13, X4, (np.array([0, 0, 81], I64),)),
    "transpose_perm": Case("Transpose", 13, X4, (), {"perm": [0, 2, 3, 1]}),
    "transpose_reverse": Case("Transpose", 13, (2, 3, 4)),
    "concat_const": Case("Concat", 13, X4, (_w(2, 3, 9, 9),), {"axis": 0}),
    "split_opset11_attr": Case("Split", 11, X4, (), {"axis": 1, "split": [1, 2]}, outputs=2),
    "split_opset13_input": Case("Split", 13, X4, (np.array([4, 5], I64),), {"axis": 3}, outputs=2),
    "split_opset13_equal": Case("Split", 13, X4, (), {"axis": 1}, outputs=3),
    "split_opset18_num_outputs": Case("Split", 18, (2, 7), (), {"axis": 1, "num_outputs": 3},
                                      outputs=3),
    "squeeze_opset11": Case("Squeeze", 11, (2, 1, 3, 1), (), {"axes": [1]}),
    "squeeze_opset13_all": Case("Squeeze", 13, (2, 1, 3, 1)),
    "squeeze_opset13_input": Case("Squeeze", 13, (2, 1, 3, 1), (np.array([-1], I64),)),
    "unsqueeze_opset11": Case("Unsqueeze", 11, (2, 3), (), {"axes": [0, 3]}),
    "unsqueeze_opset13": Case("Unsqueeze", 13, (2, 3), (np.array([1, -1], I64),)),
    "slice_opset9_attrs": Case("Slice", 9, X4, (), {"starts": [1, 2], "ends": [3, 100],
                                                    "axes": [2, 3]}),
    "slice_opset9_no_axes": Case("Slice", 9, (4, 5), (), {"starts": [1, -3], "ends": [-1, 5]}),
    "slice_opset13_neg_step": Case("Slice", 13, X4, (np.array([-1, 0], I64),
                                                     np.array([-BIG, BIG], I64),
                                                     np.array([3, 1], I64),
                                                     np.array([-2, 2], I64))),
    "slice_opset10_no_axes_steps": Case("Slice", 10, (4, 5),
                                        (np.array([1], I64), np.array([3], I64))),
    # Pad-2 (attributes) is the Pad of model opsets 7-10
    "pad2_constant_opset10": Case("Pad", 10, X4, (), {"pads": [0, 0, 1, 2, 0, 0, 2, 1],
                                                      "value": 1.5}),
    "pad2_reflect_opset7": Case("Pad", 7, X4, (), {"pads": [0, 0, 2, 1, 0, 0, 1, 2],
                                                   "mode": "reflect"}),
    "pad_opset13_edge": Case("Pad", 13, X4, (np.array([0, 0, 1, 2, 0, 0, 2, 1], I64),),
                             {"mode": "edge"}),
    "pad_opset13_value_crop": Case("Pad", 13, X4, (np.array([0, 0, 1, -2, 0, 0, 2, 1], I64),
                                                   np.array(-0.5, F32))),
    "pad_opset18_axes": Case("Pad", 18, X4, (np.array([1, 2, 3, 0], I64), None,
                                             np.array([2, 3], I64))),
    "upsample_opset7_nearest": Case("Upsample", 7, (1, 2, 3, 4), (), {"scales": [1.0, 1.0, 2.0, 3.0]},
                                    fc_op="Resize"),
    "upsample_opset9_nearest": Case("Upsample", 9, (1, 2, 3, 4), (np.array([1, 1, 2, 2], F32),),
                                    fc_op="Resize"),
    "upsample_opset9_linear": Case("Upsample", 9, (1, 2, 3, 4), (np.array([1, 1, 2, 1.5], F32),),
                                   {"mode": "linear"}, fc_op="Resize"),
    "resize_opset10_nearest": Case("Resize", 10, (1, 2, 3, 4), (np.array([1, 1, 2, 2], F32),)),
    "resize_opset10_nearest_down": Case("Resize", 10, (1, 2, 8, 9),
                                        (np.array([1, 1, .5, .75], F32),)),
    "resize_opset10_linear_down": Case("Resize", 10, (1, 2, 8, 8), (np.array([1, 1, .5, .75], F32),),
                                       {"mode": "linear"}),
    "resize_opset11_linear_half_pixel": Case("Resize", 11, (1, 2, 5, 4),
                                             (np.zeros(0, F32), np.array([1, 1, 1.6, 2], F32)),
                                             {"mode": "linear"}),
    "resize_opset13_sizes_nearest": Case("Resize", 13, (1, 2, 5, 4),
                                         (None, None, np.array([1, 2, 8, 7], I64)),
                                         {"coordinate_transformation_mode": "asymmetric",
                                          "nearest_mode": "floor"}),
    "resize_opset13_cubic_align": Case("Resize", 13, (1, 2, 5, 4),
                                       (None, np.array([1, 1, 2, 2], F32)),
                                       {"mode": "cubic",
                                        "coordinate_transformation_mode": "align_corners"}),
    "resize_opset18_axes_sizes": Case("Resize", 18, (1, 2, 5, 4), (None, None, np.array([9, 6], I64)),
                                      {"axes": [2, 3], "mode": "linear"}),
    "depth_to_space_dcr": Case("DepthToSpace", 13, (1, 8, 3, 4), (), {"blocksize": 2}),
    "depth_to_space_crd": Case("DepthToSpace", 13, (1, 8, 3, 4), (), {"blocksize": 2, "mode": "CRD"}),
    "space_to_depth": Case("SpaceToDepth", 13, (1, 2, 4, 6), (), {"blocksize": 2}),
    "gather_axis1": Case("Gather", 13, X4, (np.array([2, 0], I64),), {"axis": 1}),
    "gather_scalar_negative": Case("Gather", 13, X4, (np.array(-1, I64),), {"axis": 3}),
}


def _model(case: Case, make_model):  # type: ignore[no-untyped-def]
    names = ["x"] + ["" if c is None else f"c{i}" for i, c in enumerate(case.consts)]
    outs = [f"y{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, names, outs, name="the_node", **case.attrs)
    inits = {f"c{i}": c for i, c in enumerate(case.consts) if c is not None}
    return make_model([node], {"x": case.shape}, outs, inits, opset=case.opset)


@pytest.mark.parametrize("key", [pytest.param(k, id=k) for k in CASES])
def test_op_matches_onnxruntime(key: str, make_model, seeded_input, check_vs_ort) -> None:
    case = CASES[key]
    x = seeded_input(case.shape)
    if case.positive:
        x = np.abs(x) + np.float32(0.1)
    graph = check_vs_ort(_model(case, make_model), {"x": x}, op=case.fc_op or case.op)
    assert all(n.provenance == ("the_node",) for n in graph)
    assert [v.name for v in graph.outputs] == [f"y{i}" for i in range(case.outputs)]
