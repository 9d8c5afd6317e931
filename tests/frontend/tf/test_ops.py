"""One small Keras model (or TensorFlow function) per op family: import, verify, run both
IRs through the golden executor and compare with Keras/TensorFlow itself, save and reload.

Layers that Keras traces into several ops are checked to come out as fc's one node
(batch norm, layer norm, GELU, swish, hard swish) and convolutions to take their bias. A
channels-last CNN comes out of import without any Transpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fc.zoo.tf import randomize

P = pytest.param
keras = pytest.importorskip("keras")
L = keras.layers


def model_of(*layers: Any, x: np.ndarray, seed: int = 0) -> Any:
    """A Sequential model of ``layers`` for input ``x``, with non-trivial weights (batch
    norms calibrated on ``x``)."""
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input(x.shape[1:], name="image"), *layers])
    return randomize(m, seed, x)


def ops_of(graph: Any) -> list[str]:
    return [n.op_type for n in graph]


CONV = [
    P(lambda: L.Conv2D(4, 3, padding="same"), id="conv_same"),
    P(lambda: L.Conv2D(4, 3, strides=2, padding="same"), id="conv_same_stride2_asymmetric"),
    P(lambda: L.Conv2D(4, (3, 2), padding="valid", dilation_rate=(2, 1)), id="conv_dilated"),
    P(lambda: L.Conv2D(6, 3, padding="same", groups=3), id="conv_groups"),
    P(lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
      id="depthwise_mult2"),
    P(lambda: L.SeparableConv2D(5, 3, padding="same"), id="separable"),
    P(lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same"), id="transpose_same"),
    P(lambda: L.Conv2DTranspose(4, 3, strides=2, padding="valid"), id="transpose_valid"),
    P(lambda: L.Conv2DTranspose(4, 2, strides=2, padding="same", use_bias=False),
      id="transpose_no_bias"),
]


@pytest.mark.parametrize("layer", CONV)
def test_convolutions(layer: Callable[[], Any], check_keras, seeded) -> None:
    x = seeded((2, 8, 8, 3))
    g = check_keras(model_of(layer(), x=x), x, op="Conv")
    assert "Transpose" not in ops_of(g) and "Add" not in ops_of(g)  # the bias is the layer's


@pytest.mark.parametrize("layers", [
    P(lambda: [L.Conv2D(4, 3), L.BatchNormalization()], id="after_conv"),
    P(lambda: [L.BatchNormalization(center=False)], id="no_center"),
    P(lambda: [L.BatchNormalization(scale=False)], id="no_scale"),
    P(lambda: [L.Flatten(), L.Dense(5), L.BatchNormalization()], id="dense_2d"),
])
def test_batch_norm_is_one_node(layers: Callable[[], list[Any]], check_keras, seeded) -> None:
    x = seeded((2, 8, 8, 3))
    g = check_keras(model_of(*layers(), x=x), x)
    assert ops_of(g).count("BatchNormalization") == 1
    bn = next(n for n in g if n.op_type == "BatchNormalization")
    assert [v.name.split("/")[-1] for v in bn.inputs[1:]] == ["gamma", "beta", "moving_mean",
                                                              "moving_variance"] or \
        len(bn.inputs) == 5


def test_layer_norm_is_one_node(check_keras, seeded) -> None:
    x = seeded((2, 4, 5))
    g = check_keras(model_of(L.Dense(6), L.LayerNormalization(epsilon=1e-3), x=x), x,
                    op="LayerNormalization")
    assert ops_of(g).count("LayerNormalization") == 1 and "ReduceMean" not in ops_of(g)


ACTIVATIONS = [
    P("relu", "Relu", id="relu"), P("relu6", "Clip", id="relu6"),
    P("sigmoid", "Sigmoid", id="sigmoid"), P("tanh", "Tanh", id="tanh"),
    P("elu", "Elu", id="elu"), P("selu", "Elu", id="selu"),
    P("swish", "SiLU", id="swish"), P("gelu", "Gelu", id="gelu"),
    P("hard_sigmoid", "HardSigmoid", id="hard_sigmoid"),
    P("hard_swish", "HardSwish", id="hard_swish"),
    P("softmax", "Softmax", id="softmax"), P("leaky_relu", "LeakyRelu", id="leaky_relu"),
]


@pytest.mark.parametrize(("activation", "op"), ACTIVATIONS)
def test_activations(activation: str, op: str, check_keras, seeded) -> None:
    x = seeded((1, 5, 5, 3))
    g = check_keras(model_of(L.Conv2D(4, 1), L.Activation(activation), x=x), x,
                    op="Gelu" if op == "Gelu" else "Conv")
    assert op in ops_of(g), ops_of(g)


def test_gelu_tanh(check_keras, seeded) -> None:
    def gelu_tanh(t):
        return keras.activations.gelu(t, approximate=True)

    x = seeded((3, 6))
    g = check_keras(model_of(L.Dense(4), L.Activation(gelu_tanh), x=x), x, op="Gelu")
    gelu = next(n for n in g if n.op_type == "Gelu")
    assert gelu.attrs["approximate"] == "tanh"


def test_leaky_relu_layer_and_prelu_free_ops(check_keras, seeded) -> None:
    x = seeded((1, 4, 4, 3))
    check_keras(model_of(L.LeakyReLU(0.3), L.ELU(0.7), L.ReLU(max_value=4.0), x=x), x)


POOLS = [
    P(lambda: L.MaxPooling2D(3, strides=2, padding="same"), id="max_same"),
    P(lambda: L.MaxPooling2D(2, padding="valid"), id="max_valid"),
    P(lambda: L.AveragePooling2D(3, strides=2, padding="same"), id="avg_same_excludes_pad"),
    P(lambda: L.AveragePooling2D(2), id="avg_valid"),
    P(lambda: L.GlobalAveragePooling2D(), id="global_avg"),
    P(lambda: L.GlobalMaxPooling2D(keepdims=True), id="global_max_keepdims"),
]


@pytest.mark.parametrize("layer", POOLS)
def test_pools(layer: Callable[[], Any], check_keras, seeded) -> None:
    x = seeded((2, 7, 7, 3))
    g = check_keras(model_of(L.Conv2D(4, 1), layer(), x=x), x)
    assert "Transpose" not in ops_of(g)


TENSOR = [
    P(lambda: [L.ZeroPadding2D(((1, 2), (0, 1)))], id="zero_padding"),
    P(lambda: [L.Cropping2D(((1, 0), (1, 2)))], id="cropping"),
    P(lambda: [L.Flatten(), L.Dense(4)], id="flatten_dense"),
    P(lambda: [L.Reshape((16, 12))], id="reshape"),
    P(lambda: [L.Permute((3, 1, 2))], id="permute"),
    P(lambda: [L.UpSampling2D(2)], id="upsampling_nearest"),
    P(lambda: [L.UpSampling2D(2, interpolation="bilinear")], id="upsampling_bilinear"),
    P(lambda: [L.Resizing(5, 12, interpolation="bilinear")], id="resizing_bilinear"),
    P(lambda: [L.Rescaling(1 / 127.5, offset=-1), L.Conv2D(4, 3)], id="rescaling"),
    P(lambda: [L.Dense(5)], id="dense_on_4d"),
]


@pytest.mark.parametrize("layers", TENSOR)
def test_tensor_layers(layers: Callable[[], list[Any]], check_keras, seeded) -> None:
    x = seeded((2, 8, 8, 3))
    check_keras(model_of(L.Conv2D(3, 1), *layers(), x=x), x, op="Resize")


@pytest.mark.parametrize("merge", [
    P(L.Add, id="add"), P(L.Subtract, id="subtract"), P(L.Multiply, id="multiply"),
    P(L.Maximum, id="maximum"), P(L.Minimum, id="minimum"), P(L.Average, id="average"),
    P(lambda: L.Concatenate(axis=-1), id="concatenate"),
])
def test_merges(merge: Callable[[], Any], check_keras, seeded) -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3), name="image")
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    b = L.Conv2D(4, 1, name="b")(inp)
    m = keras.Model(inp, L.ReLU()(merge()([a, b])))
    x = seeded((2, 6, 6, 3))
    randomize(m, 0, x)
    g = check_keras(m, x)
    assert "Transpose" not in ops_of(g)


def test_two_inputs_two_outputs(check_keras, seeded) -> None:
    keras.utils.set_random_seed(0)
    img = keras.Input((6, 6, 3), name="image")
    vec = keras.Input((4,), name="vector")
    y = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, name="c")(img))
    z = L.Dense(4, name="d")(vec)
    m = keras.Model([img, vec], [L.Add(name="sum")([y, z]), L.Conv2D(2, 1, name="map")(img)])
    randomize(m)
    x = {"image": seeded((1, 6, 6, 3)), "vector": seeded((1, 4), 1)}
    import fc.api
    from fc.frontend.tf import import_tf
    from fc.testing import MODEL_REL_L2, check_close

    g = import_tf(m)
    assert g.layouts == {"image": "NHWC", "map": "NHWC"}
    assert [v.name for v in g.outputs] == ["sum", "map"]
    got = fc.api.run(g, x)
    for name, ref in zip(("sum", "map"), m([x["image"], x["vector"]])):
        check_close(got[name], np.asarray(ref), rel_l2_max=MODEL_REL_L2, what=name)


# -- TensorFlow functions frozen to .pb (ops Keras does not emit) ----------------------------
def _tf():
    import tensorflow as tf

    return tf


TF_FUNCTIONS = [
    P(lambda x: _tf().nn.depth_to_space(x, 2), (1, 3, 3, 8), None, id="depth_to_space"),
    P(lambda x: _tf().nn.space_to_depth(x, 2), (1, 4, 6, 2), None, id="space_to_depth"),
    P(lambda x: _tf().pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]], mode="REFLECT"), (1, 4, 5, 2),
      None, id="mirror_pad_reflect"),
    P(lambda x: _tf().pad(x, [[0, 0], [1, 1], [0, 1], [0, 0]], mode="SYMMETRIC"), (1, 4, 5, 2),
      None, id="mirror_pad_symmetric_1"),
    P(lambda x: _tf().pad(x, [[0, 0], [1, 0], [0, 2], [0, 0]], constant_values=0.5),
      (1, 4, 5, 2), None, id="pad_v2"),
    P(lambda x: _tf().compat.v1.image.resize_bilinear(x, (7, 9), align_corners=True),
      (1, 4, 5, 2), "Resize", id="resize_bilinear_align_corners"),
    P(lambda x: _tf().compat.v1.image.resize_nearest_neighbor(x, (8, 10)), (1, 4, 5, 2),
      None, id="resize_nearest_asymmetric"),
    P(lambda x: _tf().compat.v1.image.resize_nearest_neighbor(x, (8, 10), align_corners=True),
      (1, 4, 5, 2), None, id="resize_nearest_align_corners"),
    P(lambda x: x[:, 1:, ::2, -1], (2, 4, 5, 3), None, id="strided_shrink"),
    P(lambda x: x[..., None, 1:3], (2, 4, 5, 3), None, id="strided_ellipsis_newaxis"),
    P(lambda x: x[:, ::-1], (2, 4, 5, 3), None, id="strided_reverse"),
    P(lambda x: _tf().slice(x, [0, 1, 0, 1], [-1, 2, 3, -1]), (2, 4, 5, 3), None, id="slice"),
    P(lambda x: _tf().math.rsqrt(_tf().abs(x) + 1.0) + _tf().square(x) -
      _tf().math.squared_difference(x, 0.5), (2, 3), None, id="rsqrt_square_sqdiff"),
    P(lambda x: _tf().math.erfc(x) * _tf().exp(-_tf().abs(x)), (2, 5), "Erf", id="erfc_exp"),
    P(lambda x: _tf().reduce_sum(x, [1], keepdims=True) + _tf().reduce_max(x, [1, 2],
      keepdims=True), (2, 3, 4, 5), "ReduceSum", id="sum_max"),
    P(lambda x: _tf().expand_dims(_tf().squeeze(x, [2]), 0), (2, 3, 1, 5), None,
      id="squeeze_expand"),
    P(lambda x: _tf().concat(_tf().split(x, [1, 2], axis=1)[::-1], axis=1) +
      _tf().concat(_tf().split(x, 3, axis=1), axis=1), (2, 3, 4), None, id="split_splitv"),
    P(lambda x: _tf().gather(x, [2, 0, 1], axis=1), (2, 3, 4), None, id="gather"),
    P(lambda x: _tf().linalg.matmul(x, x, transpose_b=True), (2, 3, 4), "MatMul",
      id="batch_matmul"),
    P(lambda x: _tf().stack([x, 2 * x], axis=1), (2, 3), None, id="pack"),
    P(lambda x: _tf().nn.selu(x) + _tf().nn.elu(x) + _tf().nn.relu6(x), (2, 5), None,
      id="selu_elu_relu6"),
    P(lambda x: _tf().nn.avg_pool2d(x, 3, 1, "SAME") + _tf().nn.max_pool2d(x, 2, 1, "SAME"),
      (1, 5, 5, 2), None, id="pools_stride1_same"),
    P(lambda x: _tf().transpose(x, [0, 2, 1]) * 3.0, (2, 3, 4), None, id="transpose"),
    P(lambda x: _tf().cast(_tf().cast(x * 4.0, _tf().int32), _tf().float32), (2, 5), None,
      id="cast"),
]


@pytest.mark.parametrize(("fn", "shape", "op"), TF_FUNCTIONS)
def test_tf_functions(fn: Callable[[Any], Any], shape: tuple[int, ...], op: str | None,
                      check_tf_function, seeded) -> None:
    check_tf_function(fn, seeded(shape), op=op)


def test_fused_batch_norm_and_conv_transpose_from_tf1_ops(check_tf_function, seeded) -> None:
    """TF1/Keras 2 graphs: FusedBatchNormV3 (inference) and Conv2DBackpropInput."""
    tf = _tf()
    rng = np.random.default_rng(0)
    scale, offset, mean = (rng.normal(0, 1, 4).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    filt = rng.standard_normal((3, 3, 4, 3)).astype(np.float32)  # (kh, kw, out, in)
    bias = rng.standard_normal(4).astype(np.float32)

    def fn(x):
        y = tf.nn.conv2d_transpose(x, filt, [1, 9, 9, 4], strides=2, padding="SAME")
        y = tf.nn.bias_add(y, bias)
        y = tf.compat.v1.nn.fused_batch_norm(y, scale, offset, mean, var, epsilon=1e-3,
                                             is_training=False)[0]
        return tf.nn.relu(y)

    g = check_tf_function(fn, seeded((1, 5, 5, 3)), op="ConvTranspose")
    assert ops_of(g) == ["ConvTranspose", "BatchNormalization", "Relu"]


RESIZES = [
    P(lambda x: _tf().image.resize(x, (7, 3), method="nearest"), id="nearest_half_pixel"),
    P(lambda x: _tf().image.resize(x, (3, 7)), id="bilinear_half_pixel_down_up"),
    P(lambda x: _tf().image.resize(x, (9, 11)), id="bilinear_half_pixel_up"),
    P(lambda x: _tf().compat.v1.image.resize_bilinear(x, (7, 3)), id="bilinear_asymmetric"),
    P(lambda x: _tf().compat.v1.image.resize_bilinear(x, (3, 7), align_corners=True),
      id="bilinear_align_corners_down"),
    P(lambda x: _tf().compat.v1.image.resize_nearest_neighbor(x, (3, 7), align_corners=True),
      id="nearest_align_corners_down"),
    P(lambda x: _tf().compat.v1.image.resize_nearest_neighbor(x, (7, 3)),
      id="nearest_asymmetric_non_integer"),
]


@pytest.mark.parametrize("fn", RESIZES)
def test_resize_modes(fn: Callable[[Any], Any], check_tf_function, seeded) -> None:
    """ResizeBilinear/ResizeNearestNeighbor in each of TF's coordinate modes (align_corners,
    half_pixel_centers, neither) at non-integer scales, where the modes differ."""
    g = check_tf_function(fn, seeded((2, 4, 5, 3)), op="Resize")
    assert ops_of(g) == ["Resize"], ops_of(g)


PATTERNS = [
    P(lambda x: _tf().nn.silu(x), "SiLU", id="silu_through_identity_n"),
    P(lambda x: x * _tf().sigmoid(x), "SiLU", id="swish_as_mul_sigmoid"),
    P(lambda x: _tf().nn.gelu(x), "Gelu", id="gelu_exact_erfc"),
    P(lambda x: _tf().nn.gelu(x, approximate=True), "Gelu", id="gelu_tanh"),
    P(lambda x: x * _tf().nn.relu6(x + 3.0) / 6.0, "HardSwish", id="hard_swish_ops"),
    P(lambda x: _tf().nn.relu6(x + 3.0) / 6.0, "HardSigmoid", id="hard_sigmoid_ops"),
]


@pytest.mark.parametrize(("fn", "op"), PATTERNS)
def test_activation_patterns_of_tf_ops(fn: Callable[[Any], Any], op: str, check_tf_function,
                                       seeded) -> None:
    """Activations TF writes as several ops (custom gradients through IdentityN, MobileNetV3's
    hard swish) come out as fc's one node, with TF's value."""
    g = check_tf_function(fn, seeded((2, 3, 4, 5)) * 4.0, op="Gelu")
    assert ops_of(g) == [op], ops_of(g)


@pytest.mark.parametrize("layer", [
    P(lambda: L.Rescaling(1 / 127.5, offset=-1), id="rescaling"),
    P(lambda: L.Normalization(mean=[0.5, -0.2, 0.1], variance=[0.25, 2.0, 1.5]),
      id="normalization"),
])
def test_input_normalization_folds_into_the_first_conv(layer: Callable[[], Any], check_keras,
                                                       seeded) -> None:
    """Rescaling/Normalization before an unpadded Conv: exact to fold, so the fused IR is the
    Conv alone, and it still computes Keras' value."""
    from fc.passes.pipeline import compile_graph

    x = seeded((2, 8, 8, 3))
    g = check_keras(model_of(layer(), L.Conv2D(4, 3), x=x), x, op="Conv")
    fused, _ = compile_graph(g)
    assert ops_of(fused) == ["Conv"], ops_of(fused)
