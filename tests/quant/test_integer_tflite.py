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
values: the comparison tells the two apart). Not compared: GlobalAveragePool (Keras lowers it
to TFLite's MEAN, whose int8 kernel requantizes in its own way; fc's one-rounding pool is
fc's documented choice and was not checked against it), AveragePool and Concat (not in
EfficientNet-Lite0), uint8 activations."""

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
