"""Shared helpers of the TF reconstructor tests: one-node IR graphs, and the check that the
frozen .pb computes what the golden executor computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import fc.api
from fc.ir import Graph
from fc.ir.layout import to_source_perm
from fc.testing import check_close


def rand(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, np.float32)


def one_node(op: str, shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any] | None = None, *,
             consts: Mapping[int, np.ndarray] | None = None, layout: str | None = None,
             num_outputs: int = 1) -> Graph:
    """``op`` on graph inputs of ``shapes`` (IR layout), with constant inputs at the
    positions in ``consts`` (``None`` there omits an optional input). ``layout`` records
    the source layout of every 4-D graph input and output."""
    g = Graph(op.lower())
    ins = []
    consts = dict(consts or {})
    k = 0
    for i in range(len(shapes) + len(consts)):
        if i in consts:
            ins.append(None if consts[i] is None else g.add_const(f"w{i}", consts[i]))
        else:
            ins.append(g.add_input(f"x{k}", shapes[k]))
            k += 1
    node = g.add_node(op, ins, dict(attrs or {}), name="node", num_outputs=num_outputs)
    g.outputs.extend(node.outputs)
    if layout:
        for v in (*g.inputs, *g.outputs):
            if len(v.shape) == len(layout):
                g.layouts[v.name] = layout
    return g


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs in the graph's boundary layout."""
    out = {}
    for i, v in enumerate(graph.inputs):
        x = rand(seed + i, *v.shape)
        layout = graph.layouts.get(v.name)
        out[v.name] = np.ascontiguousarray(x.transpose(to_source_perm(layout))) if layout else x
    return out


def assert_frozen_matches(graph: Graph, *, op: str | None = None, seed: int = 0,
                          batch: int | None = None, rel_l2_max: float | None = None) -> Any:
    """Freeze ``graph``, run the .pb through TensorFlow, and compare every output with the
    golden executor's (both in the boundary layout); returns the frozen graph."""
    from fc.reconstruct.tf import freeze

    feeds = feeds_for(graph, seed)
    if batch is not None:
        feeds = {k: np.concatenate([v] * batch) for k, v in feeds.items()}
    frozen = freeze(graph)
    got = frozen.run(feeds)
    ref = fc.api.run(graph, feeds)
    assert list(got) == list(ref)
    for name in ref:
        if rel_l2_max is not None:
            check_close(got[name], ref[name], rel_l2_max=rel_l2_max, what=name)
        else:
            check_close(got[name], ref[name], op=op or graph.nodes[0].op_type, what=name)
    return frozen


# The helpers as fixtures: test modules cannot import this conftest by name.
@pytest.fixture(name="one_node")
def _one_node() -> Any:
    return one_node


@pytest.fixture(name="check_frozen")
def _check_frozen() -> Any:
    return assert_frozen_matches
