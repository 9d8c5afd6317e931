"""Shape rules of the op schemas against independent oracles: torch.nn.functional for the
layer ops (Conv, ConvTranspose, pools incl. ceil_mode, ...), numpy for data movement and
broadcasting. Each case builds one node with ``Graph.add_node`` (which completes the
attributes and infers the output types) and compares shape and dtype with what the oracle
actually computes on arrays of the input shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fc.errors import SchemaError
from fc.ir import Graph

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


def ints(*shape: int) -> tuple[tuple[int, ...], str]:
    """An int64 input (indices) of this shape; plain tuples are float32 inputs."""
    return shape, "int64"


def _spec(s: Any) -> tuple[tuple[int, ...], str]:
    return s if len(s) == 2 and isinstance(s[1], str) else (tuple(s), "float32")


def _infer(op: str, inputs: list[Any], attrs: dict[str, Any], num_outputs: int = 1
           ) -> list[tuple[tuple[int, ...], str]]:
    g = Graph()
    vals = [g.add_input(f"in{i}", *_spec(s)) for i, s in enumerate(inputs)]
    node = g.add_node(op, vals, attrs, name="n", num_outputs=num_outputs)
    return [(v.shape, v.dtype) for v in node.outputs]


def _oracle(oracle: Callable[..., Any], inputs: list[Any]) -> list[tuple[tuple[int, ...], str]]:
    arrays = []
    for s in inputs:
        shape, dtype = _spec(s)
        arrays.append(np.zeros(shape, dtype) if dtype == "int64" else
                      np.random.default_rng(0).standard_normal(shape).astype(dtype))
    out = oracle(*arrays)
    outs = out if isinstance(out, list | tuple) else [out]
    res = []
    for o in outs:
        o = o.numpy() if isinstance(o, torch.Tensor) else np.asarray(o)
        res.append((tuple(o.shape), o.dtype.name))
    return res


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


TORCH_CASES = [
    # -- Conv ------------------------------------------------------------------------------
    pytest.param("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], {"pads": (1, 1, 1, 1)},
                 lambda x, w: F.conv2d(t(x), t(w), padding=1), id="conv3x3_pad1"),
    pytest.param("Conv", [(2, 3, 9, 9), (8, 3, 3, 3), (8,)], {"strides": (2, 2)},
                 lambda x, w, b: F.conv2d(t(x), t(w), t(b), stride=2), id="conv_stride2_odd_bias"),
    pytest.param("Conv", [(1, 3, 10, 10), (4, 3, 3, 3)], {"dilations": (2, 2), "pads": (2, 2, 2, 2)},
                 lambda x, w: F.conv2d(t(x), t(w), dilation=2, padding=2), id="conv_dilation2"),
    pytest.param("Conv", [(1, 8, 7, 7), (8, 2, 3, 3)], {"group": 4},
                 lambda x, w: F.conv2d(t(x), t(w), groups=4), id="conv_group4"),
    pytest.param("Conv", [(1, 6, 7, 7), (6, 1, 3, 3)], {"group": 6, "strides": (2, 2),
                                                        "pads": (1, 1, 1, 1)},
                 lambda x, w: F.conv2d(t(x), t(w), groups=6, stride=2, padding=1),
                 id="conv_depthwise_stride2"),
    pytest.param("Conv", [(1, 3, 7, 7), (4, 3, 3, 3)], {"pads": (0, 1, 2, 3)},  # top left bottom right
                 lambda x, w: F.conv2d(F.pad(t(x), (1, 3, 0, 2)), t(w)), id="conv_asymmetric_pads"),
    pytest.param("Conv", [(1, 3, 9, 12), (5, 3, 1, 5)], {"strides": (1, 2), "pads": (0, 2, 0, 2)},
                 lambda x, w: F.conv2d(t(x), t(w), stride=(1, 2), padding=(0, 2)),
                 id="conv_rect_kernel_stride"),
    pytest.param("Conv", [(1, 16, 5, 5), (32, 16, 1, 1)], {},
                 lambda x, w: F.conv2d(t(x), t(w)), id="conv1x1"),
    # -- ConvTranspose ---------------------------------------------------------------------
    pytest.param("ConvTranspose", [(1, 4, 5, 5), (4, 6, 3, 3)],
                 {"strides": (2, 2), "pads": (1, 1, 1, 1), "output_padding": (1, 1)},
                 lambda x, w: F.conv_transpose2d(t(x), t(w), stride=2, padding=1, output_padding=1),
                 id="convT_stride2_pad1_outpad1"),
    pytest.param("ConvTranspose", [(1, 4, 5, 6), (4, 3, 3, 3), (6,)],
                 {"group": 2, "dilations": (2, 2)},
                 lambda x, w, b: F.conv_transpose2d(t(x), t(w), t(b), groups=2, dilation=2),
                 id="convT_group2_dilation2_bias"),
    pytest.param("ConvTranspose", [(1, 8, 4, 4), (8, 8, 4, 4)], {"strides": (2, 2), "pads": (1, 1, 1, 1)},
                 lambda x, w: F.conv_transpose2d(t(x), t(w), stride=2, padding=1), id="convT_k4_s2_upsample"),
    pytest.param("ConvTranspose", [(1, 2, 3, 5), (2, 2, 3, 2)], {"strides": (3, 2)},
                 lambda x, w: F.conv_transpose2d(t(x), t(w), stride=(3, 2)), id="convT_rect_stride"),
    # -- pools -----------------------------------------------------------------------------
    pytest.param("MaxPool", [(1, 3, 8, 8)], {"kernel_shape": (2, 2), "strides": (2, 2)},
                 lambda x: F.max_pool2d(t(x), 2, 2), id="maxpool_k2s2"),
    pytest.param("MaxPool", [(1, 3, 9, 9)], {"kernel_shape": (3, 3), "strides": (2, 2),
                                             "pads": (1, 1, 1, 1)},
                 lambda x: F.max_pool2d(t(x), 3, 2, 1), id="maxpool_k3s2_pad1"),
    pytest.param("MaxPool", [(1, 3, 8, 8)], {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 1},
                 lambda x: F.max_pool2d(t(x), 3, 2, ceil_mode=True), id="maxpool_ceil_rounds_up"),
    pytest.param("MaxPool", [(1, 1, 5, 5)], {"kernel_shape": (2, 2), "strides": (2, 2),
                                             "pads": (1, 1, 1, 1), "ceil_mode": 1},
                 lambda x: F.max_pool2d(t(x), 2, 2, 1, ceil_mode=True),
                 id="maxpool_ceil_drops_window_starting_in_pad"),
    pytest.param("MaxPool", [(1, 1, 9, 9)], {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 1},
                 lambda x: F.max_pool2d(t(x), 3, 2, ceil_mode=True), id="maxpool_ceil_exact_fit"),
    pytest.param("MaxPool", [(1, 2, 10, 10)], {"kernel_shape": (3, 3), "dilations": (2, 2)},
                 lambda x: F.max_pool2d(t(x), 3, 1, dilation=2), id="maxpool_dilation2"),
    pytest.param("MaxPool", [(1, 2, 7, 10)], {"kernel_shape": (2, 3), "strides": (1, 2)},
                 lambda x: F.max_pool2d(t(x), (2, 3), (1, 2)), id="maxpool_rect"),
    pytest.param("AveragePool", [(1, 3, 8, 8)], {"kernel_shape": (3, 3), "strides": (2, 2),
                                                 "pads": (1, 1, 1, 1), "ceil_mode": 1},
                 lambda x: F.avg_pool2d(t(x), 3, 2, 1, ceil_mode=True, count_include_pad=False),
                 id="avgpool_k3s2_pad1_ceil"),
    pytest.param("MaxPool", [(1, 1, 10, 11)], {"kernel_shape": (3, 3), "strides": (2, 2),
                                               "dilations": (2, 2), "ceil_mode": 1},
                 lambda x: F.max_pool2d(t(x), 3, 2, dilation=2, ceil_mode=True), id="maxpool_ceil_dilation2"),
    pytest.param("AveragePool", [(1, 1, 6, 6)], {"kernel_shape": (3, 3), "strides": (3, 3),
                                                 "pads": (1, 1, 1, 1), "ceil_mode": 1},
                 lambda x: F.avg_pool2d(t(x), 3, 3, 1, ceil_mode=True), id="avgpool_ceil_window_in_pad"),
    pytest.param("AveragePool", [(2, 4, 7, 7)], {"kernel_shape": (2, 2), "strides": (2, 2)},
                 lambda x: F.avg_pool2d(t(x), 2, 2), id="avgpool_k2s2_floor"),
    pytest.param("GlobalAveragePool", [(2, 5, 7, 3)], {},
                 lambda x: F.adaptive_avg_pool2d(t(x), 1), id="global_avgpool"),
    pytest.param("GlobalMaxPool", [(2, 5, 7, 3)], {},
                 lambda x: F.adaptive_max_pool2d(t(x), 1), id="global_maxpool"),
    # -- normalization / softmax -----------------------------------------------------------
    pytest.param("BatchNormalization", [(2, 3, 4, 4), (3,), (3,), (3,), (3,)], {},
                 lambda x, s, b, m, v: F.batch_norm(t(x), t(m), t(v), t(s), t(b)), id="batchnorm"),
    pytest.param("LayerNormalization", [(2, 5, 6), (6,), (6,)], {"axis": -1},
                 lambda x, s, b: F.layer_norm(t(x), (6,), t(s), t(b)), id="layernorm"),
    pytest.param("Softmax", [(2, 5, 3)], {"axis": 1}, lambda x: F.softmax(t(x), 1), id="softmax_axis1"),
    pytest.param("LRN", [(1, 6, 4, 4)], {"size": 3}, lambda x: F.local_response_norm(t(x), 3), id="lrn"),
    # -- pixel shuffle / resize ------------------------------------------------------------
    pytest.param("DepthToSpace", [(1, 8, 3, 5)], {"blocksize": 2, "mode": "CRD"},
                 lambda x: F.pixel_shuffle(t(x), 2), id="depth_to_space_crd"),
    pytest.param("SpaceToDepth", [(1, 2, 4, 6)], {"blocksize": 2},
                 lambda x: F.pixel_unshuffle(t(x), 2), id="space_to_depth"),
    pytest.param("Resize", [(1, 3, 5, 7)], {"scales": (1, 1, 2, 2)},
                 lambda x: F.interpolate(t(x), scale_factor=2, mode="nearest"), id="resize_x2"),
    pytest.param("Resize", [(1, 3, 5, 7)], {"scales": (1, 1, 1.5, 1.5), "mode": "linear"},
                 lambda x: F.interpolate(t(x), scale_factor=1.5, mode="bilinear"), id="resize_x1_5_floor"),
    pytest.param("Resize", [(1, 3, 5, 7)], {"scales": (1, 1, 0.5, 0.5)},
                 lambda x: F.interpolate(t(x), scale_factor=0.5), id="resize_half"),
]

NUMPY_CASES = [
    # -- Gemm / MatMul ---------------------------------------------------------------------
    pytest.param("Gemm", [(2, 64), (10, 64), (10,)], {"transB": 1}, lambda a, b, c: a @ b.T + c,
                 id="gemm_transB_bias"),
    pytest.param("Gemm", [(64, 2), (64, 10)], {"transA": 1}, lambda a, b: a.T @ b, id="gemm_transA"),
    pytest.param("Gemm", [(3, 4), (4, 5), (1, 5)], {}, lambda a, b, c: a @ b + c, id="gemm_row_bias"),
    pytest.param("MatMul", [(2, 3, 4), (4, 5)], {}, np.matmul, id="matmul_batched"),
    pytest.param("MatMul", [(4,), (2, 4, 5)], {}, np.matmul, id="matmul_vec_left"),
    pytest.param("MatMul", [(3, 4), (4,)], {}, np.matmul, id="matmul_vec_right"),
    pytest.param("MatMul", [(2, 1, 3, 4), (5, 4, 6)], {}, np.matmul, id="matmul_broadcast_batch"),
    # -- Reshape / Flatten / Transpose -----------------------------------------------------
    pytest.param("Reshape", [(2, 3, 4)], {"shape": (0, -1)}, lambda x: x.reshape(2, -1),
                 id="reshape_copy0_infer"),
    pytest.param("Reshape", [(2, 3, 4)], {"shape": (4, 6)}, lambda x: x.reshape(4, 6), id="reshape_explicit"),
    pytest.param("Reshape", [(2, 3, 4)], {"shape": (2, -1, 2)}, lambda x: x.reshape(2, -1, 2),
                 id="reshape_infer_middle"),
    pytest.param("Reshape", [(1, 1)], {"shape": ()}, lambda x: x.reshape(()), id="reshape_to_scalar"),
    pytest.param("Flatten", [(2, 3, 4, 5)], {"axis": 1}, lambda x: x.reshape(2, -1), id="flatten_axis1"),
    pytest.param("Flatten", [(2, 3, 4, 5)], {"axis": 0}, lambda x: x.reshape(1, -1), id="flatten_axis0"),
    pytest.param("Flatten", [(2, 3, 4, 5)], {"axis": -1}, lambda x: x.reshape(-1, 5),
                 id="flatten_axis_minus1"),
    pytest.param("Flatten", [(2, 3, 4, 5)], {"axis": 4}, lambda x: x.reshape(-1, 1), id="flatten_axis_rank"),
    pytest.param("Transpose", [(2, 3, 4, 5)], {"perm": (0, 2, 3, 1)},
                 lambda x: np.transpose(x, (0, 2, 3, 1)), id="transpose_nchw_to_nhwc"),
    pytest.param("Transpose", [(2, 3, 4)], {}, np.transpose, id="transpose_default_reverses"),
    # -- Slice -----------------------------------------------------------------------------
    pytest.param("Slice", [(5, 6)], {"starts": (1,), "ends": (3,), "axes": (0,), "steps": (1,)},
                 lambda x: x[1:3], id="slice_basic"),
    pytest.param("Slice", [(5, 6)], {"starts": (0,), "ends": (6,), "axes": (1,), "steps": (2,)},
                 lambda x: x[:, 0:6:2], id="slice_step2_axis1"),
    pytest.param("Slice", [(5, 6)], {"starts": (2,), "ends": (100,), "axes": (0,), "steps": (1,)},
                 lambda x: x[2:100], id="slice_end_past_dim"),
    pytest.param("Slice", [(5, 6)], {"starts": (-3,), "ends": (INT64_MAX,), "axes": (1,), "steps": (1,)},
                 lambda x: x[:, -3:], id="slice_negative_start_int64_max_end"),
    pytest.param("Slice", [(5, 6)], {"starts": (-1,), "ends": (INT64_MIN,), "axes": (0,), "steps": (-1,)},
                 lambda x: x[::-1], id="slice_reverse"),
    pytest.param("Slice", [(7,)], {"starts": (5,), "ends": (1,), "axes": (0,), "steps": (-2,)},
                 lambda x: x[5:1:-2], id="slice_negative_step2"),
    pytest.param("Slice", [(4, 5, 6)], {"starts": (1, 1), "ends": (3, -1), "axes": (0, -1), "steps": (1, 3)},
                 lambda x: x[1:3, :, 1:-1:3], id="slice_two_axes_negative_axis"),
    pytest.param("Slice", [(5, 6)], {"starts": (3,), "ends": (1,), "axes": (0,), "steps": (1,)},
                 lambda x: x[3:1], id="slice_empty"),
    # -- Concat / Split / Gather -----------------------------------------------------------
    pytest.param("Concat", [(1, 2, 4), (1, 3, 4), (1, 1, 4)], {"axis": 1},
                 lambda *xs: np.concatenate(xs, axis=1), id="concat_axis1_three"),
    pytest.param("Concat", [(2, 3)], {"axis": 0}, lambda x: np.concatenate([x]), id="concat_single"),
    pytest.param("Concat", [(2, 3), (2, 5)], {"axis": -1},
                 lambda *xs: np.concatenate(xs, axis=-1), id="concat_axis_minus1"),
    pytest.param("Gather", [(5, 6), ints(2, 3)], {"axis": 0}, lambda x, i: np.take(x, i, axis=0),
                 id="gather_axis0_2d_indices"),
    pytest.param("Gather", [(4, 5, 6), ints(3)], {"axis": -1}, lambda x, i: np.take(x, i, axis=-1),
                 id="gather_axis_minus1"),
    pytest.param("Gather", [(4, 5, 6), ints()], {"axis": 1}, lambda x, i: np.take(x, i, axis=1),
                 id="gather_scalar_index_drops_axis"),
    # -- Squeeze / Unsqueeze / Pad ---------------------------------------------------------
    pytest.param("Squeeze", [(1, 3, 1, 4)], {"axes": (0,)}, lambda x: np.squeeze(x, 0), id="squeeze_axis0"),
    pytest.param("Squeeze", [(1, 3, 1, 4)], {"axes": (-2,)}, lambda x: np.squeeze(x, -2),
                 id="squeeze_negative_axis"),
    pytest.param("Squeeze", [(1, 3, 1, 4)], {}, np.squeeze, id="squeeze_all"),
    pytest.param("Unsqueeze", [(3, 4)], {"axes": (0,)}, lambda x: np.expand_dims(x, 0), id="unsqueeze_axis0"),
    pytest.param("Unsqueeze", [(3, 4)], {"axes": (1, 3)}, lambda x: np.expand_dims(x, (1, 3)),
                 id="unsqueeze_two_axes"),
    pytest.param("Unsqueeze", [(3, 4)], {"axes": (3, 1)}, lambda x: np.expand_dims(x, (3, 1)),
                 id="unsqueeze_unsorted_axes"),
    pytest.param("Unsqueeze", [(3, 4)], {"axes": (-1,)}, lambda x: np.expand_dims(x, -1),
                 id="unsqueeze_negative_axis"),
    pytest.param("Pad", [(2, 3, 4, 5)], {"pads": (0, 0, 1, 2, 0, 0, 3, 4)},
                 lambda x: np.pad(x, ((0, 0), (0, 0), (1, 3), (2, 4))), id="pad_constant_hw"),
    pytest.param("Pad", [(2, 3, 4, 5)], {"pads": (0, 0, 1, 1, 0, 0, 2, 3), "mode": "reflect"},
                 lambda x: np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 3)), mode="reflect"), id="pad_reflect"),
    pytest.param("Pad", [(5, 6)], {"pads": (-1, 0, 0, -2)}, lambda x: x[1:, :-2], id="pad_negative_crops"),
    pytest.param("Pad", [(3, 4)], {"pads": (2, 0, 0, 5), "mode": "edge"},
                 lambda x: np.pad(x, ((2, 0), (0, 5)), mode="edge"), id="pad_edge"),
    # -- broadcasting ----------------------------------------------------------------------
    pytest.param("Add", [(2, 3, 4), (4,)], {}, np.add, id="add_trailing_vector"),
    pytest.param("Mul", [(2, 1, 4), (3, 1)], {}, np.multiply, id="mul_both_sides_broadcast"),
    pytest.param("Sub", [(1,), (5, 6)], {}, np.subtract, id="sub_size1_left"),
    pytest.param("Div", [(), (2, 2)], {}, np.divide, id="div_scalar"),
    pytest.param("Pow", [(3, 1, 5), (1, 4, 1)], {}, lambda a, b: np.power(np.abs(a), b), id="pow_outer"),
    pytest.param("Max", [(2, 1), (1, 3), (2, 3)], {}, lambda a, b, c: np.maximum(np.maximum(a, b), c),
                 id="max_variadic"),
    pytest.param("PRelu", [(2, 3, 4, 4), (3, 1, 1)], {}, lambda x, s: np.where(x >= 0, x, s * x),
                 id="prelu_channel_slope"),
    # -- reductions / cast -----------------------------------------------------------------
    pytest.param("ReduceMean", [(2, 3, 4, 5)], {"axes": (2, 3)},
                 lambda x: np.mean(x, axis=(2, 3), keepdims=True), id="reducemean_hw_keepdims"),
    pytest.param("ReduceMean", [(2, 3, 4, 5)], {"axes": (1,), "keepdims": 0},
                 lambda x: np.mean(x, axis=1), id="reducemean_drop_axis"),
    pytest.param("ReduceSum", [(2, 3, 4)], {}, lambda x: np.sum(x, keepdims=True), id="reducesum_all"),
    pytest.param("ReduceMax", [(2, 3, 4)], {"axes": (-1,), "keepdims": 0},
                 lambda x: np.max(x, axis=-1), id="reducemax_negative_axis"),
    pytest.param("Cast", [(2, 3)], {"to": "int64"}, lambda x: x.astype(np.int64), id="cast_int64"),
]


@pytest.mark.parametrize("op, inputs, attrs, oracle", TORCH_CASES + NUMPY_CASES)
def test_inferred_type_matches_oracle(op: str, inputs: list[Any], attrs: dict[str, Any],
                                      oracle: Callable[..., Any]) -> None:
    assert _infer(op, inputs, attrs) == _oracle(oracle, inputs)


@pytest.mark.parametrize("split, axis", [
    pytest.param((1, 2, 3), 0, id="split_axis0"),
    pytest.param((4, 1, 0, 1), -1, id="split_negative_axis_with_empty_piece"),
])
def test_split_matches_numpy(split: tuple[int, ...], axis: int) -> None:
    shape = (6, 6)
    got = _infer("Split", [shape], {"split": split, "axis": axis}, num_outputs=len(split))
    cuts = np.cumsum(split)[:-1]
    assert got == _oracle(lambda x: np.split(x, cuts, axis=axis), [shape])


BAD_SHAPES = [
    pytest.param("Conv", [(1, 64, 8, 8), (6, 21, 3, 3)], {"group": 3},
                 r"node 'stage2_conv3' \(Conv\): attribute 'group'=3 does not divide input channels 64",
                 id="conv_group_does_not_divide_channels"),
    pytest.param("Conv", [(1, 3, 8, 8), (4, 5, 3, 3)], {},
                 r"W \(4, 5, 3, 3\) expects 5 input channels, X has 3",
                 id="conv_weight_channels"),
    pytest.param("Conv", [(1, 3, 2, 2), (4, 3, 5, 5)], {}, r"kernel 5 .* larger than padded input 2",
                 id="conv_kernel_larger_than_input"),
    pytest.param("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], {"strides": (1, 1, 1)},
                 r"strides=\[1, 1, 1\] needs 2 values", id="conv_strides_rank"),
    pytest.param("Conv", [(1, 3, 8), (4, 3, 3)], {}, r"must be 4-D", id="conv_not_4d"),
    pytest.param("Conv", [(1, 3, 8, 8), (4, 3, 3, 3), (5,)], {}, r"B \(5,\) must be \(4,\)",
                 id="conv_bias_size"),
    pytest.param("MaxPool", [(1, 3, 8, 8)], {"kernel_shape": (2, 2), "pads": (2, 2, 2, 2)},
                 r"pads \[2, 2, 2, 2\] must be smaller than kernel_shape \[2, 2\]", id="pool_pad_too_big"),
    pytest.param("Gemm", [(2, 3), (4, 5)], {}, r"inner dimensions differ", id="gemm_inner_dims"),
    pytest.param("MatMul", [(2, 3), (4, 5)], {}, r"inner dimensions differ: \(2, 3\) @ \(4, 5\)",
                 id="matmul_inner_dims"),
    pytest.param("Concat", [(1, 2, 3), (1, 3, 4)], {"axis": 1}, r"differ outside axis 1",
                 id="concat_mismatch"),
    pytest.param("Reshape", [(2, 3)], {"shape": (4, -1)}, r"cannot reshape \(2, 3\) to \[4, -1\]",
                 id="reshape_impossible"),
    pytest.param("Reshape", [(2, 3)], {"shape": (-1, -1)}, r"invalid target shape", id="reshape_two_minus1"),
    pytest.param("Add", [(2, 3), (4,)], {}, r"do not broadcast", id="add_no_broadcast"),
    pytest.param("Transpose", [(2, 3, 4)], {"perm": (0, 0, 1)}, r"not a permutation",
                 id="transpose_bad_perm"),
    pytest.param("Squeeze", [(2, 3)], {"axes": (1,)}, r"cannot squeeze axis 1 of size 3",
                 id="squeeze_non_unit"),
    pytest.param("Slice", [(2, 3)], {"starts": (0,), "ends": (1,), "axes": (5,), "steps": (1,)},
                 r"axes=5 out of range for rank 2", id="slice_axis_out_of_range"),
    pytest.param("Slice", [(2, 3)], {"starts": (0,), "ends": (1,), "axes": (0,), "steps": (0,)},
                 r"step must not be 0", id="slice_step0"),
    pytest.param("Split", [(6, 4)], {"split": (2, 2)}, r"split \[2, 2\] does not sum to dim 6",
                 id="split_sum"),
    pytest.param("Gather", [(5, 6), (2,)], {}, r"indices dtype float32", id="gather_float_indices"),
    pytest.param("Flatten", [(2, 3)], {"axis": 3}, r"axis=3 out of range for rank 2", id="flatten_axis"),
    pytest.param("Pad", [(2, 3)], {"pads": (1, 1)}, r"pads \[1, 1\] needs 4 values", id="pad_length"),
    pytest.param("Softmax", [(2, 3)], {"axis": 2}, r"axis=2 out of range for rank 2", id="softmax_axis"),
    pytest.param("BatchNormalization", [(1, 3, 4, 4), (3,), (3,), (3,), (4,)], {},
                 r"var \(4,\) must be \(3,\)", id="batchnorm_stats_size"),
]


@pytest.mark.parametrize("op, inputs, attrs, pattern", BAD_SHAPES)
def test_bad_shapes_raise_clear_schema_errors(op: str, inputs: list[Any], attrs: dict[str, Any],
                                             pattern: str) -> None:
    g = Graph()
    vals = [g.add_input(f"in{i}", *_spec(s)) for i, s in enumerate(inputs)]
    with pytest.raises(SchemaError, match=pattern) as err:
        g.add_node(op, vals, attrs, name="stage2_conv3")
    assert str(err.value).startswith(f"node 'stage2_conv3' ({op}): ")
    assert "\n" not in str(err.value)
    assert len(g) == 0 and all(v.uses == [] for v in vals)
