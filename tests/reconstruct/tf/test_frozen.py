"""The frozen .pb: loadable by plain TensorFlow in a fresh process without fc, named after
the IR, channels-last throughout when the IR is fed NHWC (no Transpose), any batch size,
deterministic bytes; and the trainable form: variables named after the IR, training lowers
the loss, trained weights write back into the IR."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fc.api
from fc.ir import Graph
from fc.reconstruct.tf import TFModel, freeze
from fc.testing import MODEL_REL_L2, check_close

P = pytest.param


def small_cnn(layout: str | None) -> Graph:
    """conv-bn-relu, max pool, a residual block, global pool and a softmax classifier."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))).astype(np.float32)

    def bn(name: str, c: int, x):
        args = [g.add_const(f"{name}_{k}", v.astype(np.float32)) for k, v in (
            ("gamma", rng.uniform(0.5, 1.5, c)), ("beta", rng.normal(0, 0.1, c)),
            ("mean", rng.normal(0, 0.1, c)), ("var", rng.uniform(0.5, 1.5, c)))]
        return g.add_node("BatchNormalization", [x, *args], {"epsilon": 1e-3}, name=name).output

    g = Graph("small_cnn")
    x = g.add_input("image", (1, 3, 16, 16))
    y = g.add_node("Conv", [x, g.add_const("conv1_w", w(8, 3, 3, 3))],
                   {"strides": (2, 2), "pads": (0, 0, 1, 1)}, name="conv1").output
    y = g.add_node("Relu", [bn("bn1", 8, y)], name="relu1").output
    y = g.add_node("MaxPool", [y], {"kernel_shape": (3, 3), "strides": (2, 2),
                                   "pads": (0, 0, 1, 1)}, name="pool1").output
    r = g.add_node("Conv", [y, g.add_const("conv2_w", w(8, 1, 3, 3)), g.add_const(
        "conv2_b", rng.normal(0, 0.1, 8).astype(np.float32))],
        {"group": 8, "pads": (1, 1, 1, 1)}, name="conv2").output
    r = g.add_node("Clip", [bn("bn2", 8, r)], {"min": 0.0, "max": 6.0}, name="relu6").output
    y = g.add_node("Add", [y, r], name="residual").output
    y = g.add_node("GlobalAveragePool", [y], name="gap").output
    y = g.add_node("Flatten", [y], name="flatten").output
    y = g.add_node("Gemm", [y, g.add_const("fc_w", w(10, 8)), g.add_const("fc_b", np.zeros(
        10, np.float32))], {"transB": 1}, name="fc").output
    g.outputs.append(g.add_node("Softmax", [y], name="prob").output)
    if layout:
        g.layouts["image"] = layout
    return g


def _image(layout: str | None, batch: int = 1) -> np.ndarray:
    shape = (batch, 16, 16, 3) if layout else (batch, 3, 16, 16)
    return np.random.default_rng(7).standard_normal(shape).astype(np.float32)


LAYOUTS = [P("NHWC", id="nhwc"), P(None, id="nchw")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fresh_process_loads_the_pb(tmp_path, layout) -> None:
    g = small_cnn(layout)
    frozen = freeze(g)
    frozen.save(tmp_path / "model.pb")
    x = _image(layout, batch=2)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString(open({str(tmp_path / "model.pb")!r}, "rb").read())
        with tf.Graph().as_default() as graph:
            tf.compat.v1.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            y = sess.run({frozen.outputs[0]!r}, {{{frozen.inputs[0]!r}: np.load(
                {str(tmp_path / "x.npy")!r})}})
        np.save({str(tmp_path / "y.npy")!r}, y)
        assert not any(m == "fc" or m.startswith("fc.") for m in sys.modules)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    got = np.load(tmp_path / "y.npy")
    check_close(got, fc.api.run(g, x)["prob_out"], rel_l2_max=MODEL_REL_L2)


def test_names_layout_and_no_transpose() -> None:
    frozen = freeze(small_cnn("NHWC"))
    assert (frozen.inputs, frozen.outputs) == (["image:0"], ["prob_out:0"])
    ops = {n.op for n in frozen.graph_def.node}
    assert "Transpose" not in ops
    assert {"Conv2D", "DepthwiseConv2dNative", "FusedBatchNormV3", "MaxPool", "MatMul"} <= ops
    image = next(n for n in frozen.graph_def.node if n.name == "image")
    assert [d.size for d in image.attr["shape"].shape.dim] == [-1, 16, 16, 3]


def test_runs_at_another_batch() -> None:
    g = small_cnn("NHWC")
    x = _image("NHWC", batch=3)
    check_close(freeze(g).run([x])["prob_out"], fc.api.run(g, x)["prob_out"],
                rel_l2_max=MODEL_REL_L2)


def test_deterministic_bytes() -> None:
    assert freeze(small_cnn("NHWC")).serialize() == freeze(small_cnn("NHWC")).serialize()


def test_trainable_form_trains_and_writes_back() -> None:
    import tensorflow as tf

    g = small_cnn("NHWC")
    model = TFModel(g)
    assert sorted(model.variables) == sorted(g.initializers)
    assert model.variables["conv1_w"].shape == (3, 3, 3, 8)  # HWIO, as Keras stores it
    assert not model.variables["bn1_mean"].trainable and model.variables["bn1_gamma"].trainable
    assert model.variables["conv1_w"].name == "conv1_w:0"
    x = _image("NHWC", batch=4)
    check_close(model(x).numpy(), fc.api.run(g, x)["prob_out"], rel_l2_max=MODEL_REL_L2)

    target = tf.one_hot([1, 3, 5, 7], 10)
    opt = tf.keras.optimizers.SGD(0.5)
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(target, model(x)))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0], losses

    trained = model.write_back()
    assert not np.array_equal(trained.initializers["conv1_w"].const, g.initializers["conv1_w"].const)
    np.testing.assert_array_equal(trained.initializers["bn1_mean"].const,
                                  g.initializers["bn1_mean"].const)
    check_close(fc.api.run(trained, x)["prob_out"], model(x).numpy(), rel_l2_max=MODEL_REL_L2)
    check_close(model.freeze().run([x])["prob_out"], model(x).numpy(), rel_l2_max=MODEL_REL_L2)
