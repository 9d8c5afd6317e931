"""Shared fixtures of the IR tests: a small valid IR built with the IR API, and its files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fc.ir import Graph, save


def build_small_graph() -> Graph:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm on a (1, 3, 8, 8) input, with weights.

    Deterministic (fixed seed), so two calls build identical graphs.
    """
    rng = np.random.default_rng(0)
    g = Graph("small")
    x = g.add_input("x", (1, 3, 8, 8))
    w = g.add_const("conv_w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = g.add_const("conv_b", rng.standard_normal(4).astype(np.float32))
    fw = g.add_const("fc_w", rng.standard_normal((10, 64)).astype(np.float32))
    fb = g.add_const("fc_b", rng.standard_normal(10).astype(np.float32))
    y = g.add_node("Conv", [x, w, b], {"pads": (1, 1, 1, 1)}, name="conv",
                   provenance=["features.0"]).output
    y = g.add_node("Relu", [y], name="relu").output
    y = g.add_node("MaxPool", [y], {"kernel_shape": (2, 2), "strides": (2, 2)}, name="pool").output
    y = g.add_node("Flatten", [y], name="flatten").output
    y = g.add_node("Gemm", [y, fw, fb], {"transB": 1}, name="fc", provenance=["classifier"]).output
    g.outputs.append(y)
    return g


@pytest.fixture
def small_graph() -> Graph:
    return build_small_graph()


@pytest.fixture
def graph_builder() -> Callable[[], Graph]:
    """The builder itself, for tests that need two separately built identical graphs."""
    return build_small_graph


@pytest.fixture
def saved_ir(tmp_path: Path) -> tuple[Path, Path]:
    """The small graph saved under ``tmp_path``: (graph json, params npz)."""
    return save(build_small_graph(), tmp_path / "small")
