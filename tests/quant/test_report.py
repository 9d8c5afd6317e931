"""The per-layer error report's figures against independent computations: the isolated error of
a layer against torch's fake-quantized layer on torch's own float activations, the final
(accumulated) distance against onnxruntime running the quantized and the float model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fc.quant.quantize import build_spec, quantized_graph
from fc.quant.report import error_report
from fc.quant.strategies import get_strategy
from fc.quant.testing import calibrate_arrays, ort_run, split, to_onnx
from fc.testing import rel_l2


@pytest.fixture(scope="module")
def report(digits):
    _, data, fused = digits
    table = calibrate_arrays(fused, split(data.x_train[:512], 128), "max")
    spec = build_spec(fused, table, get_strategy("symmetry_max"), per_channel=True)
    x = data.x_test[:256]
    return spec, x, error_report(fused, spec, split(x, 64))


def _torch_fq(t: torch.Tensor, p) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(t, float(p.scale), int(p.zero_point), p.qmin, p.qmax)


def test_isolated_error_of_a_conv_is_torchs_fake_quantized_conv(digits, report):
    """conv1 (Conv + BN + ReLU in torch, one fused Conv in fc) alone quantized: its input
    (torch's float MaxPool output) fake-quantized, its weights per channel, its bias int32 at
    s_in * s_w, its output fake-quantized; the distance to torch's float conv1 output."""
    model, _, fused = digits
    spec, x, rep = report
    node = next(n for n in fused if n.name.startswith("/conv1/") and n.op_type == "Conv")
    feats: dict[str, torch.Tensor] = {}
    hooks = [model.pool.register_forward_hook(lambda m, i, o: feats.__setitem__("in", o)),
             model.conv1.register_forward_hook(lambda m, i, o: feats.__setitem__("out", o))]
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    p_in, p_out = spec.params(node.inputs[0].name), spec.acts[node.outputs[0].name]
    _, p_w = spec.weights[(node.name, 1)]
    w = torch.from_numpy(np.array(node.inputs[1].const))
    wq = torch.fake_quantize_per_channel_affine(
        w, torch.from_numpy(p_w.scale.astype(np.float32)), torch.zeros(len(w), dtype=torch.int32),
        0, p_w.qmin, p_w.qmax)
    s_b = np.float64(p_in.scale) * p_w.scale.astype(np.float64)
    bq = np.rint(node.inputs[2].const / s_b) * s_b
    with torch.no_grad():
        y = torch.nn.functional.conv2d(_torch_fq(feats["in"], p_in), wq,
                                       torch.from_numpy(bq.astype(np.float32)), padding=1)
        yq = _torch_fq(torch.relu(y), p_out)
    expect = rel_l2(yq.numpy(), feats["out"].numpy())
    row = next(r for r in rep.rows if r.name == node.name)
    assert 0 < expect < 0.05
    assert row.isolated.rel_l2 == pytest.approx(expect, rel=0.005)  # accumulated: 7% away
    # the first layer reads the (quantized) graph input either way: accumulated = isolated
    assert rep.rows[0].accumulated.rel_l2 == pytest.approx(rep.rows[0].isolated.rel_l2, rel=1e-9)


def test_final_distance_is_onnxruntimes_quantized_vs_float_distance(digits, report):
    _, _, fused = digits
    spec, x, rep = report
    ort_q = ort_run(to_onnx(quantized_graph(fused, spec)), {"input": x})[0]
    ort_f = ort_run(to_onnx(fused), {"input": x})[0]
    assert rep.final_distance == pytest.approx(rel_l2(ort_q, ort_f), rel=0.05)
    assert rep.final.sqnr_db == pytest.approx(-20 * np.log10(rep.final_distance))
    assert rep.top1_total == len(x)
    # ties at a step boundary may flip a near-tied image in one engine only
    assert abs(rep.top1_agree - int(np.sum(ort_q.argmax(1) == ort_f.argmax(1)))) <= 2


def test_worst_five_and_the_final_line(report):
    _, _, rep = report
    iso = sorted(r.isolated.sqnr_db for r in rep.rows)
    worst = rep.worst()
    assert len(worst) == 5 and [r.isolated.sqnr_db for r in worst] == iso[:5]
    lines = rep.lines()
    assert lines[-1] == f"final distance: {rep.final_distance:.6g}"
    assert all(r.name in next(ln for ln in lines if ln.startswith("worst 5")) for r in worst)
    assert [r.index for r in rep.rows] == list(range(len(rep.rows)))
