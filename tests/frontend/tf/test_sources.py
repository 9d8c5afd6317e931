"""Every TensorFlow source gives the same IR behaviour: a Keras model object, a .keras file,
an .h5 file, a SavedModel directory (its serving signature) and a frozen GraphDef .pb;
`fcc compile tf` on a file and on a zoo name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fc.api
import fc.ir
from fc.cli import main
from fc.frontend.tf import import_tf
from fc.testing import MODEL_REL_L2, check_close
from fc.zoo.tf import randomize

P = pytest.param
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
L = keras.layers


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    y = L.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ReLU(name="relu")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    m = keras.Model(inp, L.Dense(3, name="logits")(y))
    return randomize(m, 0, np.random.default_rng(1).standard_normal((8, 8, 8, 3)).astype(np.float32))


def keras_object(m, tmp: Path):
    return m


def keras_file(m, tmp: Path):
    m.save(tmp / "m.keras")
    return tmp / "m.keras"


def h5_file(m, tmp: Path):
    m.save(tmp / "m.h5")
    return tmp / "m.h5"


def saved_model(m, tmp: Path):
    m.export(str(tmp / "saved"), verbose=False)
    return tmp / "saved"


def frozen_pb(m, tmp: Path):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    cf = tf.function(lambda x: m(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image"))
    (tmp / "m.pb").write_bytes(convert_variables_to_constants_v2(cf).graph.as_graph_def()
                               .SerializeToString())
    return tmp / "m.pb"


@pytest.mark.parametrize("source", [
    P(keras_object, id="keras_object"), P(keras_file, id="keras_file"), P(h5_file, id="h5"),
    P(saved_model, id="saved_model"), P(frozen_pb, id="frozen_pb"),
])
def test_source(source, model, tmp_path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' notice that .h5 is legacy
        src = source(model, tmp_path)
    graph = import_tf(src)
    assert graph.layouts == {graph.inputs[0].name: "NHWC"}
    assert graph.inputs[0].shape == (1, 3, 8, 8)
    ops = [n.op_type for n in graph]
    assert ops == ["Conv", "BatchNormalization", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    x = np.random.default_rng(2).standard_normal((1, 8, 8, 3)).astype(np.float32)
    got = next(iter(fc.api.run(graph, x).values()))
    check_close(got, np.asarray(model(x, training=False)), rel_l2_max=MODEL_REL_L2)


def test_fcc_compile_tf_file_and_zoo_name(model, tmp_path, capsys) -> None:
    src = keras_file(model, tmp_path)
    out = tmp_path / "fc_ir"
    assert main(["compile", "tf", str(src), "-o", str(out), "--no-png"]) == 0
    g = fc.ir.load(out / "IR_fused_for_CModel_graph.json")
    assert "Transpose" not in g.op_histogram() and g.layouts == {"image": "NHWC"}
    zoo = tmp_path / "zoo"
    assert main(["compile", "tf", "mobilenet_v2", "--input-shape", "1,32,32,3", "-o", str(zoo),
                 "--no-png"]) == 0
    assert "weights are seeded random (seed 0)" in capsys.readouterr().out
    g = fc.ir.load(zoo / "IR_fused_for_CModel_graph.json")
    assert g.inputs[0].shape == (1, 3, 32, 32) and "Transpose" not in g.op_histogram()
