"""Whole models rebuilt in torch: real layers with the IR's names, the source module as the
oracle at two batch sizes, training, write-back, standalone source and .pt2 export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fc.np_ops import run
from fc.passes.pipeline import compile_graph
from fc.reconstruct.torch import (
    export_program,
    reconstruct,
    run_intermediates,
    run_numpy,
    save_py,
    write_back,
)
from fc.testing import MODEL_REL_L2, check_close


def _x(batch: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def _torch(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("batch", [pytest.param(1, id="batch1"), pytest.param(3, id="batch3")])
@pytest.mark.parametrize("fused", [pytest.param(False, id="reconstruct_ir"),
                                   pytest.param(True, id="fused_ir")])
def test_resnet18_matches_source_and_golden(resnet18, fused, batch) -> None:
    model, g = resnet18
    graph = compile_graph(g)[0] if fused else g
    x = _x(batch)
    ref = _torch(model, x)
    got = run_numpy(reconstruct(graph), x)["logits"]
    check_close(got, ref, rel_l2_max=MODEL_REL_L2, what="reconstructed vs source")
    check_close(got, run(graph, x)["logits"], rel_l2_max=MODEL_REL_L2, what="vs golden")


def test_layers_are_torch_layers_named_like_the_source(resnet18) -> None:
    model, g = resnet18
    m = reconstruct(g)
    assert isinstance(m.get_submodule("layer2.1.conv2"), nn.Conv2d)
    assert isinstance(m.get_submodule("layer2.1.bn2"), nn.BatchNorm2d)
    assert isinstance(m.get_submodule("fc"), nn.Linear)
    # torch.onnx keeps the state-dict names: the reconstructed state dict is the source's
    ours = {k: v for k, v in m.state_dict().items()}
    theirs = model.state_dict()
    assert sorted(ours) == sorted(theirs)
    for k, v in theirs.items():
        assert torch.equal(ours[k], v), k
    assert all(p.requires_grad for p in m.parameters())


def test_fused_ir_is_inference_layers(resnet18) -> None:
    m = reconstruct(compile_graph(resnet18[1])[0])
    kinds = {type(x) for x in m.modules()}
    assert nn.BatchNorm2d not in kinds and nn.Conv2d in kinds
    assert "torch.relu(" in m.code  # fused activations are calls after their layer


def test_training_then_write_back_then_compile(small_net) -> None:
    """A few SGD steps in train mode: the loss falls and BN's running statistics move; the
    trained weights written back into the IR compile to a graph the golden executor runs
    to the trained module's outputs."""
    _, g = small_net
    m = reconstruct(g)
    m.train()
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    target = torch.randint(0, 5, (16,))
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    bn_mean = m.get_buffer("bn1.running_mean").clone()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.allclose(m.get_buffer("bn1.running_mean"), bn_mean)
    assert int(m.get_buffer("bn1.num_batches_tracked")) == 8

    m.eval()
    trained = write_back(m, g)
    assert not np.array_equal(trained.initializers["conv1.weight"].const,
                              g.initializers["conv1.weight"].const)
    np.testing.assert_array_equal(trained.initializers["bn1.running_mean"].const,
                                  m.get_buffer("bn1.running_mean").numpy())
    xs = _x(4, size=8, seed=1)
    expected = _torch(m, xs)
    fused = compile_graph(trained)[0]
    check_close(run(fused, xs)["logits"], expected, rel_l2_max=MODEL_REL_L2)
    check_close(run(trained, xs)["logits"], expected, rel_l2_max=MODEL_REL_L2)


def test_write_back_untouched_is_identity(small_net) -> None:
    _, g = small_net
    back = write_back(reconstruct(g), g)
    for name, v in g.initializers.items():
        np.testing.assert_array_equal(back.initializers[name].const, v.const)
        assert back.initializers[name].const.dtype == v.const.dtype


def test_intermediates_cover_every_node_output(small_net) -> None:
    _, g = small_net
    xs = _x(2, size=8)
    got = run_intermediates(reconstruct(g), xs)
    golden = run(g, xs, intermediate=True)
    names = [v.name for n in g for v in n.outputs]
    assert sorted(got) == sorted(names)
    for name in names:
        check_close(got[name], golden[name], op="Conv", what=name)


def test_save_py_runs_in_a_fresh_process_without_fc(small_net, tmp_path) -> None:
    _, g = small_net
    m = reconstruct(g)
    py, weights = save_py(m, tmp_path / "small_model.py")
    assert weights == tmp_path / "small_model.pt"
    source = py.read_text()
    assert "fc." not in source.replace("fcc reconstruct", "") and "import fc" not in source
    assert "nn.Conv2d(" in source and "nn.BatchNorm2d(" in source
    xs = _x(2, size=8)
    np.save(tmp_path / "x.npy", xs)
    # -I: isolated (no site-packages of fc on the path is needed; torch still is)
    code = ("import sys, numpy as np, torch; sys.modules['fc'] = None; import small_model; "
            "m = small_model.load(); "
            "np.save('y.npy', m(torch.from_numpy(np.load('x.npy'))).detach().numpy())")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    check_close(np.load(tmp_path / "y.npy"), run_numpy(m, xs)["logits"])


def test_export_program_round_trip(small_net, tmp_path) -> None:
    _, g = small_net
    m = reconstruct(g)
    xs = _x(1, size=8)
    export_program(m, xs, tmp_path / "m.pt2")
    loaded = torch.export.load(tmp_path / "m.pt2")
    with torch.no_grad():
        y = loaded.module()(torch.from_numpy(xs)).numpy()
    check_close(y, run_numpy(m, xs)["logits"])


MXNET_MODEL = "resnet18_v1"


@pytest.fixture(scope="module")
def mxnet_model():
    """An MXNet zoo model imported by fc, with mxnet's fp32 forward pass at batch 1 and 2."""
    import fc.zoo.mxnet as mxzoo
    from fc.frontend.mxnet import load_mxnet
    from fc.frontend.mxnet._mx import import_mxnet

    mx = import_mxnet()
    name = MXNET_MODEL
    graph, _ = load_mxnet(name)
    net = mxzoo.get_model(name, seed=0)
    cases = []
    for batch in (1, 2):
        x = np.random.default_rng(batch).standard_normal(
            (batch, *mxzoo.input_shape(name)[1:])).astype(np.float32)
        cases.append((x, net(mx.nd.array(x)).asnumpy()))
    return graph, cases


@pytest.mark.parametrize("fused", [pytest.param(False, id="reconstruct_ir"),
                                   pytest.param(True, id="fused_ir")])
def test_mxnet_model_matches_mxnet(mxnet_model, fused) -> None:
    """An MXNet zoo model: mxnet's own output vs the golden executor vs the reconstruction,
    at batch 1 (imported) and 2, within the model's bound (``fc.testing.model_rel_l2``).
    resnet18_v1 needs no row: mxnet fp32 lies 1.4e-6 from mxnet float64, the reconstruction
    1.4e-6..1.6e-6 from mxnet fp32 and 1.1e-6 from the golden executor (both IRs, both
    batches)."""
    from fc.testing import model_rel_l2

    graph, cases = mxnet_model
    bound = model_rel_l2(f"mxnet:{MXNET_MODEL}")
    graph = compile_graph(graph)[0] if fused else graph
    module = reconstruct(graph)
    (out,) = [v.name for v in graph.outputs]
    for x, mx32 in cases:
        got = run_numpy(module, x)[out]
        check_close(got, run(graph, x)[out], rel_l2_max=MODEL_REL_L2, what="vs golden")
        check_close(got, mx32, rel_l2_max=bound, what="vs mxnet")
