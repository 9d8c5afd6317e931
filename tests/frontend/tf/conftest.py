"""Shared helpers of the TensorFlow frontend tests: Keras (or TensorFlow itself) is the
oracle; every imported graph is verified, run through the golden executor (both IRs), saved
and reloaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fc.api
import fc.ir
from fc.frontend.tf import import_tf
from fc.passes.pipeline import compile_graph
from fc.testing import MODEL_REL_L2, check_close


def seeded(shape: Sequence[int], seed: int = 0, low: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, low + 2.0, tuple(shape)).astype(np.float32)
    return rng.standard_normal(tuple(shape)).astype(np.float32)


def check_import(model: Any, feeds: dict[str, np.ndarray] | np.ndarray, expected: Any, tmp: Path,
                 *, op: str | None = None, rel_l2_max: float | None = MODEL_REL_L2,
                 **kwargs: Any) -> fc.ir.Graph:
    """Import ``model``, compare both IRs with ``expected`` (one array or a list, in output
    order), round-trip the files; returns the IR for reconstruct."""
    graph = import_tf(model, **kwargs)
    fc.ir.verify(graph)
    exp = expected if isinstance(expected, list) else [expected]
    fused, _ = compile_graph(graph, verify=True)
    for which, g in (("reconstruct", graph), ("fused", fused)):
        got = list(fc.api.run(g, feeds).values())
        assert len(got) == len(exp)
        for a, e in zip(got, exp):
            e = np.asarray(e)
            if op is not None:
                check_close(a, e, op=op, what=which)
            else:
                check_close(a, e, rel_l2_max=rel_l2_max, what=which)
    fc.ir.save(graph, tmp / "m")
    again = fc.ir.load(tmp / "m_graph.json")
    assert again.layouts == graph.layouts
    return graph


def freeze_function(fn: Callable[..., Any], specs: Sequence[Any], path: Path) -> Path:
    """``fn`` traced at ``specs`` and frozen to a GraphDef .pb (TF's own freezing)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = tf.function(fn).get_concrete_function(*specs)
    gd = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    path.write_bytes(gd.SerializeToString())
    return path


@pytest.fixture(name="check_keras")
def _check_keras(tmp_path: Path) -> Callable[..., fc.ir.Graph]:
    """``check_keras(model, x, op=None)``: Keras' own output is the reference."""

    def check(model: Any, x: np.ndarray, **kwargs: Any) -> fc.ir.Graph:
        kwargs.setdefault("input_shapes", x.shape)  # traced at the batch it is run at
        expected = model(x, training=False)
        expected = [np.asarray(t) for t in expected] if isinstance(expected, list | tuple) \
            else np.asarray(expected)
        return check_import(model, x, expected, tmp_path, **kwargs)

    return check


@pytest.fixture(name="check_tf_function")
def _check_tf_function(tmp_path: Path) -> Callable[..., fc.ir.Graph]:
    """``check_tf_function(fn, x, op=None)``: ``fn`` frozen to a .pb and imported from it;
    TF running ``fn`` is the reference."""

    def check(fn: Callable[..., Any], x: np.ndarray, **kwargs: Any) -> fc.ir.Graph:
        import tensorflow as tf

        pb = freeze_function(fn, [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype), name="x")],
                             tmp_path / "fn.pb")
        out = fn(tf.constant(x))
        expected = [np.asarray(t) for t in out] if isinstance(out, list | tuple) else np.asarray(out)
        return check_import(pb, x, expected, tmp_path, **kwargs)

    return check


@pytest.fixture(name="seeded")
def _seeded() -> Callable[..., np.ndarray]:
    return seeded
