"""Pruning sensitivity: each point is the torch model with that layer's weakest filters
zeroed (the oracle picks them with torch's norms), the ratio table meets the budget, and the
CSV / YAML / plot are written and read back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from fc.errors import PassError
from fc.ir import Graph
from fc.passes.prune import prune
from fc.passes.prune_config import load_prune_config
from fc.passes.sensitivity import (
    SensitivityTable,
    accuracy_metric,
    distance_metric,
    plot,
    ratios_for,
    sensitivity,
    write_csv,
    write_ratios_yaml,
)
from fc.testing import rel_l2

RATIOS = [0.0, 0.25, 0.5, 0.75]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(y.mean((2, 3)))


@pytest.fixture
def net(torch_ir) -> tuple[nn.Module, Graph, list[dict[str, np.ndarray]]]:
    torch.manual_seed(0)
    model = Net().eval()
    g = torch_ir(model, (4, 3, 6, 6))
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((4, 3, 6, 6)).astype(np.float32)} for _ in range(3)]
    return model, g, batches


def _torch_pruned(model: nn.Module, layer: str, ratio: float, x: np.ndarray) -> np.ndarray:
    """``model`` with the floor(ratio * M) lowest-L1 filters of ``layer`` (and their bias)
    zeroed, on ``x``."""
    m = {"conv1": model.conv1, "conv2": model.conv2}[layer]
    w = m.weight.detach().clone()
    b = m.bias.detach().clone()
    n = int(ratio * len(w))
    idx = torch.argsort(torch.linalg.vector_norm(w.flatten(1).double(), 1, dim=1), stable=True)[:n]
    with torch.no_grad():
        saved = m.weight.clone(), m.bias.clone()
        m.weight[idx] = 0
        m.bias[idx] = 0
        out = model(torch.from_numpy(x)).numpy()
        m.weight.copy_(saved[0])
        m.bias.copy_(saved[1])
    assert torch.equal(m.weight, w) and torch.equal(m.bias, b)
    return out


def _layer_names(g: Graph) -> dict[str, str]:
    return {n.inputs[1].name.split(".")[0]: n.name for n in g if n.op_type == "Conv"}


def test_distance_curve_is_the_pruned_torch_model(net):
    model, g, batches = net
    table = sensitivity(g, RATIOS, distance_metric(g, batches), metric="distance", criterion="l1")
    names = _layer_names(g)
    assert list(table.curves) == [names["conv1"], names["conv2"]]  # fc: output-facing
    assert table.baseline == 0.0 and table.layers[names["conv1"]] == ("Conv", 8)
    ref = np.concatenate([model(torch.from_numpy(b["x"])).detach().numpy() for b in batches])
    for layer in ("conv1", "conv2"):
        for r, got in zip(RATIOS, table.curves[names[layer]]):
            pruned = np.concatenate([_torch_pruned(model, layer, r, b["x"]) for b in batches])
            assert got == pytest.approx(-rel_l2(pruned, ref), rel=1e-4, abs=1e-6), (layer, r)
    assert table.curves[names["conv1"]][-1] < -0.05  # pruning 3/4 of a layer shows


def test_accuracy_curve_and_ratio_table(net, tmp_path):
    model, g, batches = net
    # labels: the unpruned model's own predictions, so the baseline is exactly 1
    labels = [model(torch.from_numpy(b["x"])).argmax(1).numpy() for b in batches]
    progress = []
    table = sensitivity(g, RATIOS, accuracy_metric(batches, labels), criterion="l1",
                        progress=lambda done, total, what: progress.append((done, total)))
    assert table.baseline == 1.0
    assert progress[0] == (0, 9) and progress[-1] == (9, 9)
    names = _layer_names(g)
    for layer in ("conv1", "conv2"):
        for r, got in zip(RATIOS, table.curves[names[layer]]):
            preds = [_torch_pruned(model, layer, r, b["x"]).argmax(1) for b in batches]
            want = np.mean(np.concatenate(preds) == np.concatenate(labels))
            assert got == pytest.approx(want), (layer, r)

    budget = 0.1
    ratios = ratios_for(table, budget)
    for name, curve in table.curves.items():
        ok = [r for r, m in zip(RATIOS, curve) if 1.0 - m <= budget and r > 0]
        assert ratios.get(name) == (max(ok) if ok else None)

    write_csv(table, tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 2 * len(RATIOS) and float(rows[1]["ratio"]) == 0.25
    assert float(rows[1]["accuracy"]) == table.curves[rows[1]["layer"]][1]
    write_ratios_yaml(table, ratios, budget, tmp_path / "r.yaml")
    cfg = load_prune_config(tmp_path / "r.yaml")
    assert cfg.prune_ratios == ratios and cfg.criterion == "l1"
    assert "accuracy drop is at most 0.1" in (tmp_path / "r.yaml").read_text()
    prune(g, cfg.prune_ratios, criterion=cfg.criterion)  # the file is a usable config
    plot(table, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_for_picks_the_largest_within_budget():
    t = SensitivityTable("accuracy", "l1", 0.9, [0.2, 0.4, 0.6],
                         {"a": [0.9, 0.88, 0.5], "b": [0.7, 0.9, 0.9], "c": [0.5, 0.4, 0.3]})
    assert ratios_for(t, 0.02) == {"a": 0.4, "b": 0.6}


def test_errors(net):
    _, g, batches = net
    with pytest.raises(PassError, match=r"ratios \[1.5\] must be in \[0, 1\)"):
        sensitivity(g, [1.5], distance_metric(g, batches))
    fc = next(n.name for n in g if n.op_type == "Gemm")
    with pytest.raises(PassError, match="its output reaches a graph output"):
        sensitivity(g, [0.5], distance_metric(g, batches), layers=[fc])
