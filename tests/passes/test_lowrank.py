"""Low-rank decomposition: full rank reproduces the layer (torch on the original weights is
the oracle), a truncated weight's relative error is the SVD's discarded energy (torch's
singular values are the oracle), the two factors compute one layer with the product weight,
rank choice by energy and by FLOPs budget, and complexity reports the new FLOPs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import fc.np_ops as npo
from fc.errors import PassError
from fc.ir import Graph, verify
from fc.ir.complexity import complexity
from fc.passes.lowrank import RankChoice, decompose
from fc.testing import check_close, rel_l2

T = torch.from_numpy


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _conv_graph(cin=6, cout=8, k=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1),
                bias=True, activation="", group=1, hw=(9, 10), w=None) -> Graph:
    rng = _rng(1)
    g = Graph("conv")
    x = g.add_input("x", (2, cin, *hw))
    w = rng.standard_normal((cout, cin // group, *k)).astype(np.float32) if w is None else w
    ins = [x, g.add_const("conv1.weight", w)]
    if bias:
        ins.append(g.add_const("conv1.bias", rng.standard_normal(cout).astype(np.float32)))
    node = g.add_node("Conv", ins, {"strides": strides, "pads": pads, "dilations": dilations,
                                    "group": group, "activation": activation}, name="conv1",
                      provenance=["features.0"])
    g.outputs = [node.output]
    return g


def _gemm_graph(k=12, n=7, trans_a=0, trans_b=1, alpha=1.0, beta=1.0, activation="") -> Graph:
    rng = _rng(2)
    g = Graph("gemm")
    x = g.add_input("x", (k, 3) if trans_a else (3, k))
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    node = g.add_node("Gemm", [x, g.add_const("fc.weight", w),
                               g.add_const("fc.bias", rng.standard_normal(n).astype(np.float32))],
                      {"transA": trans_a, "transB": trans_b, "alpha": alpha, "beta": beta,
                       "activation": activation}, name="fc")
    g.outputs = [node.output]
    return g


def _x(g: Graph, seed: int = 3) -> np.ndarray:
    return _rng(seed).standard_normal(g.inputs[0].shape).astype(np.float32)


def _torch_conv(g: Graph, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The layer of ``g`` (before decomposition) with weight ``w``, in torch."""
    node = g.node_by_name("conv1")
    a = node.attrs
    top, left, bottom, right = a["pads"]
    xt = F.pad(T(x), (left, right, top, bottom))
    b = T(node.inputs[2].const) if len(node.inputs) > 2 else None
    y = F.conv2d(xt, T(w), b, stride=a["strides"], dilation=a["dilations"], groups=a["group"])
    return (torch.relu(y) if a["activation"] == "relu" else y).numpy()


def _torch_gemm(g: Graph, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    node = g.node_by_name("fc")
    a = node.attrs
    xt = T(x).T if a["transA"] else T(x)
    wt = T(w) if a["transB"] else T(w).T  # (N, K)
    y = a["alpha"] * (xt @ wt.T) + a["beta"] * T(node.inputs[2].const)
    return (torch.relu(y) if a["activation"] == "relu" else y).numpy()


def _product_weight(g: Graph, name: str) -> np.ndarray:
    """The single weight the two factors of ``name`` amount to, from the graph's constants."""
    first, second = g.node_by_name(f"{name}_lowrank"), g.node_by_name(name)
    f0, f1 = first.inputs[1].const.astype(np.float64), second.inputs[1].const.astype(np.float64)
    if second.op_type == "Gemm":
        if second.attrs["transB"]:
            return f1 @ f0  # (N, r) @ (r, K)
        return f0 @ f1
    if f1.shape[2:] == (1, 1):  # channel: (M, r) @ (r, C*kh*kw)
        return np.einsum("mr,rckl->mckl", f1[:, :, 0, 0], f0)
    return np.einsum("mrj,rci->mcij", f1[:, :, 0, :], f0[..., 0])  # spatial


CONV_CASES = [
    pytest.param({}, "channel", id="channel_3x3_bias"),
    pytest.param({"strides": (2, 2), "pads": (0, 1, 2, 1), "bias": False}, "channel",
                 id="channel_stride2_asym_pads_nobias"),
    pytest.param({"dilations": (2, 1), "activation": "relu"}, "channel", id="channel_dil2_relu"),
    pytest.param({"k": (1, 1), "pads": (0, 0, 0, 0)}, "channel", id="channel_1x1"),
    pytest.param({}, "spatial", id="spatial_3x3_bias"),
    pytest.param({"strides": (2, 1), "pads": (1, 0, 2, 1), "activation": "relu"}, "spatial",
                 id="spatial_stride21_asym_pads_relu"),
    pytest.param({"k": (3, 5), "strides": (1, 2), "dilations": (1, 2), "pads": (1, 2, 1, 3),
                  "bias": False}, "spatial", id="spatial_3x5_stride12_dil12"),
]


@pytest.mark.parametrize("kwargs, scheme", CONV_CASES)
def test_conv_full_rank_is_the_layer(kwargs, scheme):
    g = _conv_graph(**kwargs)
    w = g.initializers["conv1.weight"].const
    m, c, kh, kw = w.shape
    full = min(m, c * kh * kw) if scheme == "channel" else min(c * kh, m * kw)
    x = _x(g)
    [rep] = decompose(g, RankChoice(rank=full, scheme=scheme))
    verify(g)
    assert not rep.skipped and rep.rank == rep.full_rank == full
    assert [n.op_type for n in g] == ["Conv", "Conv"]
    assert [n.provenance for n in g] == [("features.0",), ("features.0",)]
    assert sorted(g.initializers) == sorted(["conv1.0.weight", "conv1.1.weight"]
                                            + (["conv1.bias"] if kwargs.get("bias", True) else []))
    assert rep.weight_error < 1e-7 and rep.energy_kept == pytest.approx(1.0)
    check_close(npo.run(g, {"x": x})["conv1_out"], _torch_conv(_conv_graph(**kwargs), x, w),
                op="Conv")


@pytest.mark.parametrize("kwargs, scheme", CONV_CASES)
def test_conv_truncated_error_is_discarded_energy(kwargs, scheme):
    """rel_l2(W_r, W) = sqrt(sum_{i>r} s_i^2 / sum s_i^2), with torch's singular values; the
    two layers compute one Conv with W_r."""
    g = _conv_graph(**kwargs)
    w = g.initializers["conv1.weight"].const
    m, c, kh, kw = w.shape
    mat = w.reshape(m, -1) if scheme == "channel" else w.transpose(1, 2, 0, 3).reshape(c * kh, -1)
    s = torch.linalg.svdvals(T(mat).double()).numpy()
    rank = max(1, len(s) // 3)
    [rep] = decompose(g, RankChoice(rank=rank, scheme=scheme))
    verify(g)
    discarded = math.sqrt(np.sum(s[rank:] ** 2) / np.sum(s**2))
    w_r = _product_weight(g, "conv1")
    assert rep.weight_error == pytest.approx(discarded, rel=1e-9)
    assert rel_l2(w_r, w) == pytest.approx(discarded, rel=1e-5)
    assert rep.energy_kept == pytest.approx(1 - discarded**2, rel=1e-9)
    x = _x(g)
    check_close(npo.run(g, {"x": x})["conv1_out"],
                _torch_conv(_conv_graph(**kwargs), x, w_r.astype(np.float32)), op="Conv")


GEMM_CASES = [
    pytest.param({}, id="transB"),
    pytest.param({"trans_b": 0, "alpha": 0.5, "beta": 2.0}, id="alpha_beta"),
    pytest.param({"trans_a": 1, "activation": "relu"}, id="transA_relu"),
]


@pytest.mark.parametrize("kwargs", GEMM_CASES)
def test_gemm_full_rank_and_truncated(kwargs):
    g = _gemm_graph(**kwargs)
    w = g.initializers["fc.weight"].const
    x = _x(g)
    [rep] = decompose(g, RankChoice(rank=7))
    verify(g)
    assert [n.op_type for n in g] == ["Gemm", "Gemm"] and rep.full_rank == 7
    check_close(npo.run(g, {"x": x})["fc_out"], _torch_gemm(_gemm_graph(**kwargs), x, w), op="Gemm")

    g = _gemm_graph(**kwargs)
    s = torch.linalg.svdvals(T(w).double()).numpy()
    [rep] = decompose(g, RankChoice(rank=3))
    w_r = _product_weight(g, "fc")
    assert rel_l2(w_r, w) == pytest.approx(math.sqrt(np.sum(s[3:] ** 2) / np.sum(s**2)), rel=1e-5)
    check_close(npo.run(g, {"x": x})["fc_out"],
                _torch_gemm(_gemm_graph(**kwargs), x, w_r.astype(np.float32)), op="Gemm")


def _known_spectrum(s: list[float], m: int = 8, c: int = 2) -> np.ndarray:
    """A (m, c, 3, 3) Conv weight whose channel matrix has singular values ``s``."""
    rng = _rng(5)
    u, _ = np.linalg.qr(rng.standard_normal((m, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((c * 9, len(s))))
    return ((u * np.asarray(s)) @ v.T).reshape(m, c, 3, 3).astype(np.float32)


@pytest.mark.parametrize("energy, rank", [pytest.param(0.5, 1, id="half"),
                                          pytest.param(0.8, 2, id="eighty"),
                                          pytest.param(0.99, 4, id="ninety_nine")])
def test_rank_by_energy_is_the_smallest_that_keeps_it(energy, rank):
    # energies 16/21.31, 20/21.31, 21/21.31, 21.25/21.31, ...: s = 4, 2, 1, 0.5, 0.25
    w = _known_spectrum([4, 2, 1, 0.5, 0.25])
    g = _conv_graph(cin=2, cout=8, w=w, hw=(16, 16))
    [rep] = decompose(g, RankChoice(energy=energy))
    assert rep.rank == rank and not rep.skipped
    assert rep.energy_kept >= energy
    total = 16 + 4 + 1 + 0.25 + 0.0625
    assert rep.energy_kept == pytest.approx(sum([16, 4, 1, 0.25, 0.0625][:rank]) / total, rel=1e-5)


@pytest.mark.parametrize("budget", [pytest.param(0.2, id="budget20"),
                                    pytest.param(0.5, id="budget50")])
def test_rank_by_flops_budget_and_complexity(budget):
    g = _conv_graph(cin=16, cout=32, hw=(12, 12))
    before = complexity(g).dense_flops
    [rep] = decompose(g, RankChoice(flops=budget))
    after = complexity(g).dense_flops
    assert rep.flops_before == before and rep.flops_after == after
    assert after <= budget * before
    per_rank = 2 * 12 * 12 * (16 * 9 + 32)  # N*Ho*Wo * (C*kh*kw + M)
    assert after + per_rank > budget * before  # the largest rank within the budget
    assert rep.rank == after // per_rank


def test_spatial_flops_match_complexity():
    g = _conv_graph(cin=8, cout=8, k=(3, 3), strides=(2, 2), hw=(11, 12))
    [rep] = decompose(g, RankChoice(rank=3, scheme="spatial"))
    assert rep.flops_after == complexity(g).dense_flops < rep.flops_before


@pytest.mark.parametrize("graph, choice, reason", [
    pytest.param(lambda: _conv_graph(cin=8, cout=8, group=4), RankChoice(rank=1),
                 "grouped convolution (group=4)", id="grouped"),
    pytest.param(lambda: _conv_graph(k=(1, 1), pads=(0, 0, 0, 0)), RankChoice(rank=1, scheme="spatial"),
                 "a 1x1 kernel has no spatial factorization", id="spatial_1x1"),
    pytest.param(lambda: _conv_graph(cin=2, cout=8), RankChoice(energy=1.0),
                 "saves no FLOPs (break-even rank 5)", id="energy_needs_too_high_a_rank"),
])
def test_skipped_layers_are_left_alone(graph, choice, reason):
    g = graph()
    before = [(n.op_type, dict(n.attrs)) for n in g]
    [rep] = decompose(g, choice)
    assert reason in rep.skipped
    assert [(n.op_type, dict(n.attrs)) for n in g] == before
    assert rep.flops_after == rep.flops_before


def test_per_layer_choices_exclude_and_errors():
    g = _gemm_graph()
    assert decompose(g, RankChoice(rank=1), exclude=["fc"]) == []
    with pytest.raises(PassError, match=r"rank 9 exceeds the full rank 7"):
        decompose(g, RankChoice(rank=9))
    with pytest.raises(PassError, match=r"no Conv/Gemm layer named \['nope'\]"):
        decompose(g, RankChoice(rank=1), layers={"nope": RankChoice(rank=2)})
    with pytest.raises(PassError, match="exactly one of rank, energy, flops"):
        RankChoice(rank=2, energy=0.5)
    [rep] = decompose(g, RankChoice(energy=0.1), layers={"fc.weight": RankChoice(rank=2)})
    assert rep.rank == 2
