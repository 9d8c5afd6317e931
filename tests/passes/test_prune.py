"""Filter pruning: the criteria against torch's norms and distances, which filters are
chosen, what is zeroed (filters, bias, the BN after the layer) and the masks, and which
layers may be pruned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fc.np_ops as npo
from fc.errors import PassError
from fc.ir import verify
from fc.passes.prune import filter_scores, prunable_layers, prune, select_filters

T = torch.from_numpy


def _filters(seed: int = 0, m: int = 9, shape: tuple[int, ...] = (4, 3, 3)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, *shape)).astype(np.float32)


@pytest.mark.parametrize("criterion, oracle", [
    pytest.param("l1", lambda f: torch.linalg.vector_norm(f.flatten(1), 1, dim=1), id="l1"),
    pytest.param("l2", lambda f: torch.linalg.vector_norm(f.flatten(1), 2, dim=1), id="l2"),
    pytest.param("fpgm", lambda f: torch.cdist(f.flatten(1), f.flatten(1)).sum(1), id="fpgm"),
])
def test_scores_match_torch(criterion, oracle):
    f = _filters()
    got = filter_scores(f, criterion)
    np.testing.assert_allclose(got, oracle(T(f).double()).numpy(), rtol=1e-10)


def test_fpgm_prunes_the_filter_nearest_the_median_not_the_smallest():
    # Four filters around a centre, the centre, and a small one far away: FPGM prunes the
    # centre (the others stand in for it), L2 the small one.
    f = np.array([[9, 0], [11, 0], [10, 1], [10, -1], [10, 0], [0.1, 0]], np.float32)
    assert select_filters(filter_scores(f, "fpgm"), 0.17).tolist() == [4]
    assert select_filters(filter_scores(f, "l2"), 0.17).tolist() == [5]


@pytest.mark.parametrize("ratio, m, count", [
    pytest.param(0.5, 8, 4, id="half_of_8"), pytest.param(0.5, 9, 4, id="half_of_9_floors"),
    pytest.param(0.3, 10, 3, id="exact_point3"), pytest.param(0.99, 4, 3, id="keeps_one"),
    pytest.param(0.0, 4, 0, id="none"),
])
def test_select_counts(ratio, m, count):
    assert len(select_filters(np.arange(m, dtype=float), ratio)) == count


def test_select_ties_keep_the_lower_index_and_bad_ratio_raises():
    assert select_filters(np.array([1.0, 0.0, 0.0, 0.0]), 0.5).tolist() == [1, 2]
    with pytest.raises(PassError, match=r"ratio 1.0 must be in \[0, 1\)"):
        select_filters(np.zeros(3), 1.0)


class _Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.fc1 = nn.Linear(6 * 16, 10)
        self.fc2 = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.dw(torch.relu(self.conv2(y)))
        y = torch.relu(self.fc1(torch.flatten(nn.functional.max_pool2d(y, 2), 1)))
        return self.fc2(y)


@pytest.fixture
def chain(torch_ir):
    torch.manual_seed(0)
    return torch_ir(_Chain(), (2, 3, 8, 8))


def test_prunable_layers(chain):
    layers = {k: (v if isinstance(v, str) else "ok") for k, v in prunable_layers(chain).items()}
    names = {n.name: n for n in chain if n.op_type in ("Conv", "Gemm")}
    by_weight = {n.inputs[1].name.split(".")[0]: n.name for n in names.values()}
    assert layers[by_weight["conv1"]] == layers[by_weight["conv2"]] == layers[by_weight["fc1"]] == "ok"
    assert layers[by_weight["dw"]] == "grouped Conv (group=6)"
    assert layers[by_weight["fc2"]] == "its output reaches a graph output with no layer in between"


def test_prune_zeroes_filters_bias_and_bn(chain):
    rows = {n.inputs[1].name: n for n in chain if n.op_type == "Conv"}
    conv1 = rows["conv1.weight"]
    w = conv1.inputs[1].const
    expected = np.sort(np.argsort(np.abs(w).reshape(8, -1).sum(1), kind="stable")[:4])
    result = prune(chain, {"conv1.weight": 0.5}, criterion="l1")
    verify(chain)
    [layer] = result.layers
    assert layer.name == conv1.name and layer.pruned == tuple(expected.tolist())
    assert layer.zeroed == ("conv1.bias", "bn1.weight", "bn1.bias")
    w2 = conv1.inputs[1].const
    assert np.all(w2[expected] == 0) and np.array_equal(np.delete(w2, expected, 0),
                                                        np.delete(w, expected, 0))
    assert set(result.masks) == {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"}
    assert result.masks["conv1.weight"].shape == w.shape
    assert np.array_equal(np.where(result.masks["conv1.weight"].reshape(8, -1).all(1))[0], expected)
    # The pruned channels are exactly zero after the BN (whatever its statistics).
    bn = conv1.outputs[0].users[0]
    out = npo.run(chain, {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8))
                          .astype(np.float32)}, intermediate=True)[bn.output.name]
    assert np.all(out[:, expected] == 0) and np.all(np.abs(out).sum((0, 2, 3))[
        np.setdiff1d(np.arange(8), expected)] > 0)


def test_prune_gemm_and_default_ratio_skip_first_exclude(chain):
    result = prune(chain, {}, default=0.5, criterion="fpgm", skip_first=True, exclude=["fc1"])
    pruned = {layer.name: len(layer.pruned) for layer in result.layers}
    conv2 = next(n for n in chain if n.inputs[1:2] and n.inputs[1].name == "conv2.weight")
    assert pruned == {conv2.name: 3}  # conv1 skipped (first), fc1 excluded, dw/fc2 refused
    # conv2 has no bias and no BN, but the depthwise Conv after its ReLU would make the
    # pruned channels its bias: its filters and bias of those channels are zeroed too.
    assert result.layers[0].zeroed == ("dw.weight", "dw.bias")
    assert set(result.masks) == {"conv2.weight", "dw.weight", "dw.bias"}
    dw = chain.initializers["dw.weight"].const
    assert np.array_equal(np.where(np.all(dw == 0, axis=(1, 2, 3)))[0], result.layers[0].pruned)

    gemm = next(n for n in chain if n.inputs[1:2] and n.inputs[1].name == "fc1.weight")
    result = prune(chain, {"fc1": 0.3, "fc2": 0.5})
    by_name = {layer.name: layer for layer in result.layers}
    assert len(by_name[gemm.name].pruned) == 3
    assert np.all(gemm.inputs[1].const[list(by_name[gemm.name].pruned)] == 0)  # transB: rows
    fc2 = next(n.name for n in chain if n.inputs[1:2] and n.inputs[1].name == "fc2.weight")
    assert by_name[fc2].skipped.startswith("its output reaches a graph output")


def test_prune_errors(chain):
    with pytest.raises(PassError, match=r"no Conv/ConvTranspose/Gemm/MatMul layer named \['nope'\]"):
        prune(chain, {"nope": 0.5})
    with pytest.raises(PassError, match="criterion 'l3' not one of"):
        prune(chain, {}, criterion="l3")
    with pytest.raises(PassError, match=r"ratio 1.5 for 'conv1.weight' must be in \[0, 1\)"):
        prune(chain, {"conv1.weight": 1.5})
