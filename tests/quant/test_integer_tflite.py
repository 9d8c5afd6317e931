"""The integer run's layers against TensorFlow Lite's reference kernels
(``experimental_op_resolver_type=BUILTIN_REF``) on the pretrained EfficientNet-Lite0's own
integers: for each layer kind a one-layer TFLite model is converted from Keras with the
layer's geometry, then its quantization parameters and constant buffers are replaced by
fc's (input/output scales and zero points, the per-channel weight scales, the int8 weights,
the int32 bias), so TFLite computes with exactly fc's numbers; it is fed the int8 input the
layer read in fc's integer run and its int8 output must equal the integer run's, bit for bit.

Compared: every Conv geometry of the network, CONV_2D (the 3x3 stride-2 stem, 1x1 with
and without ReLU6) and DEPTHWISE_CONV_2D (3x3 and 5x5, strides 1 and 2), torch's pads as an
explicit PAD op (int8, padding with the zero point) where there are any; the residual Add
(ADD, its 2^20 rescale) and the classifier (FULLY_CONNECTED, per-channel). The pip build of TFLite
rounds as ``rounding="gemmlowp"`` (TFLITE_SINGLE_ROUNDING is off), so that is the mode
compared (with ``rounding="single"`` the 1x1 and 3x3 stride-1 Convs differ from TFLite on 0.3-1.2 % of their
values: the comparison tells the two apart).

On a small CNN of pools and Concats (``_Pools``, symmetry_max_t signed and unsigned), with
TFLite models written out op by op:

- Concat, bit for bit (int8 and uint8 inputs): TFLite's int8 CONCATENATION refuses inputs
  of another scale, so the model is a QUANTIZE per input (int8/uint8 -> the output's scale:
  MultiplyByQuantizedMultiplier, as fc's Concat requantizes) and then CONCATENATION.
- AveragePool, every output but the exact ties of S / N (int8, and uint8 inputs): TFLite's
  AVERAGE_POOL_2D has no output scale of its own (it averages on its input's grid) and
  rounds ties away from zero. fc's plan gives a pool its own scale, a requantization by
  s_in / (N s_out) that AVERAGE_POOL_2D cannot express, so not compared; what is compared
  is fc's kernel with the output on the input's grid (its exact division, also
  scale_shift_t's when the exponents agree), equal but at the ties, where fc rounds half to
  even by its documented rule (both checked against the exact quotient).
- GlobalAveragePool against MEAN, within one step, not bit for bit: TFLite's int8 MEAN
  rounds S * s_in / s_out (MultiplyByQuantizedMultiplier) and then divides by N rounding
  again, fc requantizes S by s_in / (N s_out) once; by construction they differ on some
  outputs (1 of 48 here).

- Convs with a uint8 side, bit for bit, per-tensor weights: a uint8 input through TFLite's
  uint8 CONV_2D (uint8 weights with one zero point: fc's int8 weights as w + 128 at 128),
  its output at zero point 128 then a same-scale QUANTIZE to int8; a ReLU into uint8
  through the int8 kernel at output zero point -128 and a same-scale QUANTIZE to uint8.

Not compared: a uint8 input's Conv/Gemm with per-channel weights (TFLite's uint8 kernel has
one weight scale); scale_shift_t (its requantization is one half-to-even shift, while TFLite
carries a multiplier 2^-k as M0 = 2^30 with a right shift k - 1: two roundings, the last
away from zero); fc's own-scale AveragePool (above); rounding="single" (the pip TFLite is
built without TFLITE_SINGLE_ROUNDING)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fc.quant.integer_run import IntegerInterpreter
from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, sample_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def lite0_run(efficientnet):
    _, fused, pre = efficientnet
    photos = sample_photos()
    table = calibrate_arrays(fused, [np.stack([pre(f) for f in photos[:2]])], "max")
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t")))
    ii = IntegerInterpreter(qg, rounding="gemmlowp")
    env = ii.run({"input": pre(photos[14])[None]}, intermediate=True)
    return qg, ii, env


def _convert(tf, keras_model, inputs):
    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.normal(size=s).astype(np.float32) for s in inputs]
                                           for _ in range(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _quant(fb, scale, zero, axis=0):
    q = fb.QuantizationParametersT()
    q.scale = np.atleast_1d(np.asarray(scale, np.float32))
    q.zeroPoint = np.atleast_1d(np.asarray(zero, np.int64))
    q.quantizedDimension = axis
    return q


def _run_patched(tf, buf, patch, feeds):
    """``patch(model, subgraph, fb)`` edits the converted model; then BUILTIN_REF runs it on
    ``feeds`` (int8 arrays in the first operator's input order: the interpreter's own input
    order follows tensor names, which differ from run to run); returns the int8 output."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
    patch(model, model.subgraphs[0], fb)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    interp = tf.lite.Interpreter(model_content=bytes(b.Output()),
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    first = model.subgraphs[0].operators[0].inputs
    assert len(feeds) == len(model.subgraphs[0].inputs)
    for t, x in zip(first, feeds):
        assert t in model.subgraphs[0].inputs
        interp.set_tensor(int(t), x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _layer_numbers(qg, ii, env, node):
    p = ii.params[node.inputs[0].name]
    wq, pw = ii._weight(node, 1)
    bq, pb = ii._weight(node, 2)
    q, po = ii._out(node)
    return env[node.inputs[0].name], p, wq, pw, bq, pb, po, env[q.output.name]


def _set_layer(model, sg, fb, op, x_p, w, w_p, w_axis, b, b_p, o_p):
    i_x, i_w, i_b = op.inputs  # (a zero Keras bias would be dropped: the layers get ones)
    assert i_b >= 0
    sg.tensors[i_x].quantization = _quant(fb, x_p.scale, x_p.zero)
    sg.tensors[i_w].quantization = _quant(fb, w_p.scale, np.zeros(np.size(w_p.scale)), w_axis)
    sg.tensors[i_b].quantization = _quant(fb, b_p.scale, np.zeros(np.size(b_p.scale)))
    sg.tensors[op.outputs[0]].quantization = _quant(fb, o_p.scale, o_p.zero)
    model.buffers[sg.tensors[i_w].buffer].data = np.frombuffer(
        np.ascontiguousarray(w, np.int8).tobytes(), np.uint8)
    model.buffers[sg.tensors[i_b].buffer].data = np.frombuffer(
        np.ascontiguousarray(b, np.int32).tobytes(), np.uint8)


def _pick(qg, ii, want):
    for node in qg:
        if node.name in ii.out_q and want(node):
            return node
    raise AssertionError("no such layer")


def _conv(group, k, stride, act):
    def want(n):
        return (n.op_type == "Conv" and (n.attrs["group"] > 1) == (group > 1)
                and n.inputs[1].producer.inputs[0].const.shape[2:] == (k, k)
                and tuple(n.attrs["strides"]) == (stride, stride)
                and bool(n.attrs.get("activation")) == act)
    return want


CONVS = {  # every geometry of EfficientNet-Lite0 (strided ones through an explicit PAD op)
    "stem3x3_s2_relu6": _conv(1, 3, 2, True),
    "conv1x1_relu6": _conv(1, 1, 1, True),
    "conv1x1_linear": _conv(1, 1, 1, False),
    "depthwise3x3_relu6": _conv(2, 3, 1, True),
    "depthwise3x3_s2_relu6": _conv(2, 3, 2, True),
    "depthwise5x5_relu6": _conv(2, 5, 1, True),
    "depthwise5x5_s2_relu6": _conv(2, 5, 2, True),
}


@pytest.mark.parametrize("kind", list(CONVS))
def test_conv_equals_tflite_reference_kernel(tf, lite0_run, kind):
    qg, ii, env = lite0_run
    node = _pick(qg, ii, CONVS[kind])
    xq, x_p, wq, w_p, bq, b_p, o_p, want = _layer_numbers(qg, ii, env, node)
    n, c, h, w_ = xq.shape
    cout, k = wq.shape[0], wq.shape[2]
    a = node.attrs
    assert a["activation"] in ("", "clip") and tuple(a["dilations"]) == (1, 1)
    act = tf.nn.relu6 if a["activation"] == "clip" else None
    inp = tf.keras.Input((h, w_, c), batch_size=1)
    top, left, bottom, right = a["pads"]
    x = inp
    if any(a["pads"]):  # torch's pads, exactly (Keras' SAME would pad (0, 1) at stride 2)
        x = tf.keras.layers.ZeroPadding2D(((top, bottom), (left, right)))(x)
    if a["group"] == 1:
        layer = tf.keras.layers.Conv2D(cout, k, strides=a["strides"], padding="valid",
                                       activation=act, bias_initializer="ones")
        w_tfl, axis = wq.transpose(0, 2, 3, 1), 0          # OIHW -> OHWI
    else:
        assert a["group"] == c == cout
        layer = tf.keras.layers.DepthwiseConv2D(k, strides=a["strides"], padding="valid",
                                                activation=act, bias_initializer="ones")
        w_tfl, axis = wq.transpose(1, 2, 3, 0), 3          # (C, 1, kh, kw) -> (1, kh, kw, C)
    buf = _convert(tf, tf.keras.Model(inp, layer(x)), [(1, h, w_, c)])

    def patch(model, sg, fb):
        for op in sg.operators:
            if len(op.inputs) == 3:
                _set_layer(model, sg, fb, op, x_p, w_tfl, w_p, axis, bq, b_p, o_p)
            else:  # PAD: int8 in and out on the input's grid (pads with its zero point)
                for t in (op.inputs[0], op.outputs[0]):
                    sg.tensors[t].quantization = _quant(fb, x_p.scale, x_p.zero)
        # (the converter folds a PAD that equals SAME padding into the conv)
        assert len(sg.operators) in ((1, 2) if any(a["pads"]) else (1,))

    got = _run_patched(tf, buf, patch, [np.ascontiguousarray(xq[:1].transpose(0, 2, 3, 1))])
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want[:1])


def test_fully_connected_equals_tflite_reference_kernel(tf, lite0_run):
    qg, ii, env = lite0_run
    node = _pick(qg, ii, lambda n: n.op_type == "Gemm")
    xq, x_p, wq, w_p, bq, b_p, o_p, want = _layer_numbers(qg, ii, env, node)
    assert node.attrs["transB"] == 1 and np.size(w_p.scale) == wq.shape[0]  # per channel
    inp = tf.keras.Input((xq.shape[1],), batch_size=1)
    buf = _convert(tf, tf.keras.Model(inp, tf.keras.layers.Dense(wq.shape[0], bias_initializer="ones")(inp)),
                   [(1, xq.shape[1])])

    def patch(model, sg, fb):
        (op,) = sg.operators
        _set_layer(model, sg, fb, op, x_p, wq, w_p, 0, bq, b_p, o_p)

    got = _run_patched(tf, buf, patch, [np.ascontiguousarray(xq[:1])])
    np.testing.assert_array_equal(got, want[:1])


def test_residual_add_equals_tflite_reference_kernel(tf, lite0_run):
    qg, ii, env = lite0_run
    node = _pick(qg, ii, lambda n: n.op_type == "Add")
    pa, pb = ii.params[node.inputs[0].name], ii.params[node.inputs[1].name]
    q, po = ii._out(node)
    a, b = env[node.inputs[0].name][:1], env[node.inputs[1].name][:1]
    want = env[q.output.name][:1]
    shape = a.shape[1:]
    ia_, ib_ = tf.keras.Input(shape[1:] + shape[:1], batch_size=1), tf.keras.Input(
        shape[1:] + shape[:1], batch_size=1)
    buf = _convert(tf, tf.keras.Model([ia_, ib_], tf.keras.layers.Add()([ia_, ib_])),
                   [(1,) + shape[1:] + shape[:1]] * 2)

    def patch(model, sg, fb):
        (op,) = sg.operators
        for t, p in zip(list(op.inputs) + list(op.outputs), (pa, pb, po)):
            sg.tensors[t].quantization = _quant(fb, p.scale, p.zero)

    nhwc = [np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for v in (a, b)]
    got = _run_patched(tf, buf, patch, nhwc)
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)


# -- Concat, AveragePool, GlobalAveragePool (MEAN), int8 and uint8 ---------------------------
#
# These TFLite models are written out op by op (``_tflite_model``), each tensor carrying fc's
# scale and zero point, and run on the integers the layer read in fc's integer run of a small
# CNN (``Pools``) quantized by symmetry_max_t, signed (int8 everywhere) and unsigned (uint8
# for the tensors the graph proves non-negative, int8 for the others).


class _Pools:
    """A CNN with two Concats (of two int8 inputs, one an AveragePool's; of two ReLU outputs,
    uint8 when unsigned), four AveragePools (3x3 stride 1 pad 1 not counting the pad, which
    is TFLite's SAME; 2x2 stride 2, VALID; on signed values and on uint8 ReLU outputs) and
    four GlobalAveragePools (one of a uint8 ReLU output), whose outputs a third Concat
    joins. (fc's plan knows ReLU outputs only as non-negative: the pools' and Concats'
    outputs are int8 in both variants.)"""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Pools(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Conv2d(3, 8, 3, padding=1)
                self.b = nn.Conv2d(8, 8, 1)
                self.c = nn.Conv2d(16, 8, 1)
                self.avg3 = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
                self.avg2 = nn.AvgPool2d(2)
                self.head = nn.Linear(48, 10)

            def forward(self, x):
                gap = nn.functional.adaptive_avg_pool2d
                x = torch.relu(self.stem(x))
                y = torch.cat([self.avg3(x), self.b(x)], 1)
                z = torch.relu(self.c(y))
                w = torch.cat([z, x], 1)
                g = torch.cat([gap(self.avg2(y), 1), gap(self.avg2(w), 1), gap(z, 1),
                               gap(self.avg2(z), 1)], 1)
                return self.head(torch.flatten(g, 1))

        torch.manual_seed(3)
        return Pools().eval()


@pytest.fixture(scope="module", params=[False, True], ids=["int8", "uint8"])
def pools_run(request):
    import torch

    from fc.quant.testing import torch_to_fused

    fused = torch_to_fused(_Pools.build(), torch.zeros(1, 3, 16, 16), "pools")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (9, 3, 16, 16)).astype(np.float32)
    table = calibrate_arrays(fused, [x[:4], x[4:8]])
    qg = quantized_graph(fused, build_spec(fused, table, get_strategy("symmetry_max_t",
                                                                      unsigned=request.param)))
    ii = IntegerInterpreter(qg, rounding="gemmlowp")
    env = ii.run({"input": x[8:]}, intermediate=True)
    return qg, ii, env, request.param


def _tflite_model(tensors, ops, inputs, outputs):
    """A TFLite flatbuffer written out: ``tensors`` as (shape, dtype, scale, zero point,
    constant data or None), ``ops`` as (BuiltinOperator, version, inputs, outputs, options
    type, options)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as fb

    types = {np.dtype(np.int8): fb.TensorType.INT8, np.dtype(np.uint8): fb.TensorType.UINT8,
             np.dtype(np.int32): fb.TensorType.INT32}
    m = fb.ModelT()
    m.version, m.buffers, m.operatorCodes = 3, [fb.BufferT()], []
    sg = fb.SubGraphT()
    sg.tensors, sg.operators = [], []
    for i, (shape, dtype, scale, zero, data) in enumerate(tensors):
        t = fb.TensorT()
        t.shape, t.type, t.name = np.array(shape, np.int32), types[np.dtype(dtype)], f"t{i}".encode()
        buf = fb.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        if scale is not None:
            t.quantization = _quant(fb, scale, zero)
        sg.tensors.append(t)
    codes = []
    for code, version, ins, outs, otype, opts in ops:
        if (code, version) not in codes:
            codes.append((code, version))
        op = fb.OperatorT()
        op.opcodeIndex = codes.index((code, version))
        op.inputs, op.outputs = np.array(ins, np.int32), np.array(outs, np.int32)
        if otype:
            op.builtinOptionsType, op.builtinOptions = otype, opts
        sg.operators.append(op)
    for code, version in codes:
        c = fb.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
        m.operatorCodes.append(c)
    sg.inputs, sg.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _run_model(tf, buf, feeds, out):
    interp = tf.lite.Interpreter(model_content=buf,
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    for i, x in feeds.items():
        interp.set_tensor(i, x)
    interp.invoke()
    return interp.get_tensor(out)


def _nhwc(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def _nodes(qg, ii, op):
    found = [n for n in qg if n.name in ii.out_q and n.op_type == op]
    assert found, op
    return found


def test_concat_equals_tflite_quantize_and_concatenation(tf, pools_run):
    """fc's Concat requantizes each input to the output's scale (gemmlowp fixed point, an
    input at the output's scale copied) and clamps: TFLite's CONCATENATION does not rescale
    int8 inputs (it requires one scale; its uint8 kernel rescales in float32), so the TFLite
    model is what its converter builds for differently scaled inputs: a QUANTIZE
    (int8/uint8 -> the output's type and scale: reference Requantize, MultiplyByQuantizedMultiplier
    of s_in / s_out) per input, then CONCATENATION on one scale. Bit for bit, int8 and uint8
    inputs and outputs."""
    from tensorflow.lite.python import schema_py_generated as fb

    qg, ii, env, unsigned = pools_run
    dtypes = set()
    for node in _nodes(qg, ii, "Concat"):
        assert node.attrs["axis"] == 1
        q, po = ii._out(node)
        want = env[q.output.name]
        ins = [env[v.name] for v in node.inputs]
        k = len(ins)
        ps = [ii.params[v.name] for v in node.inputs]
        tensors = [(_nhwc(a).shape, a.dtype, float(p.scale), int(p.zero), None) for p, a in zip(ps, ins)]
        tensors += [(_nhwc(a).shape, want.dtype, float(po.scale), int(po.zero), None) for a in ins]
        tensors.append((_nhwc(want).shape, want.dtype, float(po.scale), int(po.zero), None))
        opts = fb.ConcatenationOptionsT()
        opts.axis = 3
        ops = [(fb.BuiltinOperator.QUANTIZE, 2, [i], [k + i], 0, None) for i in range(k)]
        ops.append((fb.BuiltinOperator.CONCATENATION, 2, list(range(k, 2 * k)), [2 * k],
                    fb.BuiltinOptions.ConcatenationOptions, opts))
        buf = _tflite_model(tensors, ops, list(range(k)), [2 * k])
        got = _run_model(tf, buf, {i: _nhwc(a) for i, a in enumerate(ins)}, 2 * k)
        np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want, err_msg=node.name)
        dtypes |= {str(a.dtype) for a in ins} | {str(want.dtype)}
    assert dtypes == ({"int8", "uint8"} if unsigned else {"int8"})  # uint8 inputs reached


def _window_means(x, kernel, stride, pad):
    """Per output position the window sum S of integers x (N, C, H, W) and the count N of the
    input positions in it (the padding not counted), by plain loops over the windows."""
    n, c, h, w = x.shape
    ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
    sums = np.zeros((n, c, ho, wo), np.int64)
    counts = np.zeros((ho, wo), np.int64)
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * stride - pad, j * stride - pad
            r1, c1 = min(r0 + kernel, h), min(c0 + kernel, w)
            r0, c0 = max(r0, 0), max(c0, 0)
            sums[:, :, i, j] = x[:, :, r0:r1, c0:c1].astype(np.int64).sum(axis=(2, 3))
            counts[i, j] = (r1 - r0) * (c1 - c0)
    return sums, counts


def test_average_pool_equals_tflite_but_at_ties(tf, pools_run):
    """TFLite's AVERAGE_POOL_2D (reference kernel, int8 and uint8) averages the integers on
    its input's grid, its output at the input's scale (it reads no scales), rounding half
    away from zero. fc's plan gives a pool its own calibrated scale (a requantization by
    s_in / (N s_out) that AVERAGE_POOL_2D cannot express), so what is compared is fc's
    integer AveragePool with its output grid set to the input's (the exact division it uses
    there and in scale_shift_t when the exponents agree): the same windows and divisors
    (count_include_pad=0 is TFLite's SAME at 3x3 stride 1, 2x2 stride 2 is VALID), equal
    wherever S / N is not a tie; at ties fc rounds half to even (its documented rule, kept
    equal to the simulation's) and TFLite away from zero, each checked against the exact
    quotient. A uint8 input's pool writes int8 in fc: TFLite's pool then runs in uint8 and a
    QUANTIZE on the same scale (an exact identity, saturating at 127) gives int8."""
    from fractions import Fraction

    from tensorflow.lite.python import schema_py_generated as fb

    qg, ii, env, unsigned = pools_run
    ties = total = 0
    kinds = set()
    for node in _nodes(qg, ii, "AveragePool"):
        a = node.attrs
        kernel, stride, pad = a["kernel_shape"][0], a["strides"][0], a["pads"][0]
        assert not a["ceil_mode"] and not (a["count_include_pad"] and any(a["pads"]))
        xq = env[node.inputs[0].name]
        px = ii.params[node.inputs[0].name]
        q = ii.out_q[node.name]
        scale_v = q.inputs[1]
        kept = scale_v.const
        try:  # fc's kernel with the output on the input's grid (both zero points are 0)
            scale_v.const = np.asarray(px.scale, kept.dtype)
            mine = IntegerInterpreter(qg, rounding="gemmlowp")._averagepool(node, [xq])
        finally:
            scale_v.const = kept
        assert int(px.zero) == 0 and int(q.inputs[2].const) == 0
        opts = fb.Pool2DOptionsT()
        opts.padding = fb.Padding.SAME if pad else fb.Padding.VALID
        opts.strideH = opts.strideW = stride
        opts.filterHeight = opts.filterWidth = kernel
        sums, counts = _window_means(xq.astype(np.int64), kernel, stride, pad)
        shape = sums.shape[:1] + sums.shape[2:] + sums.shape[1:2]
        s_in = float(px.scale)
        tensors = [(_nhwc(xq).shape, xq.dtype, s_in, 0, None), (shape, xq.dtype, s_in, 0, None)]
        ops = [(fb.BuiltinOperator.AVERAGE_POOL_2D, 2, [0], [1], fb.BuiltinOptions.Pool2DOptions, opts)]
        if mine.dtype != xq.dtype:
            tensors.append((shape, mine.dtype, s_in, 0, None))
            ops.append((fb.BuiltinOperator.QUANTIZE, 2, [1], [2], 0, None))
        buf = _tflite_model(tensors, ops, [0], [len(tensors) - 1])
        theirs = _run_model(tf, buf, {0: _nhwc(xq)}, len(tensors) - 1)
        theirs = theirs.transpose(0, 3, 1, 2).astype(np.int64)
        lo, hi = q.attrs["qmin"], q.attrs["qmax"]
        kinds.add(f"{xq.dtype}->{mine.dtype}")
        mine = mine.astype(np.int64)
        cnt = np.broadcast_to(counts, sums.shape)
        for s, n, m, t in zip(sums.ravel(), cnt.ravel(), mine.ravel(), theirs.ravel()):
            r = Fraction(int(s), int(n))
            half_away = int((abs(r) + Fraction(1, 2)) // 1) * (1 if r >= 0 else -1)
            # TFLite: half away from zero; fc: round() of a Fraction, half to even
            assert t == min(max(half_away, lo), hi) and m == min(max(round(r), lo), hi), (
                node.name, s, n, m, t)
        tie = (2 * sums) % (2 * counts) == counts
        np.testing.assert_array_equal(mine[~tie], theirs[~tie], err_msg=node.name)
        ties += int(tie.sum())
        total += tie.size
    print(f"\nAveragePool vs TFLite ({', '.join(sorted(kinds))}): {total} outputs, "
          f"{ties} exact ties of S / N (where only the rounding rule differs)")
    assert ties > 0  # the comparison reaches the case that tells the two rules apart
    assert ("uint8->int8" in kinds) == unsigned


def test_global_average_pool_within_one_step_of_tflite_mean(tf, pools_run):
    """TFLite lowers a global average pool to MEAN over H and W; its reference int8 kernel
    (keep_dims) rounds S * s_in / s_out by MultiplyByQuantizedMultiplier, then divides by N
    rounding half away from zero: two or three roundings, where fc's GlobalAveragePool
    requantizes S by s_in / (N s_out) with one rounding (its documented choice), so the two
    cannot be equal by construction and this is not a bit-exact comparison: what is checked
    is that both read the same sums on the same grids (every output within one step of
    TFLite's and of the exact value S * s_in / (N s_out), fc's within half a step of it
    plus the multiplier's 2^-31 relative error), with the share of equal outputs printed."""
    from fractions import Fraction

    from tensorflow.lite.python import schema_py_generated as fb

    qg, ii, env, unsigned = pools_run
    equal = total = 0
    kinds = set()
    for node in _nodes(qg, ii, "GlobalAveragePool"):
        xq = env[node.inputs[0].name]
        px = ii.params[node.inputs[0].name]
        q, po = ii._out(node)
        want = env[q.output.name].astype(np.int64)
        opts = fb.ReducerOptionsT()
        opts.keepDims = True
        out_shape = (xq.shape[0], 1, 1, xq.shape[1])
        tensors = [(_nhwc(xq).shape, xq.dtype, float(px.scale), int(px.zero), None),
                   ((2,), np.int32, None, None, np.array([1, 2], np.int32)),
                   (out_shape, xq.dtype, float(po.scale), int(po.zero), None)]
        ops = [(fb.BuiltinOperator.MEAN, 2, [0, 1], [2], fb.BuiltinOptions.ReducerOptions, opts)]
        dtype = env[q.output.name].dtype
        if dtype != xq.dtype:  # uint8 in, int8 out: a same-scale QUANTIZE (exact, saturating)
            tensors.append((out_shape, dtype, float(po.scale), int(po.zero), None))
            ops.append((fb.BuiltinOperator.QUANTIZE, 2, [2], [3], 0, None))
            kinds.add(f"{xq.dtype}->{dtype}")
        else:
            kinds.add(str(dtype))
        buf = _tflite_model(tensors, ops, [0], [len(tensors) - 1])
        theirs = _run_model(tf, buf, {0: _nhwc(xq)}, len(tensors) - 1)
        theirs = theirs.transpose(0, 3, 1, 2).astype(np.int64)
        lo, hi = q.attrs["qmin"], q.attrs["qmax"]
        sums = (xq.astype(np.int64) - int(px.zero)).sum(axis=(2, 3), keepdims=True)
        n = xq.shape[2] * xq.shape[3]
        ratio = Fraction(float(np.float32(px.scale))) / (n * Fraction(float(np.float32(po.scale))))
        for s, m, t in zip(sums.ravel(), want.ravel(), theirs.ravel()):
            exact = min(max(s * ratio + int(po.zero), lo), hi)  # (the clamp fixes the integers)
            assert abs(m - exact) <= Fraction(1, 2) + abs(exact) * Fraction(1, 2 ** 30), (node.name, s)
            assert abs(t - exact) < 1 and abs(m - t) <= 1, (node.name, s, m, t)
        equal += int((want == theirs).sum())
        total += want.size
    print(f"\nGlobalAveragePool vs TFLite MEAN ({', '.join(sorted(kinds))}): "
          f"{equal}/{total} outputs equal, the rest one step apart")
    assert ("uint8->int8" in kinds) == unsigned


def test_uint8_convs_equal_tflite(tf):
    """The Convs of symmetry_max_t unsigned with a uint8 side, per-tensor weights, bit for bit
    against TFLite's CONV_2D: a uint8 input goes to its uint8 kernel, which takes uint8
    weights with one zero point (fc's int8 weights as w + 128 at zero point 128), its output
    at zero point 128 then a same-scale QUANTIZE to fc's int8 at 0 (an exact shift); an int8
    input with a ReLU into uint8 goes to the int8 kernel with its output at zero point -128
    (the ReLU clamp at quantize(0) = -128) and a same-scale QUANTIZE to uint8 at 0. fc's
    per-channel weights with a uint8 input cannot be carried (TFLite's uint8 kernel has one
    weight scale): not compared."""
    import torch
    from tensorflow.lite.python import schema_py_generated as fb

    from fc.quant.testing import torch_to_fused

    fused = torch_to_fused(_Pools.build(), torch.zeros(1, 3, 16, 16), "pools")
    x = np.random.default_rng(1).normal(0, 1, (5, 3, 16, 16)).astype(np.float32)
    spec = build_spec(fused, calibrate_arrays(fused, [x[:4]]),
                      get_strategy("symmetry_max_t", unsigned=True), per_channel=False)
    qg = quantized_graph(fused, spec)
    ii = IntegerInterpreter(qg, rounding="gemmlowp")
    env = ii.run({"input": x[4:]}, intermediate=True)
    kinds = []
    for node in _nodes(qg, ii, "Conv"):
        xq, x_p, wq, w_p, bq, b_p, o_p, want = _layer_numbers(qg, ii, env, node)
        if np.uint8 not in (xq.dtype, want.dtype):
            continue
        a = node.attrs
        assert a["group"] == 1 and np.size(w_p.scale) == 1 and tuple(a["dilations"]) == (1, 1)
        k = wq.shape[2]
        assert list(a["pads"]) == [k // 2] * 4 and tuple(a["strides"]) == (1, 1)  # TFLite's SAME
        opts = fb.Conv2DOptionsT()
        opts.padding = fb.Padding.SAME
        opts.strideH = opts.strideW = opts.dilationHFactor = opts.dilationWFactor = 1
        act = a.get("activation", "")
        assert act in ("", "relu")
        opts.fusedActivationFunction = (fb.ActivationFunctionType.RELU if act
                                        else fb.ActivationFunctionType.NONE)
        w_ohwi = wq.transpose(0, 2, 3, 1)
        y_shape = _nhwc(want).shape
        b_scale = float(np.asarray(b_p.scale).reshape(-1)[0])
        if xq.dtype == np.uint8:  # uint8 kernel, then int8
            assert want.dtype == np.int8
            w_t, w_zero, inner, inner_zero = ((w_ohwi.astype(np.int16) + 128).astype(np.uint8), 128,
                                              np.uint8, 128)
        else:  # int8 kernel into uint8 through zero point -128
            assert want.dtype == np.uint8
            w_t, w_zero, inner, inner_zero = w_ohwi.astype(np.int8), 0, np.int8, -128
        tensors = [(_nhwc(xq).shape, xq.dtype, float(x_p.scale), 0, None),
                   (w_t.shape, w_t.dtype, float(w_p.scale), w_zero, w_t),
                   (bq.shape, np.int32, b_scale, 0, bq.astype(np.int32)),
                   (y_shape, inner, float(o_p.scale), inner_zero, None),
                   (y_shape, want.dtype, float(o_p.scale), 0, None)]
        ops = [(fb.BuiltinOperator.CONV_2D, 1 if xq.dtype == np.uint8 else 3, [0, 1, 2], [3],
                fb.BuiltinOptions.Conv2DOptions, opts),
               (fb.BuiltinOperator.QUANTIZE, 2, [3], [4], 0, None)]
        got = _run_model(tf, _tflite_model(tensors, ops, [0], [4]), {0: _nhwc(xq)}, 4)
        np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want, err_msg=node.name)
        kinds.append(f"{xq.dtype}->{want.dtype}")
    # the stem (int8 -> ReLU uint8), /b (uint8 -> int8), /c (int8 -> ReLU uint8)
    assert sorted(kinds) == ["int8->uint8", "int8->uint8", "uint8->int8"], kinds
