"""Structural re-parameterization in the compile pipeline: ACNet and RepVGG blocks (branch
merge) and ResRep's compactor (Conv -> BN -> 1x1 Conv fold), built in torch as the papers
define them, imported, compiled, and checked against the torch module; node counts before
and after. Refusals leave the graph as it was and say why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fc.np_ops as npo
from fc.ir import Graph, verify
from fc.passes.fold_batchnorm import batchnorm_to_scale_pass, fold_batchnorm_pass
from fc.passes.fold_compactor import FoldCompactor
from fc.passes.merge_branches import MergeBranches
from fc.passes.pipeline import compile_graph
from fc.testing import MODEL_REL_L2, assert_refused, check_close


def conv_bn(cin: int, cout: int, k: tuple[int, int], stride: int, pad: tuple[int, int],
            groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class ACBlock(nn.Module):
    """ACNet (Ding et al. 2019): k x k + 1 x k + k x 1 convolutions, each with BN, summed."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__()
        p = k // 2
        self.square = conv_bn(cin, cout, (k, k), stride, (p, p), groups)
        self.hor = conv_bn(cin, cout, (1, k), stride, (0, p), groups)
        self.ver = conv_bn(cin, cout, (k, 1), stride, (p, 0), groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.square(x) + self.hor(x) + self.ver(x))


class RepVGGBlock(nn.Module):
    """RepVGG (Ding et al. 2021): 3 x 3-BN + 1 x 1-BN (+ BN identity when shapes allow)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.rbr_dense = conv_bn(cin, cout, (3, 3), stride, (1, 1), groups)
        self.rbr_1x1 = conv_bn(cin, cout, (1, 1), stride, (0, 0), groups)
        self.rbr_identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return torch.relu(y)


class CompactorBlock(nn.Module):
    """ResRep (Ding et al. 2021): Conv-BN, then a 1 x 1 compactor (no bias), then ReLU."""

    def __init__(self, cin: int, cout: int, kept: int, stride: int = 1):
        super().__init__()
        self.conv = conv_bn(cin, cout, (3, 3), stride, (1, 1))
        self.compactor = nn.Conv2d(cout, kept, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.compactor(self.conv(x)))


class Net(nn.Module):
    """stem conv, the block under test, a 1x1 head: the block's input is a computed tensor."""

    def __init__(self, block: nn.Module, cin: int, cout: int):
        super().__init__()
        self.stem = nn.Conv2d(3, cin, 3, padding=1)
        self.block = block
        self.head = nn.Conv2d(cout, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.relu(self.stem(x))))


# block nodes: its Convs, BNs, Adds and the ReLU
BLOCKS = [
    pytest.param(lambda: ACBlock(8, 8), 8, 3 + 3 + 2 + 1, (3, 3), id="acnet_3x3"),
    pytest.param(lambda: ACBlock(8, 12, k=5, stride=2), 12, 9, (5, 5), id="acnet_5x5_stride2"),
    pytest.param(lambda: ACBlock(8, 8, groups=4), 8, 9, (3, 3), id="acnet_grouped"),
    pytest.param(lambda: RepVGGBlock(8, 8), 8, 2 + 3 + 2 + 1, (3, 3), id="repvgg_identity"),
    pytest.param(lambda: RepVGGBlock(8, 16, stride=2), 16, 2 + 2 + 1 + 1, (3, 3),
                 id="repvgg_stride2"),
    pytest.param(lambda: RepVGGBlock(8, 8, groups=2), 8, 8, (3, 3), id="repvgg_grouped_identity"),
    pytest.param(lambda: CompactorBlock(8, 12, kept=12), 12, 1 + 1 + 1 + 1, (3, 3),
                 id="compactor_square"),
    pytest.param(lambda: CompactorBlock(8, 12, kept=7, stride=2), 7, 4, (3, 3),
                 id="compactor_pruned"),
]


@pytest.mark.parametrize("make, cout, block_nodes, kernel", BLOCKS)
def test_block_compiles_to_one_conv(torch_ir, make, cout, block_nodes, kernel):
    torch.manual_seed(0)
    model = Net(make(), 8, cout).eval()
    g = torch_ir(model, (2, 3, 10, 10))
    ops = [n.op_type for n in g]
    assert len(ops) == 1 + 1 + block_nodes + 1, ops  # stem Conv and Relu, the block, head
    fused, report = compile_graph(g, verify=True)
    assert [n.op_type for n in fused] == ["Conv", "Conv", "Conv"]
    assert [n.attrs["activation"] for n in fused] == ["relu", "relu", ""]
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    check_close(npo.run(fused, {"x": x})["y"], ref, rel_l2_max=MODEL_REL_L2)
    merged = fused.nodes[1]
    assert merged.inputs[1].shape[0] == cout and merged.inputs[1].shape[2:] == kernel


def _folded(build) -> Graph:
    """``build()`` with BN folded and lone BNs as Scale: what the merge rules meet."""
    g = build()
    fold_batchnorm_pass()(g)
    batchnorm_to_scale_pass()(g)
    return g


def _two_convs(pads2=(0, 0, 0, 0), k2=(1, 1), x2_from_relu=False, act="", dil2=(1, 1),
               dil=(1, 1), pads=(1, 1, 1, 1), strides=(1, 1)):
    def build() -> Graph:
        rng = np.random.default_rng(0)
        g = Graph("g")
        x = g.add_input("x", (1, 4, 6, 6))
        x2 = g.add_node("Relu", [x], name="relu").output if x2_from_relu else x
        a = g.add_node("Conv", [x, g.add_const("wa", rng.standard_normal((4, 4, 3, 3))
                                               .astype(np.float32))],
                       {"pads": pads, "dilations": dil, "strides": strides}, name="a").output
        b = g.add_node("Conv", [x2, g.add_const("wb", rng.standard_normal((4, 4, *k2))
                                                .astype(np.float32))],
                       {"pads": pads2, "activation": act, "dilations": dil2, "strides": strides},
                       name="b").output
        g.outputs = [g.add_node("Add", [a, b], name="add").output]
        return g

    return build


@pytest.mark.parametrize("build, reason", [
    pytest.param(_two_convs(x2_from_relu=True), "operands read different inputs",
                 id="different_inputs"),
    pytest.param(_two_convs(act="relu"), "Conv 'b' carries activation 'relu'", id="branch_act"),
    # taps at odd offsets (-1, +1) and even ones (-2, 0, 2): no dilation-2 kernel has both
    pytest.param(_two_convs(k2=(2, 2), pads2=(1, 1, 1, 1), dil2=(2, 2), dil=(2, 2),
                            pads=(2, 2, 2, 2)), "do not align with 2 on axis 0", id="misaligned"),
    pytest.param(_two_convs(k2=(3, 3), pads2=(2, 2, 2, 2), dil2=(2, 2)),
                 "Conv 'a' and 'b' differ in ['dilations']", id="other_dilation"),
])
def test_merge_refusals(build, reason):
    assert_refused(MergeBranches(), _folded(build), reason, at="add")


@pytest.mark.parametrize("build", [
    pytest.param(_two_convs(), id="3x3_and_1x1"),
    pytest.param(_two_convs(k2=(2, 2), pads2=(0, 0, 1, 1)), id="2x2_inside_3x3"),
    pytest.param(_two_convs(strides=(2, 2), pads=(1, 1, 0, 0)), id="stride2_end_pads_differ"),
    pytest.param(_two_convs(k2=(1, 3), pads2=(0, 2, 0, 2), dil=(2, 2), dil2=(2, 2),
                            pads=(2, 2, 2, 2)), id="dilated_1x3"),
])
def test_merge_two_convs_numerics(build):
    """Merged against the two branches run by the golden executor."""
    g, before = _folded(build), _folded(build)
    from fc.passes.infra import FusionPass

    assert FusionPass(MergeBranches())(g).count == 1
    assert [n.op_type for n in g] == ["Conv"]
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    check_close(npo.run(g, {"x": x})["add_out"], npo.run(before, {"x": x})["add_out"], op="Conv")
    verify(g)


def _compactor_graph(first_act="", group=1, k2=(1, 1), widen=False) -> Graph:
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input("x", (1, 4, 6, 6))
    c = g.add_node("Conv", [x, g.add_const("w1", rng.standard_normal((6, 4 // group, 3, 3))
                                           .astype(np.float32))],
                   {"pads": (1, 1, 1, 1), "group": group, "activation": first_act},
                   name="conv").output
    m2 = 8 if widen else 5
    y = g.add_node("Conv", [c, g.add_const("w2", rng.standard_normal((m2, 6, *k2))
                                           .astype(np.float32))], name="compactor").output
    g.outputs = [y]
    return g


@pytest.mark.parametrize("kwargs, reason", [
    pytest.param({"first_act": "relu"}, "Conv 'conv' carries activation 'relu'", id="nonlinear"),
    pytest.param({"group": 2}, "Conv 'conv' is grouped (group=2)", id="grouped_first"),
    pytest.param({"k2": (3, 3)}, "not a 1x1 Conv", id="not_1x1"),
    pytest.param({"widen": True}, "the 1x1 Conv widens 6 -> 8 channels", id="widens"),
])
def test_compactor_refusals(kwargs, reason):
    assert_refused(FoldCompactor(), _compactor_graph(**kwargs), reason, at="compactor",
                   single=False)
