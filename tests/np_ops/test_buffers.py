"""fc.np_ops.buffers: large outputs reuse buffers nothing references, never a live one; the
executor's runs reuse them from one run to the next. Results are compared with torch and with
runs that allocate every output anew."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.np_ops
from fc.ir import Graph
from fc.np_ops import buffers, interpreter
from fc.testing import check_close

BIG = (buffers.MIN_BYTES // 4 + 100,)  # float32 elements: just over the pooling threshold


def addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def fresh_pool():
    buffers.clear()
    yield
    buffers.clear()


def test_a_freed_buffer_is_handed_out_again_and_a_live_one_never():
    with buffers.reuse():
        a = buffers.empty(BIG, np.float32)
        first = addr(a)
        b = buffers.empty(BIG, np.float32)  # a is alive: another buffer
        assert addr(b) != first
        del a
        c = buffers.empty(BIG, np.float32)  # a is gone: its buffer again
        assert addr(c) == first
        view = c[::2]
        del c
        d = buffers.empty(BIG, np.float32)  # a view keeps the buffer alive
        assert addr(d) not in (first, addr(b))
        assert not np.may_share_memory(d, view)
        e = buffers.empty((BIG[0] // 2, 2), np.float32)  # same bytes, another shape
        assert e.shape == (BIG[0] // 2, 2) and e.flags.c_contiguous
        assert not any(np.may_share_memory(e, x) for x in (b, d, view))


def test_small_outputs_and_calls_outside_a_run_are_plain_arrays():
    small = buffers.empty((10, 10), np.float32)
    big = buffers.empty(BIG, np.float32)
    assert small.base is None and big.base is None
    assert buffers.held_bytes() == 0
    with buffers.reuse():
        assert buffers.empty((10, 10), np.float32).base is None
        assert buffers.empty(BIG, np.float32).base is not None
    assert buffers.held_bytes() == BIG[0] * 4


def test_a_run_keeps_only_the_buffers_it_used():
    with buffers.reuse():
        buffers.empty(BIG, np.float32)
        buffers.empty((BIG[0] + 64,), np.float32)
    assert buffers.held_bytes() == (2 * BIG[0] + 64) * 4
    with buffers.reuse():  # nested blocks are one run
        with buffers.reuse():
            buffers.empty(BIG, np.float32)
        assert buffers.held_bytes() == (2 * BIG[0] + 64) * 4
    assert buffers.held_bytes() == BIG[0] * 4  # the other size went at the end of the run


def test_each_thread_has_its_own_pool():
    with buffers.reuse():
        mine = buffers.empty(BIG, np.float32)
        del mine
        seen = []

        def other():
            with buffers.reuse():
                seen.append(addr(buffers.empty(BIG, np.float32)))

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert addr(buffers.empty(BIG, np.float32)) != seen[0]


def _convs(batch: int = 2) -> Graph:
    """Conv -> Relu -> Conv -> Conv: feature maps of 2-4 MB, over the pooling threshold."""
    rng = np.random.default_rng(3)
    g = Graph("convs")
    x = g.add_input("x", (batch, 8, 96, 96))
    y = x
    for i, (cin, cout) in enumerate([(8, 32), (32, 32), (32, 16)]):
        w = g.add_const(f"w{i}", (rng.standard_normal((cout, cin, 3, 3)) / 9).astype(np.float32))
        b = g.add_const(f"b{i}", rng.standard_normal(cout).astype(np.float32))
        y = g.add_node("Conv", [y, w, b], {"pads": (1, 1, 1, 1)}, name=f"conv{i}").output
        if i == 0:
            y = g.add_node("Relu", [y], name="relu").output
    g.outputs.append(y)
    return g


def _torch_convs(g: Graph, x: np.ndarray) -> np.ndarray:
    y = torch.from_numpy(x)
    for i in range(3):
        y = F.conv2d(y, torch.from_numpy(g.initializers[f"w{i}"].const.copy()),
                     torch.from_numpy(g.initializers[f"b{i}"].const.copy()), padding=1)
        if i == 0:
            y = F.relu(y)
    return y.numpy()


def test_runs_reuse_their_buffers_and_never_overwrite_what_the_caller_holds():
    g = _convs()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 8, 96, 96)).astype(np.float32) for _ in range(3)]
    out = g.outputs[0].name
    outs = [fc.np_ops.run(g, {"x": x})[out] for x in xs]  # all three held
    for x, y in zip(xs, outs):  # no later run wrote into an earlier one's output
        check_close(y, _torch_convs(g, x), op="Conv")
    assert len({addr(y) for y in outs}) == 3

    def addresses() -> dict[str, int]:  # an observer that keeps no array
        seen = {}
        fc.np_ops.run(g, {"x": xs[0]}, observer=lambda node, o: seen.update({node.name: addr(o[0])}))
        return seen

    first, second = addresses(), addresses()
    for name in ("conv0", "conv1", "conv2"):  # the same buffers, run after run
        assert first[name] == second[name]
    assert first["conv2"] not in {addr(y) for y in outs}


def test_an_observer_may_keep_what_it_sees():
    """Arrays an observer holds are never reused by later nodes: what it kept equals what a
    run allocating every output anew hands it."""
    g = _convs()
    x = np.random.default_rng(5).standard_normal((2, 8, 96, 96)).astype(np.float32)

    def observed() -> dict[str, np.ndarray]:
        kept = {}
        fc.np_ops.run(g, {"x": x}, observer=lambda node, outs: kept.update({node.name: outs[0]}))
        return {k: np.array(v) for k, v in kept.items()}

    pooled = observed()
    fc.np_ops.run(g, {"x": x[::-1].copy()})  # a run between: any freed buffer is reused
    old = interpreter._REUSE_BUFFERS
    interpreter._REUSE_BUFFERS = False
    try:
        fresh = observed()
    finally:
        interpreter._REUSE_BUFFERS = old
    assert pooled.keys() == fresh.keys()
    for name in pooled:
        np.testing.assert_array_equal(pooled[name], fresh[name])
