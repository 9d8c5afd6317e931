"""The quantized frozen .pb, loaded in a fresh process by plain TensorFlow, gives fc's
simulated output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.simulate import SimInterpreter
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, split
from fc.testing import rel_l2

LOAD = """
import sys
import numpy as np
import tensorflow as tf
gd = tf.compat.v1.GraphDef()
gd.ParseFromString(open(sys.argv[1], "rb").read())
x = np.load(sys.argv[2])
w = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
f = w.prune([w.graph.as_graph_element(sys.argv[3])], [w.graph.as_graph_element(sys.argv[4])])
out = f(tf.constant(x))
np.save(sys.argv[5], (out[0] if isinstance(out, list) else out).numpy())
"""


@pytest.mark.parametrize("strategy", [
    pytest.param("symmetry_max", id="symmetry_max"),
    pytest.param("minmax", id="minmax", marks=pytest.mark.slow),  # (each ~30 s of TensorFlow)
    pytest.param("scale_shift", id="scale_shift", marks=pytest.mark.slow),
])
def test_plain_tensorflow_runs_the_quantized_pb(digits, strategy, tmp_path):
    from fc.reconstruct.tf import freeze

    _, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:512], 128))
    spec = build_spec(fused, table, get_strategy(strategy))
    qg = quantized_graph(fused, spec)
    frozen = freeze(qg)
    frozen.save(tmp_path / "q.pb")
    x = data.x_test
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "q.pb"), str(tmp_path / "x.npy"),
                           frozen.inputs[0], frozen.outputs[0], str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tf_out = np.load(tmp_path / "y.npy")
    ours = SimInterpreter(qg).run({"input": x})["logits"]
    assert rel_l2(tf_out, ours) < 1e-3
    assert np.array_equal(tf_out.argmax(1), ours.argmax(1))
    # the output is dequantized int8: count how many of its values are one step apart
    s = float(spec.acts["logits"].scale)
    steps = np.rint(np.abs(tf_out - ours) / s)
    print(f"{strategy}: {int((steps == 1).sum())} of {steps.size} output values one step apart, "
          f"{int((steps > 1).sum())} more")
    assert (steps > 0).mean() < 0.01
