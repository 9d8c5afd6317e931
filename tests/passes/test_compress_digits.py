"""End to end on real data: fc's digits CNN (``fc.zoo.torch.digits``, a residual block
included) trained here on scikit-learn's digits and imported by the torch frontend, half of
the filters of its convolutions pruned by FPGM (the two sides of the residual Add together),
the reconstructed torch module fine-tuned with the pruned weights held at zero, the weights
written back, thinned, compiled. The compiled thinned IR keeps the accuracy within one point
and its dense FLOPs (as ``fcc complexity`` prints them) at most 60% of the unpruned
model's."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import fc.np_ops as npo
from fc.cli import main
from fc.frontend.torch import import_torch
from fc.ir import save
from fc.passes.pipeline import compile_graph
from fc.passes.prune import prune
from fc.passes.thin import thin
from fc.reconstruct.torch import reconstruct, write_back
from fc.reconstruct.torch.masks import apply_masks, torch_masks

pytest.importorskip("sklearn")
digits = pytest.importorskip("fc.zoo.torch.digits")


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
         masks: dict[str, torch.Tensor] | None = None) -> None:
    """Adam with a cosine schedule; ``masks`` re-applied after every step."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            if masks is not None:
                apply_masks(model, masks)
        sched.step()
    model.eval()


def _accuracy_torch(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def _accuracy_ir(graph, x: np.ndarray, y: np.ndarray) -> float:
    logits = npo.run(graph, {graph.inputs[0].name: x})[graph.outputs[0].name]
    return float((logits.argmax(1) == y).mean())


def _cli_dense_flops(graph, prefix, capsys) -> float:
    gpath, ppath = save(graph, prefix)
    assert main(["complexity", "--graph-json", str(gpath), "--params-file", str(ppath), "-q"]) == 0
    line = capsys.readouterr().out
    return float(re.search(r"dense_flops: ([0-9.e+]+)", line).group(1))


@pytest.fixture
def one_thread():
    """A model this small trains faster on one thread (and much faster on a busy machine,
    where torch's thread pool waits for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_prune_finetune_thin_compile_digits(tmp_path, capsys, one_thread):
    data = digits.load_digits_data()
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    torch.manual_seed(0)
    model = digits.DigitsCNN(width=32)  # half of it is the zoo's width-16 model
    _fit(model, xtr, ytr, epochs=15, lr=3e-3)
    acc_before = _accuracy_torch(model, xte, yte)
    assert acc_before > 0.98

    graph = import_torch(model, [torch.zeros(1, 1, 8, 8)]).graph
    # the oracle first: the imported IR is the torch model (an example input with standard
    # strides: the frontend refuses one from a numpy [:, None] view, aten.as_strided)
    assert _accuracy_ir(graph, xte, yte) == acc_before
    fused_before = compile_graph(graph)[0]

    result = prune(graph, {}, default=0.5, criterion="fpgm")
    assert sorted((la.filters, len(la.pruned), len(la.tied)) for la in result.layers) == [
        (32, 16, 0), (32, 16, 1), (32, 16, 1), (64, 32, 0)]  # conv1; stem + conv2 tied; head
    acc_pruned = _accuracy_ir(graph, xte, yte)

    module = reconstruct(graph)
    _fit(module, xtr, ytr, epochs=8, lr=3e-3, masks=torch_masks(module, result.masks))
    acc_finetuned = _accuracy_torch(module, xte, yte)
    tuned = write_back(module, graph)
    thinned = thin(tuned)
    assert sorted((la.channels, la.kept) for la in thinned.layers) == [(32, 16)] * 3 + [(64, 32)]
    assert all(not la.reasons for la in thinned.layers)
    fused = compile_graph(tuned)[0]
    acc_after = _accuracy_ir(fused, xte, yte)

    flops_before = _cli_dense_flops(fused_before, tmp_path / "before", capsys)
    flops_after = _cli_dense_flops(fused, tmp_path / "after", capsys)
    print(f"digits: accuracy {acc_before:.4f} -> pruned {acc_pruned:.4f} -> fine-tuned "
          f"{acc_finetuned:.4f} -> thinned+compiled {acc_after:.4f}; dense FLOPs "
          f"{flops_before:.0f} -> {flops_after:.0f} ({flops_after / flops_before:.3f})")
    assert acc_after == pytest.approx(acc_finetuned, abs=1e-9)  # thinning changes nothing
    assert acc_after >= acc_before - 0.01
    assert flops_after <= 0.6 * flops_before
    # half of every layer of the width-32 model is the width-16 model
    from fc.ir.complexity import complexity

    half = import_torch(digits.DigitsCNN(width=16).eval(), [torch.zeros(1, 1, 8, 8)]).graph
    assert flops_after == complexity(compile_graph(half)[0]).dense_flops
