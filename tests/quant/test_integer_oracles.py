"""The integer run's Conv and Gemm accumulators on real models' own int8 tensors (each
layer's actual input integers in the integer run and its int8 weights, from the trained
digits CNN and the pretrained EfficientNet-Lite0), bit for bit against onnxruntime's
ConvInteger and MatMulInteger; and each layer's int8 output against fc's requantization of
onnxruntime's accumulator (plus the int32 bias, then the clamp).

Signed activations and weights go to onnxruntime as int8 x int8 (its s8s8 kernels are
exact). Unsigned activations (``unsigned=True``: uint8) go with the weights shifted to uint8
(w + 128, zero point 128: the same integer products): onnxruntime's u8s8 kernels depend on
the CPU, and on x86 without VNNI they add pairs of products in saturating int16 (vpmaddubsw;
MatMulInteger was measured off by up to 72,409 on 16x300x50 on an AVX2 host, see
``tests/np_ops/test_integer.py``); on the AVX512-VNNI/AMX host of this test's writing, u8s8
MatMulInteger and ConvInteger were exact. u8u8 and s8s8 are exact on both."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fc.np_ops import integer as ia
from fc.quant.integer_run import IntegerInterpreter
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, sample_photos, split


def _session(node, inputs):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    types = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}
    vi = helper.make_tensor_value_info
    g = helper.make_graph([node], "g", [vi(k, types[v.dtype], list(v.shape)) for k, v in inputs.items()],
                          [vi("y", TensorProto.INT32, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_accumulator(node, xq, x_zp, wq):
    """onnxruntime's int32 accumulator of ``node`` (Conv or Gemm) on integers ``xq`` (zero
    point ``x_zp``) and int8 weights ``wq`` (zero point 0)."""
    from onnx import helper

    if xq.dtype == np.uint8:  # u8 x u8, exact: the weights + 128 at zero point 128
        w, wz = (wq.astype(np.int16) + 128).astype(np.uint8), np.uint8(128)
    else:
        w, wz = wq.astype(np.int8), np.int8(0)
    feeds = {"x": xq, "w": w, "xz": np.array(x_zp, xq.dtype), "wz": np.array(wz)}
    if node.op_type == "Conv":
        a = node.attrs
        op = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], strides=list(a["strides"]),
                              pads=list(a["pads"]), dilations=list(a["dilations"]), group=a["group"])
    else:
        if node.attrs["transB"]:
            feeds["w"] = np.ascontiguousarray(feeds["w"].T)
        op = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
    return _session(op, feeds).run(None, feeds)[0]


def _tflite_activation_range(act, attrs, scale, zero, qmin, qmax):
    """[act_min, act_max] of a fused activation as TFLite's CalculateActivationRangeQuantized
    (kernel_util.cc) computes it, written out from the output's scale and zero point:
    quantize(f) = zero + (int32) std::round(f / scale) in float32 (round: half away from
    zero); ReLU: [max(qmin, quantize(0)), qmax]; ReLU6 (here any clip [alpha, beta]):
    [max(qmin, quantize(alpha)), min(qmax, quantize(beta))]; none: [qmin, qmax]."""
    def quantize(f):
        t = float(np.float32(f) / np.float32(scale))  # the float32 quotient, exactly
        return zero + int(math.copysign(math.floor(abs(t) + 0.5), t))  # + 0.5 exact in float64

    if act == "relu":
        return max(qmin, quantize(0.0)), qmax
    if act == "clip":
        return max(qmin, quantize(attrs["act_alpha"])), min(qmax, quantize(attrs["act_beta"]))
    assert not act, act
    return qmin, qmax


def _check_layers(qg, x, rounding="gemmlowp"):
    """Every Conv/Gemm of the integer run of ``qg`` on ``x``; returns the layers compared."""
    ii = IntegerInterpreter(qg, rounding=rounding)
    env = ii.run({"input": x}, intermediate=True)
    done = []
    for node in qg:
        if node.name not in ii.out_q or node.op_type not in ("Conv", "Gemm"):
            continue
        xq = env[node.inputs[0].name]  # the integers this layer read in the integer run
        p = ii.params[node.inputs[0].name]
        wq, pw = ii._weight(node, 1)
        ref = _ort_accumulator(node, xq, int(p.zero), wq)
        if node.op_type == "Conv":
            got = ia.int_conv(xq, int(p.zero), wq, 0, strides=node.attrs["strides"],
                              pads=node.attrs["pads"], dilations=node.attrs["dilations"],
                              group=node.attrs["group"])
        else:
            got = ia.int_matmul(xq, int(p.zero), wq.T if node.attrs["transB"] else wq, 0)
        np.testing.assert_array_equal(got, ref, err_msg=node.name)
        # the layer's int8 output = requantize(onnxruntime's accumulator + bias), clamped
        bq = ii._weight(node, 2)[0].astype(np.int64)
        acc = ref.astype(np.int64) + bq.reshape((1, -1) + (1,) * (ref.ndim - 2))
        q, po = ii._out(node)
        y = ia.requantize(acc, p.scale * pw.scale / po.scale, rounding=rounding).astype(np.int64)
        lo, hi = _tflite_activation_range(node.attrs.get("activation", ""), node.attrs, float(po.scale),
                                          int(po.zero), q.attrs["qmin"], q.attrs["qmax"])
        z = int(po.zero)
        np.testing.assert_array_equal(np.clip(y + z, lo, hi), env[q.output.name], err_msg=node.name)
        done.append(node.op_type)
    return done


@pytest.mark.parametrize("unsigned", [False, True], ids=["int8", "uint8_activations"])
@pytest.mark.parametrize("rounding", ["gemmlowp", "single"])
def test_digits_cnn_accumulators_equal_onnxruntime(digits, unsigned, rounding):
    _, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:256], 128))
    spec = build_spec(fused, table, get_strategy("symmetry_max_t", unsigned=unsigned))
    done = _check_layers(quantized_graph(fused, spec), data.x_test[:64], rounding)
    assert "Conv" in done and "Gemm" in done and len(done) >= 3


def test_efficientnet_lite0_accumulators_equal_onnxruntime(efficientnet):
    """All 49 Conv layers (1x1, 3x3 and 5x5 depthwise, strided) and the classifier on one
    photo."""
    _, fused, pre = efficientnet
    photos = sample_photos()
    table = calibrate_arrays(fused, [np.stack([pre(f) for f in photos[:2]])], "max")
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    done = _check_layers(qg, pre(photos[14])[None])
    assert done.count("Gemm") == 1 and done.count("Conv") == 49
