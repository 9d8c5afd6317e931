"""Thinning: pruned channels are removed physically and every consumer follows; the thinned
graph computes what the pruned, unthinned graph computes in torch (the oracle: the
reconstructed torch module of the graph before thinning); zero channels that cannot go say
why; complexity shows the FLOPs saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.ir.complexity import complexity
from fc.ir.core import Node
from fc.passes.pipeline import compile_graph
from fc.passes.prune import prune, prune_filters
from fc.passes.thin import thin
from fc.reconstruct.torch import reconstruct, run_numpy
from fc.testing import MODEL_REL_L2, check_close


def _layer(g: Graph, module: str) -> Node:
    """The layer whose weight is ``<module>.weight``."""
    return next(n for n in g if len(n.inputs) > 1 and n.inputs[1] is not None
                and n.inputs[1].name.startswith(f"{module}.weight"))


def _x(g: Graph, batch: int = 2, seed: int = 0) -> np.ndarray:
    shape = (batch, *g.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _thin_and_compare(g: Graph, batch: int = 2):
    """Thin ``g`` in place; its outputs (golden executor and torch) equal those of ``g``
    before thinning, run in torch."""
    x = _x(g, batch)
    ref = run_numpy(reconstruct(g), x)["y"]
    result = thin(g)
    verify(g)
    check_close(npo.run(g, {"x": x})["y"], ref, rel_l2_max=MODEL_REL_L2, what="thinned (numpy)")
    check_close(run_numpy(reconstruct(g), x)["y"], ref, rel_l2_max=MODEL_REL_L2,
                what="thinned (torch)")
    return result


class Chain(nn.Module):
    """conv-BN-ReLU, conv-PReLU, depthwise conv, pool, flatten, Linear-ReLU, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.act2 = nn.PReLU(6)
        self.dw = nn.Conv2d(6, 12, 3, padding=1, groups=6)
        self.fc1 = nn.Linear(12 * 16, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.dw(self.act2(self.conv2(y)))
        y = torch.relu(self.fc1(torch.flatten(nn.functional.max_pool2d(y, 2), 1)))
        return self.fc2(y)


@pytest.fixture
def chain(torch_ir) -> Graph:
    torch.manual_seed(0)
    return torch_ir(Chain(), (2, 3, 8, 8))


@pytest.mark.parametrize("fused", [pytest.param(False, id="reconstruct_ir"),
                                   pytest.param(True, id="fused_ir")])
def test_chain_thins_every_consumer(chain, fused):
    g = compile_graph(chain)[0] if fused else chain
    flops = complexity(g).dense_flops
    prune(g, {"conv1": 0.5, "conv2": 0.5, "fc1": 0.3}, criterion="l2")
    result = _thin_and_compare(g)
    shapes = {m: _layer(g, m).inputs[1].shape for m in ("conv1", "conv2", "dw", "fc1", "fc2")}
    assert shapes == {"conv1": (4, 3, 3, 3), "conv2": (3, 4, 3, 3), "dw": (6, 1, 3, 3),
                      "fc1": (7, 6 * 16), "fc2": (4, 7)}
    assert _layer(g, "dw").attrs["group"] == 3
    assert {la.name: (la.channels, la.kept, la.reasons) for la in result.layers} == {
        _layer(g, "conv1").name: (8, 4, {}), _layer(g, "conv2").name: (6, 3, {}),
        _layer(g, "dw").name: (12, 6, {}), _layer(g, "fc1").name: (10, 7, {})}
    if not fused:
        bn = next(n for n in g if n.op_type == "BatchNormalization")
        assert [v.shape for v in bn.inputs[1:]] == [(4,)] * 4
    prelu = next(n for n in g if n.op_type == "PRelu")
    assert prelu.inputs[1].shape[0] == 3
    # MACs: N * pixels * |W| per conv, N * |W| per Linear, before and after
    before = 2 * (64 * (8 * 3 * 9 + 6 * 8 * 9 + 12 * 9) + 10 * 192 + 4 * 10)
    after = 2 * (64 * (4 * 3 * 9 + 3 * 4 * 9 + 6 * 9) + 7 * 96 + 4 * 7)
    assert (flops, complexity(g).dense_flops) == (before, after)


class Residual(nn.Module):
    """stem conv-BN-ReLU, a basic block (conv_a-BN-ReLU-conv_b-BN + identity, ReLU), head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.bn0(self.stem(x)))
        y = self.bn_b(self.conv_b(torch.relu(self.bn_a(self.conv_a(s)))))
        return self.head(torch.relu(y + s)).mean((2, 3))


@pytest.fixture
def residual(torch_ir) -> Graph:
    torch.manual_seed(1)
    return torch_ir(Residual(), (2, 3, 6, 6))


def test_residual_interior_thins(residual):
    prune(residual, {"conv_a": 0.5})
    result = _thin_and_compare(residual)
    assert _layer(residual, "conv_a").inputs[1].shape == (4, 8, 3, 3)
    assert _layer(residual, "conv_b").inputs[1].shape == (8, 4, 3, 3)
    assert [(la.channels, la.kept) for la in result.layers] == [(8, 4)]


def test_residual_add_keeps_the_union_and_says_why(residual):
    prune(residual, {"conv_b": 0.5})
    result = _thin_and_compare(residual)
    assert _layer(residual, "conv_b").inputs[1].shape == (8, 8, 3, 3)
    [la] = result.layers
    assert (la.channels, la.kept, la.zero) == (8, 8, 4)
    [(reason, count)] = la.reasons.items()
    # the identity path carries the stem's channels into the Add
    assert count == 4 and reason == "live in '/stem/Conv_output_0' (Conv node '/stem/Conv')"


def test_residual_channels_zero_in_both_inputs_go(residual):
    channels = [1, 4, 6]
    prune_filters(residual, _layer(residual, "stem"), channels)
    prune_filters(residual, _layer(residual, "conv_b"), channels)
    result = _thin_and_compare(residual)
    for m in ("stem", "conv_b"):
        assert _layer(residual, m).inputs[1].shape[0] == 5
    assert _layer(residual, "conv_a").inputs[1].shape == (8, 5, 3, 3)
    assert _layer(residual, "head").inputs[1].shape == (5, 5, 1, 1)
    assert sorted((la.channels, la.kept) for la in result.layers) == [(8, 5), (8, 5)]


@pytest.mark.parametrize("criterion", ["l1", "fpgm"])
def test_residual_coupled_pruning_thins_both_sides(residual, criterion):
    """The stem and conv_b meet in the residual Add: pruned together (the same channels,
    chosen on their joint filters) they thin; pruned apart they cannot."""
    result = prune(residual, {"stem": 0.5, "conv_b": 0.5}, criterion=criterion)
    stem, conv_b = (_layer(residual, m).name for m in ("stem", "conv_b"))
    by = {la.name: la for la in result.layers}
    assert by[stem].pruned == by[conv_b].pruned and len(by[stem].pruned) == 4
    assert by[stem].tied == (conv_b,) and by[conv_b].tied == (stem,)
    thinned = _thin_and_compare(residual)
    assert sorted((la.channels, la.kept) for la in thinned.layers) == [(8, 4), (8, 4)]
    assert _layer(residual, "head").inputs[1].shape == (5, 4, 1, 1)


def test_residual_uncoupled_pruning_does_not_thin(torch_ir):
    torch.manual_seed(1)
    g = torch_ir(Residual(), (2, 3, 6, 6))
    result = prune(g, {"stem": 0.5, "conv_b": 0.5}, coupled=False)
    both = set(result.layers[0].pruned) & set(result.layers[1].pruned)
    assert len(both) < 4  # chosen apart, they differ
    thinned = _thin_and_compare(g)
    assert [la.kept for la in thinned.layers] == [8 - len(both)] * 2  # only the common ones go


class Branches(nn.Module):
    """Two convolutions concatenated on the channels, then a 1x1 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 6, 1)
        self.mix = nn.Conv2d(10, 5, 1)
        self.out = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], 1)
        return self.out(torch.relu(self.mix(y)))


def test_concat_offsets(torch_ir):
    torch.manual_seed(2)
    g = torch_ir(Branches(), (1, 3, 5, 5))
    prune_filters(g, _layer(g, "right"), [0, 5])
    prune_filters(g, _layer(g, "left"), [2])
    _thin_and_compare(g, batch=1)
    mix = _layer(g, "mix").inputs[1].const
    assert mix.shape == (5, 7, 1, 1)


def _zero_conv_graph(consumer: str) -> Graph:
    """x -> Conv (channel 1 of 3 zero) -> ``consumer`` -> y."""
    g = Graph("g")
    x = g.add_input("x", (1, 2, 4, 4))
    w = np.random.default_rng(0).standard_normal((3, 2, 1, 1)).astype(np.float32)
    w[1] = 0
    c = g.add_node("Conv", [x, g.add_const("w", w)], name="conv").output
    if consumer == "output":
        g.outputs = [c]
        return g
    if consumer == "softmax":
        y = g.add_node("Softmax", [c], {"axis": 1}, name="softmax").output
    elif consumer == "sigmoid":
        s = g.add_node("Sigmoid", [c], name="sigmoid").output
        y = g.add_node("Conv", [s, g.add_const("w2", w.reshape(2, 3, 1, 1))], name="conv2").output
    g.outputs = [y]
    return g


@pytest.mark.parametrize("consumer, reason", [
    pytest.param("output", "graph output 'conv_out'", id="graph_output"),
    pytest.param("softmax", "read by Softmax node 'softmax', which thinning does not rewrite",
                 id="softmax_over_channels"),
    pytest.param("sigmoid", "live in 'sigmoid_out' (Sigmoid node 'sigmoid')", id="sigmoid_of_zero"),
])
def test_zero_channels_that_stay(consumer, reason):
    g = _zero_conv_graph(consumer)
    result = thin(g)
    assert g.initializers["w"].shape == (3, 2, 1, 1)
    [la] = [la for la in result.layers if la.name == "conv"]
    assert la.reasons == {reason: 1} and result.removed == 0


def test_reshape_to_features_and_gemm():
    g = Graph("g")
    x = g.add_input("x", (2, 2, 3, 3))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    w[[0, 2]] = 0
    c = g.add_node("Conv", [x, g.add_const("w", w)], {"pads": (1, 1, 1, 1),
                                                     "activation": "relu"}, name="conv").output
    r = g.add_node("Reshape", [c], {"shape": (-1, 36)}, name="reshape").output
    fw = rng.standard_normal((36, 5)).astype(np.float32)
    y = g.add_node("Gemm", [r, g.add_const("fw", fw), g.add_const("fb", rng.standard_normal(5)
                                                                    .astype(np.float32))],
                   name="fc").output
    g.outputs = [y]
    feeds = {"x": _x(g)}
    ref = npo.run(g, feeds)[y.name]
    thin(g)
    verify(g)
    assert g.node_by_name("reshape").attrs["shape"] == (-1, 18)
    np.testing.assert_array_equal(g.node_by_name("fc").inputs[1].const, np.concatenate(
        [fw[9:18], fw[27:36]]))  # transB=0: input features are the rows
    check_close(npo.run(g, feeds)[y.name], ref, op="Gemm")


def test_scale_and_per_channel_constants_follow():
    """A fused-IR Scale (a lone BN) and per-channel Mul/Add constants lose the entries of
    the removed channels; a broadcast (scalar) constant stays."""
    rng = np.random.default_rng(3)
    g = Graph("g")
    x = g.add_input("x", (2, 3, 5, 5))
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w[[1, 4]] = 0
    c = g.add_node("Conv", [x, g.add_const("w", w)], {"pads": (1, 1, 1, 1)}, name="conv").output
    m = g.add_node("Mul", [c, g.add_const("m", rng.uniform(0.5, 2, (6, 1, 1)).astype(np.float32))],
                   name="mul").output
    s = g.add_node("Scale", [m, g.add_const("s", rng.uniform(0.5, 2, 6).astype(np.float32)),
                             g.add_const("t", np.where(np.arange(6) % 3 == 1, 0, 1)
                                         .astype(np.float32))],
                   {"activation": "relu"}, name="scale").output
    a = g.add_node("Add", [s, g.add_const("k", np.zeros((1, 6, 1, 1), np.float32))],
                   name="add").output
    h = g.add_node("Mul", [a, g.add_const("half", np.array(0.5, np.float32))], name="half").output
    y = g.add_node("Conv", [h, g.add_const("w2", rng.standard_normal((2, 6, 1, 1))
                                           .astype(np.float32))], name="conv2").output
    g.outputs = [y]
    feeds = {"x": _x(g)}
    ref = npo.run(g, feeds)[y.name]
    result = thin(g)
    verify(g)
    assert [(la.name, la.channels, la.kept) for la in result.layers] == [("conv", 6, 4)]
    shapes = {k: v.shape for k, v in g.initializers.items()}
    assert shapes == {"w": (4, 3, 3, 3), "m": (4, 1, 1), "s": (4,), "t": (4,),
                      "k": (1, 4, 1, 1), "half": (), "w2": (2, 4, 1, 1)}
    check_close(npo.run(g, feeds)[y.name], ref, op="Conv")


def test_resnet18_blocks_thin(torch_ir):
    """Half of the first convolution of every basic block of a ResNet-18 (the interior
    channels a residual Add does not see) pruned and thinned: same outputs, fewer FLOPs."""
    import fc.zoo.torch as zoo

    g = torch_ir(zoo.resnet18(seed=0), (1, 3, 32, 32), trained=True)
    firsts = [n.name for n in g if n.op_type == "Conv" and ".conv1." in n.inputs[1].name]
    assert len(firsts) == 8
    flops = complexity(g).dense_flops
    prune(g, dict.fromkeys(firsts, 0.5), criterion="fpgm")
    result = _thin_and_compare(g, batch=1)
    assert sorted(la.channels // la.kept for la in result.layers) == [2] * 8
    assert complexity(g).dense_flops < 0.65 * flops
