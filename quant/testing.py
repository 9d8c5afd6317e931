"""Helpers for quantization tests, examples and benchmarks: torch models into fused IR (through
ONNX), calibration over arrays, and fc's (quantized) IR back to ONNX so that onnxruntime can
execute it as an independent oracle."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import numpy as np

from fc.ir.core import Graph

__all__ = ["torch_to_fused", "calibrate_arrays", "split", "to_onnx", "ort_run", "PHOTOS",
           "sample_photos"]

# Colour photos that ship in pip packages (scikit-image, scikit-learn, matplotlib): path
# relative to site-packages.
PHOTOS = (
    "skimage/data/chelsea.png", "skimage/data/coffee.png", "skimage/data/rocket.jpg",
    "skimage/data/motorcycle_left.png", "skimage/data/astronaut.png", "skimage/data/retina.jpg",
    "skimage/data/hubble_deep_field.jpg", "skimage/data/ihc.png", "skimage/data/color.png",
    "skimage/data/brick.png", "skimage/data/grass.png", "skimage/data/gravel.png",
    "sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg",
    "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "skimage/data/camera.png",
)


def sample_photos() -> list:
    """The photos of ``PHOTOS`` as paths (they are installed with the packages)."""
    from pathlib import Path

    import numpy

    site = Path(numpy.__file__).parents[1]
    return [site / p for p in PHOTOS]


def torch_to_fused(model, example, name: str) -> Graph:
    """The IR fused for CModel of a torch model (input 'input', output 'logits')."""
    import onnx
    import torch

    from fc.frontend.onnx import import_onnx
    from fc.passes.pipeline import compile_graph

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, buf, dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}})
    proto = onnx.load_from_string(buf.getvalue())
    proto.graph.name = name
    graph = import_onnx(proto, input_shapes={"input": tuple(example.shape)})
    fused, _ = compile_graph(graph)
    return fused


def calibrate_arrays(graph: Graph, batches: Iterable[np.ndarray], method: str = "max", **kw):
    """A calibration table of ``graph`` over ``batches`` (a list of input arrays)."""
    from fc.np_ops import run
    from fc.quant.calibration import Calibrator
    from fc.quant.plan import make_plan

    cal = Calibrator(make_plan(graph).calibrated, method=method, **kw)
    name = graph.inputs[0].name
    for x in batches:
        cal.observe_inputs({name: x})
        run(graph, {name: x}, observer=cal)
    return cal.table()


def split(x: np.ndarray, n: int) -> list[np.ndarray]:
    return [x[i:i + n] for i in range(0, len(x), n)]


def to_onnx(graph: Graph):
    """fc's (quantized) IR as an ONNX model, for onnxruntime as an independent executor:
    fused activations become separate ONNX ops, QuantizeLinear/DequantizeLinear map 1:1
    (only 8-bit ranges: ONNX clamps to the dtype's range)."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, inits = [], [numpy_helper.from_array(np.asarray(v.const), n)
                        for n, v in graph.initializers.items()]
    keep = {"Conv": ("strides", "pads", "dilations", "group"),
            "Gemm": ("alpha", "beta", "transA", "transB"),
            "MaxPool": ("kernel_shape", "strides", "pads", "dilations", "ceil_mode"),
            "AveragePool": ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"),
            "Flatten": ("axis",), "DequantizeLinear": ("axis",), "QuantizeLinear": ("axis",)}
    for n in graph:
        ins = ["" if v is None else v.name for v in n.inputs]
        out = n.outputs[0].name
        act = n.attrs.get("activation", "")
        if n.op_type == "QuantizeLinear":
            info = np.iinfo(n.inputs[2].const.dtype)
            assert (n.attrs["qmin"], n.attrs["qmax"]) == (info.min, info.max), n.name
        mid = out + "__pre_act" if act else out
        attrs = {k: n.attrs[k] for k in keep.get(n.op_type, ())}
        nodes.append(helper.make_node(n.op_type, ins, [mid], name=n.name, **attrs))
        if act == "relu":
            nodes.append(helper.make_node("Relu", [mid], [out]))
        elif act == "clip":
            lo, hi = out + "__lo", out + "__hi"
            inits += [numpy_helper.from_array(np.float32(n.attrs["act_alpha"]), lo),
                      numpy_helper.from_array(np.float32(n.attrs["act_beta"]), hi)]
            nodes.append(helper.make_node("Clip", [mid, lo, hi], [out]))
        elif act:
            raise NotImplementedError(act)
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, graph.name,
                          [vi(v.name, onnx.TensorProto.FLOAT, ["n", *v.shape[1:]]) for v in graph.inputs],
                          [vi(v.name, onnx.TensorProto.FLOAT, ["n", *v.shape[1:]]) for v in graph.outputs],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def ort_run(model, feeds: dict) -> list[np.ndarray]:
    """onnxruntime with graph optimizations disabled (no QDQ fusion: the QDQ graph as written)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
