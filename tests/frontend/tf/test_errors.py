"""Bad TensorFlow input: one line naming the cause (exit 2 from fcc) and nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fc.cli import main
from fc.errors import ImportError_, UnsupportedOpsError
from fc.frontend.tf import import_tf

P = pytest.param
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _freeze(fn, spec, path: Path) -> Path:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    gd = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(spec)) \
        .graph.as_graph_def()
    path.write_bytes(gd.SerializeToString())
    return path


def not_a_graph_def(tmp: Path) -> Path:
    p = tmp / "model.pb"
    p.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01")
    return p


def no_serving_signature(tmp: Path) -> Path:
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp / "saved"), signatures={})
    return tmp / "saved"


def custom_layer(tmp: Path) -> Path:
    class Doubler(keras.layers.Layer):  # not registered: Keras cannot rebuild it
        def call(self, x):
            return 2 * x

    inp = keras.Input((4,))
    keras.Model(inp, Doubler()(inp)).save(tmp / "custom.keras")
    return tmp / "custom.keras"


def control_flow(tmp: Path) -> Path:
    return _freeze(lambda x: tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2, lambda: x - 1),
                   tf.TensorSpec([2, 3], tf.float32, name="x"), tmp / "cond.pb")


@pytest.mark.parametrize(("make", "message"), [
    P(not_a_graph_def, "model.pb: not a frozen GraphDef", id="not_a_graph_def"),
    P(no_serving_signature, "has no 'serving_default' signature", id="no_serving_signature"),
    P(custom_layer, "Keras cannot load it", id="custom_layer"),
    P(control_flow, "has control flow or function calls (", id="control_flow"),
])
def test_bad_model_one_line_exit_2_writes_nothing(make, message, tmp_path, capsys) -> None:
    src = make(tmp_path)
    with pytest.raises(ImportError_, match=message.replace("(", r"\(")):
        import_tf(src)
    out = tmp_path / "fc_ir"
    assert main(["compile", "tf", str(src), "-o", str(out), "--no-png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_custom_layer_names_the_class(tmp_path) -> None:
    with pytest.raises(ImportError_, match="Doubler"):
        import_tf(custom_layer(tmp_path))


def test_every_unsupported_op_listed_at_once(tmp_path) -> None:
    pb = _freeze(lambda x: tf.math.cumsum(x, axis=1) + tf.math.floormod(x, 3.0) +
                 tf.math.cumsum(x, axis=0), tf.TensorSpec([2, 3], tf.float32, name="x"),
                 tmp_path / "m.pb")
    with pytest.raises(UnsupportedOpsError) as e:
        import_tf(pb)
    assert "2 unsupported TensorFlow op type(s): Cumsum x2" in str(e.value)
    assert "FloorMod x1" in str(e.value)


def test_refused_attribute_is_listed_with_its_reason(tmp_path) -> None:
    pb = _freeze(lambda x: tf.pad(x, [[0, 0], [2, 2]], mode="SYMMETRIC") + 1.0,
                 tf.TensorSpec([2, 3], tf.float32, name="x"), tmp_path / "m.pb")
    with pytest.raises(UnsupportedOpsError, match=r"MirrorPad\(mode=SYMMETRIC with pads > 1\)"):
        import_tf(pb)


def test_unknown_dims_ask_for_an_input_shape(tmp_path, capsys) -> None:
    pb = _freeze(lambda x: x * 2.0, tf.TensorSpec([None, None, 3], tf.float32, name="x"),
                 tmp_path / "m.pb")
    with pytest.raises(ImportError_, match=r"input_shapes=\{'x': \(1, H, 3\)\}"):
        import_tf(pb)
    assert main(["compile", "tf", str(pb), "-o", str(tmp_path / "o"), "--no-png"]) == 2
    assert "--input-shape x=1,H,3" in capsys.readouterr().err
    g = import_tf(pb, input_shapes={"x": (2, 5, 3)})
    assert g.inputs[0].shape == (2, 5, 3)
    x = np.ones((2, 5, 3), np.float32)
    import fc.api

    np.testing.assert_array_equal(fc.api.run(g, x)[g.outputs[0].name], 2 * x)
