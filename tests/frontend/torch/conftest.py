"""Helpers for the PyTorch frontend's tests: import a module, then compare the source module,
the golden executor on both IRs and the torch reconstruction, at the traced batch and at
another one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fc.frontend.torch import import_torch
from fc.ir import Graph
from fc.np_ops import run
from fc.passes.pipeline import compile_graph
from fc.reconstruct.torch import reconstruct, run_numpy
from fc.testing import MODEL_REL_L2, check_close


def inputs(shapes: list[tuple[int, ...]], batch: int | None = None, seed: int = 0
           ) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch or s[0], *s[1:])).astype(np.float32) for s in shapes]


def source_outputs(module: torch.nn.Module, xs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(x) for x in xs))
    return [o.numpy() for o in (out if isinstance(out, tuple | list) else (out,))]


def check_all_pairs(module: torch.nn.Module, graph: Graph, xs: list[np.ndarray],
                    rel_l2: float = MODEL_REL_L2) -> None:
    """source vs golden (IR for reconstruct, fused IR) vs reconstructed torch modules."""
    feeds = dict(zip((v.name for v in graph.inputs), xs))
    expected = source_outputs(module, xs)
    fused = compile_graph(graph)[0]
    results = {"source": expected}
    for tag, g in (("reconstruct_ir", graph), ("fused_ir", fused)):
        results[f"golden {tag}"] = list(run(g, feeds).values())
        results[f"torch {tag}"] = list(run_numpy(reconstruct(g), feeds).values())
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for k, (x, y) in enumerate(zip(results[a], results[b])):
                check_close(x, y, rel_l2_max=rel_l2, what=f"output {k}: {a} vs {b}")


def import_and_check(module: torch.nn.Module, shapes: list[tuple[int, ...]], *,
                     other_batch: int = 3) -> Graph:
    module = module.eval()
    xs = inputs(shapes)
    graph = import_torch(module, [torch.from_numpy(x) for x in xs]).graph
    check_all_pairs(module, graph, xs)
    check_all_pairs(module, graph, inputs(shapes, batch=other_batch, seed=1))
    return graph


@pytest.fixture
def torch_roundtrip():
    """``import_and_check`` for tests (conftest modules are not importable by name)."""
    return import_and_check
