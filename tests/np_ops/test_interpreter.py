"""The executor's hooks: per-run kernel overrides, observers that stream (dead tensors freed
while observing), ``Interpreter.run_node``, errors naming the node, batch sizes other than
the compiled one. Model outputs are compared with torch."""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.np_ops
from fc.errors import ExecutionError
from fc.ir import Graph
from fc.np_ops import Interpreter, get_kernel
from fc.testing import check_close

T = torch.from_numpy


def small_graph(batch: int = 1) -> Graph:
    """Conv(pad 1) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm, (batch, 3, 8, 8) input."""
    rng = np.random.default_rng(0)
    g = Graph("small")
    x = g.add_input("x", (batch, 3, 8, 8))
    w = g.add_const("conv_w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = g.add_const("conv_b", rng.standard_normal(4).astype(np.float32))
    fw = g.add_const("fc_w", rng.standard_normal((10, 64)).astype(np.float32))
    fb = g.add_const("fc_b", rng.standard_normal(10).astype(np.float32))
    y = g.add_node("Conv", [x, w, b], {"pads": (1, 1, 1, 1)}, name="conv").output
    y = g.add_node("Relu", [y], name="relu").output
    y = g.add_node("MaxPool", [y], {"kernel_shape": (2, 2), "strides": (2, 2)}, name="pool").output
    y = g.add_node("Flatten", [y], name="flatten").output
    y = g.add_node("Gemm", [y, fw, fb], {"transB": 1}, name="fc").output
    g.outputs.append(y)
    return g


def torch_small(g: Graph, x: np.ndarray, act=F.relu) -> np.ndarray:
    c = {k: T(v.const.copy()) for k, v in g.initializers.items()}
    y = act(F.conv2d(T(x), c["conv_w"], c["conv_b"], padding=1))
    y = F.max_pool2d(y, 2).flatten(1)
    return F.linear(y, c["fc_w"], c["fc_b"]).numpy()


def chain_graph(n: int, shape: tuple[int, ...]) -> Graph:
    """n elementwise nodes in a row (Neg, Relu alternating): each output is dead once the
    next node ran, so a streaming run holds O(1) tensors and intermediate=True holds n."""
    g = Graph("chain")
    y = g.add_input("x", shape)
    for i in range(n):
        y = g.add_node("Neg" if i % 2 == 0 else "Relu", [y], name=f"n{i}").output
    g.outputs.append(y)
    return g


def _x(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)


# -- overrides ------------------------------------------------------------------------------

def test_override_applies_to_one_run_only():
    g, x = small_graph(), _x(1)
    builtin = get_kernel("Relu")

    def leaky(x):  # a Relu replaced by a leaky one, for this run
        return np.where(x > 0, x, np.float32(0.1) * x)

    out = fc.np_ops.run(g, x, overrides={"Relu": leaky})
    check_close(out[g.outputs[0].name], torch_small(g, x, lambda y: F.leaky_relu(y, 0.1)),
                op="Gemm")
    assert get_kernel("Relu") is builtin
    out = fc.np_ops.run(g, x)  # the next run uses the registered kernel again
    check_close(out[g.outputs[0].name], torch_small(g, x), op="Gemm")


def test_override_receives_complete_attributes():
    g, x = small_graph(), _x(1)
    seen = {}

    def conv(x, w, b=None, **attrs):
        seen.update(attrs)
        return get_kernel("Conv")(x, w, b, **attrs)

    out = fc.np_ops.run(g, x, overrides={"Conv": conv})
    check_close(out[g.outputs[0].name], torch_small(g, x), op="Gemm")
    assert seen["pads"] == (1, 1, 1, 1) and seen["group"] == 1 and seen["activation"] == ""


@pytest.mark.parametrize("overrides, match", [
    pytest.param({"NoSuchOp": lambda x: x}, "override for 'NoSuchOp', which has no schema", id="unknown_op"),
    pytest.param({"LeakyRelu": lambda x, *, slope: x}, r"unknown \['slope'\]", id="bad_keyword"),
    pytest.param({"Relu": 3}, "not callable", id="not_callable"),
])
def test_bad_override_raises_before_running(overrides, match):
    with pytest.raises(ExecutionError, match=match):
        fc.np_ops.run(small_graph(), _x(1), overrides=overrides)


def test_run_node_subclass():
    """torch.fx style: run() goes through run_node, which a subclass can wrap."""
    g, x = small_graph(), _x(2)

    class ZeroConv(Interpreter):
        def __init__(self, graph):
            super().__init__(graph)
            self.ran: list[str] = []

        def run_node(self, node, args):
            self.ran.append(node.name)
            outs = super().run_node(node, args)
            return tuple(np.zeros_like(o) for o in outs) if node.op_type == "Conv" else outs

    interp = ZeroConv(g)
    out = interp.run(x)[g.outputs[0].name]
    assert interp.ran == [n.name for n in g]
    zero = np.zeros((2, 64), np.float32)
    fb = g.initializers["fc_b"].const
    check_close(out, F.linear(T(zero), T(g.initializers["fc_w"].const), T(fb)).numpy())


# -- observers ------------------------------------------------------------------------------

def test_observer_sees_every_node_in_order_with_its_outputs():
    g, x = small_graph(), _x(2)
    seen: list[tuple[str, tuple[np.ndarray, ...]]] = []
    out = fc.np_ops.run(g, x, observer=lambda node, outs: seen.append((node.name, outs)))
    assert [name for name, _ in seen] == [n.name for n in g]
    everything = fc.np_ops.run(g, x, intermediate=True)
    for node, (_, outs) in zip(g, seen):
        assert isinstance(outs, tuple) and len(outs) == len(node.outputs)
        for v, arr in zip(node.outputs, outs):
            np.testing.assert_array_equal(arr, everything[v.name], err_msg=node.name)
    check_close(out[g.outputs[0].name], torch_small(g, x), op="Gemm")
    assert seen[-1][1][0] is out[g.outputs[0].name]


def test_observer_with_overrides_sees_overridden_outputs():
    g, x = small_graph(), _x(1)
    seen = {}
    fc.np_ops.run(g, x, overrides={"Relu": np.abs},
                  observer=lambda node, outs: seen.setdefault(node.name, outs[0]))
    np.testing.assert_array_equal(seen["relu"], np.abs(seen["conv"]))


N_CHAIN, CHAIN_SHAPE = 16, (1, 4, 128, 128)  # 256 KiB per tensor
TENSOR_BYTES = int(np.prod(CHAIN_SHAPE)) * 4


def _held_while_observing(intermediate: bool) -> tuple[int, int]:
    """(peak number of chain tensors alive at an observer call, peak traced bytes)."""
    g = chain_graph(N_CHAIN, CHAIN_SHAPE)
    x = np.random.default_rng(0).standard_normal(CHAIN_SHAPE).astype(np.float32)
    refs: list[weakref.ref] = []
    peak_alive = 0

    def observer(node, outs):
        nonlocal peak_alive
        refs.append(weakref.ref(outs[0]))
        peak_alive = max(peak_alive, sum(r() is not None for r in refs))
        float(outs[0].max())  # a statistic, as a calibration observer keeps

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fc.np_ops.run(g, x, observer=observer, intermediate=intermediate)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(refs) == N_CHAIN
    del result
    return peak_alive, peak


def test_observer_streams_dead_tensors_freed():
    alive, peak = _held_while_observing(intermediate=False)
    # At each call only the node's output: its input, dead now, was freed before the call.
    assert alive == 1, alive
    assert peak < 4 * TENSOR_BYTES, peak / TENSOR_BYTES
    # The measurement can see hoarding: intermediate=True holds the whole chain.
    alive_all, peak_all = _held_while_observing(intermediate=True)
    assert alive_all == N_CHAIN
    assert peak_all > (N_CHAIN - 1) * TENSOR_BYTES


def test_unused_output_freed_after_observer():
    """An output no node reads (Split's second half here) is dropped after the observer."""
    g = Graph("split")
    x = g.add_input("x", (1, 4, 8, 8))
    a, b = g.add_node("Split", [x], {"axis": 1, "split": (2, 2)}, name="split",
                      num_outputs=2).outputs
    y = g.add_node("Relu", [a], name="relu").output
    g.outputs.append(y)
    refs = {}
    fc.np_ops.run(g, np.ones((1, 4, 8, 8), np.float32),
                  observer=lambda node, outs: refs.setdefault(node.name, [weakref.ref(o)
                                                                          for o in outs]))
    assert refs["split"][1]() is None


# -- errors and batch -----------------------------------------------------------------------

def test_kernel_error_names_the_node():
    g = Graph("bad")
    x = g.add_input("x", (1, 3, 4, 4))
    y = g.add_node("Reshape", [x], {"shape": (1, 48)}, name="fixed_reshape").output
    g.outputs.append(y)
    with pytest.raises(ExecutionError, match=r"node 'fixed_reshape' \(Reshape\)"):
        fc.np_ops.run(g, np.ones((2, 3, 4, 4), np.float32))


def test_override_error_names_the_node():
    def broken(x):
        raise ValueError("boom")

    with pytest.raises(ExecutionError, match=r"node 'relu' \(Relu\) failed on inputs "
                                             r"\[\[1, 4, 8, 8\]\]: ValueError: boom"):
        fc.np_ops.run(small_graph(), _x(1), overrides={"Relu": broken})


def test_wrong_number_of_outputs_names_the_node():
    with pytest.raises(ExecutionError, match=r"node 'relu' \(Relu\): kernel returned 2 outputs"):
        fc.np_ops.run(small_graph(), _x(1), overrides={"Relu": lambda x: (x, x)})


@pytest.mark.parametrize("batch", [pytest.param(3, id="batch3"), pytest.param(8, id="batch8")])
def test_batch_other_than_compiled(batch):
    g, x = small_graph(batch=1), _x(batch)
    shapes = {}
    interp = Interpreter(g, observer=lambda node, outs: shapes.setdefault(node.name,
                                                                          outs[0].shape))
    out = interp.run(x)[g.outputs[0].name]
    check_close(out, torch_small(g, x), op="Gemm")
    assert shapes["conv"] == (batch, 4, 8, 8) and shapes["flatten"] == (batch, 64)
    # The same interpreter runs the compiled batch afterwards.
    check_close(interp.run(x[:1])[g.outputs[0].name], torch_small(g, x[:1]), op="Gemm")


# -- the residual Add fused into its Conv's epilogue ----------------------------------------

def _weights(g: Graph, rng: np.random.Generator):
    """const(name, *shape): a float32 initializer of g, standard normal * 0.3."""
    def const(name, *shape):
        return g.add_const(name, (rng.standard_normal(shape) * 0.3).astype(np.float32))
    return const


def residual_graph(conv_b_act: str = "", extra_use: bool = False) -> Graph:
    """A bottleneck's tail: c1 = Conv(x) (channels-last); c2 = Conv(c1, pad 1); Add(c2, c1)
    + relu; then Add(Conv 1x1(out), x) with x the NCHW graph input (not fusable: layout).
    ``extra_use``: c2 is also a graph output (not fusable)."""
    g = Graph("residual")
    x = g.add_input("x", (2, 4, 6, 6))
    const = _weights(g, np.random.default_rng(1))
    c1 = g.add_node("Conv", [x, const("w1", 4, 4, 1, 1), const("b1", 4)], name="c1").output
    c2 = g.add_node("Conv", [c1, const("w2", 4, 4, 3, 3), const("b2", 4)],
                    {"pads": (1, 1, 1, 1), "activation": conv_b_act}, name="c2").output
    s = g.add_node("Add", [c2, c1], {"activation": "relu"}, name="add1").output
    c3 = g.add_node("Conv", [s, const("w3", 4, 4, 1, 1)], name="c3").output
    g.outputs.append(g.add_node("Add", [x, c3], name="add2").output)
    if extra_use:
        g.outputs.append(c2)
    return g


def residual_torch(g: Graph, x: np.ndarray, conv_b_act: str = "") -> torch.Tensor:
    c = {k: T(v.const) for k, v in g.initializers.items()}
    xt = T(x)
    c1 = F.conv2d(xt, c["w1"], c["b1"])
    c2 = F.conv2d(c1, c["w2"], c["b2"], padding=1)
    c2 = F.relu(c2) if conv_b_act == "relu" else c2
    return xt + F.conv2d(F.relu(c2 + c1), c["w3"])


@pytest.mark.parametrize(("conv_act", "extra_use", "fused"), [
    pytest.param("", False, 1, id="fused"),
    pytest.param("relu", False, 0, id="conv_has_activation"),
    pytest.param("", True, 0, id="conv_output_also_a_graph_output"),
])
def test_residual_add_fused_into_conv(monkeypatch, conv_act, extra_use, fused):
    import fc.np_ops.conv

    calls = []  # per call of conv_residual: whether it fused

    def spy(*a, **k):
        y = real(*a, **k)
        calls.append(y is not None)
        return y

    real = fc.np_ops.conv.conv_residual
    monkeypatch.setattr(fc.np_ops.conv, "conv_residual", spy)
    g = residual_graph(conv_act, extra_use)
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 6)).astype(np.float32)
    out = fc.np_ops.run(g, x)
    check_close(out[g.outputs[0].name], residual_torch(g, x, conv_act).numpy(), op="Add")
    # add2's other operand is the NCHW graph input: conv_residual declines it (layout)
    assert calls == [True] * fused + [False]
    # An observer sees every node's own output: the fusion keeps the Conv's output beside
    # the sum (keep_conv), and every tensor it sees has the bits of the unfused run's
    seen, plain = {}, {}
    observed = fc.np_ops.run(g, x, observer=lambda n, r: seen.setdefault(n.name, r[0].copy()))
    assert calls == ([True] * fused + [False]) * 2
    np.testing.assert_array_equal(observed[g.outputs[0].name], out[g.outputs[0].name])
    c = {k: T(v.const) for k, v in g.initializers.items()}
    c2 = F.conv2d(F.conv2d(T(x), c["w1"], c["b1"]), c["w2"], c["b2"], padding=1)
    check_close(seen["c2"], (F.relu(c2) if conv_act else c2).numpy(), op="Conv")
    monkeypatch.setattr(fc.np_ops.interpreter, "_FUSE_RESIDUAL", False)
    fc.np_ops.run(g, x, observer=lambda n, r: plain.setdefault(n.name, r[0].copy()))
    assert calls == ([True] * fused + [False]) * 2 and seen.keys() == plain.keys()
    for name in seen:
        np.testing.assert_array_equal(seen[name], plain[name], err_msg=name)


def bottleneck_graph(view_after: bool = False, residual_output: bool = False) -> Graph:
    """x -> c0 = Conv 1x1 (channels-last) -> c1 -> c2 -> Add(c2, c0) + relu: the Add is c0's
    last reader and c2 does not read c0, so the sum may go into c0's memory. ``view_after``:
    v = Identity(c0) (the same array) is added to the sum afterwards; ``residual_output``:
    c0 is also a graph output."""
    g = Graph("bottleneck")
    x = g.add_input("x", (2, 4, 6, 6))
    const = _weights(g, np.random.default_rng(5))
    c0 = g.add_node("Conv", [x, const("w0", 4, 4, 1, 1), const("b0", 4)], name="c0").output
    v = g.add_node("Identity", [c0], name="view").output if view_after else None
    c1 = g.add_node("Conv", [c0, const("w1", 4, 4, 3, 3), const("b1", 4)],
                    {"pads": (1, 1, 1, 1), "activation": "relu"}, name="c1").output
    c2 = g.add_node("Conv", [c1, const("w2", 4, 4, 1, 1), const("b2", 4)], name="c2").output
    s = g.add_node("Add", [c2, c0], {"activation": "relu"}, name="add").output
    if view_after:
        s = g.add_node("Add", [s, v], name="add_view").output
    g.outputs.append(s)
    if residual_output:
        g.outputs.append(c0)
    return g


def test_fused_add_never_writes_into_a_view_of_a_weight():
    """A residual that is a view of a weight (a channels-last Transpose of an initializer,
    as conv_residual takes it) is summed into a new array: writing into it changed the
    weight, and the next run's result."""
    rng = np.random.default_rng(7)
    g = Graph("weight_view")
    x = g.add_input("x", (2, 4, 6, 6))
    w = g.add_const("w", (rng.standard_normal((4, 4, 1, 1)) * 0.3).astype(np.float32))
    nhwc = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    r = g.add_node("Transpose", [g.add_const("r_nhwc", nhwc.copy())], {"perm": (0, 3, 1, 2)},
                   name="to_nchw").output
    c = g.add_node("Conv", [x, w], name="c").output
    s = g.add_node("Add", [c, r], {"activation": "relu"}, name="add").output
    g.outputs.append(s)
    xin = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    first = fc.np_ops.run(g, xin)[s.name]
    np.testing.assert_array_equal(g.initializers["r_nhwc"].const, nhwc)
    np.testing.assert_array_equal(fc.np_ops.run(g, xin)[s.name], first)
    ref = F.relu(F.conv2d(T(xin), T(w.const)) + T(nhwc).permute(0, 3, 1, 2))
    check_close(first, ref.numpy(), op="Add")


@pytest.mark.parametrize(("view_after", "residual_output", "overwrites"), [
    pytest.param(False, False, True, id="dead_residual"),
    pytest.param(True, False, False, id="a_live_view_of_it"),
    pytest.param(False, True, False, id="residual_is_a_graph_output"),
])
def test_fused_add_sums_into_a_dead_residual(monkeypatch, view_after, residual_output,
                                             overwrites):
    """The fused residual Add writes its sum into the residual's memory only when nothing
    can see it: not while another live tensor views it, not for a graph output (nor a graph
    input, as in test_residual_add_fused_into_conv). The outputs are the same bits either
    way, and the caller's input is untouched."""
    import fc.np_ops.conv
    import fc.np_ops.interpreter

    calls = []
    real = fc.np_ops.conv.conv_residual

    def spy(x, w, b, residual, **k):
        y = real(x, w, b, residual, **k)
        calls.append(y is not None and np.shares_memory(y, residual))
        return y

    monkeypatch.setattr(fc.np_ops.conv, "conv_residual", spy)
    g = bottleneck_graph(view_after, residual_output)
    x = np.random.default_rng(6).standard_normal((2, 4, 6, 6)).astype(np.float32)
    x0 = x.copy()
    out = fc.np_ops.run(g, x)
    assert calls == [overwrites]
    np.testing.assert_array_equal(x, x0)
    monkeypatch.setattr(fc.np_ops.interpreter, "_OVERWRITE_RESIDUAL", False)
    plain = fc.np_ops.run(g, x)
    assert calls == [overwrites, False]
    for v in g.outputs:
        assert out[v.name].tobytes() == plain[v.name].tobytes()
    c = {k: T(vv.const) for k, vv in g.initializers.items()}
    c0 = F.conv2d(T(x), c["w0"], c["b0"])
    c1 = F.relu(F.conv2d(c0, c["w1"], c["b1"], padding=1))
    ref = F.relu(F.conv2d(c1, c["w2"], c["b2"]) + c0)
    ref = ref + c0 if view_after else ref
    check_close(out[g.outputs[0].name], ref.numpy(), op="Add")
    if residual_output:
        check_close(out[g.outputs[1].name], c0.numpy(), op="Conv")


def test_conv_residual_declines_other_layouts_and_shapes():
    from fc.np_ops.conv import conv_residual

    x = np.random.default_rng(3).standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((4, 4, 1, 1)).astype(np.float32)
    attrs = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, activation="",
                 act_alpha=0.0, act_beta=0.0, add_activation="", add_alpha=0.0, add_beta=0.0)
    assert conv_residual(x, w, None, x, **attrs) is None  # NCHW residual
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert conv_residual(x, w, None, cl[:, :, :4], **attrs) is None  # shape
    y = conv_residual(x, w, None, cl, **attrs)
    check_close(y, (F.conv2d(T(x), T(w)) + T(x)).numpy(), op="Conv")


# -- a Conv read only by a MaxPool: the bias and activation after the pooling ----------------

def stem_graph(xs, ws, conv_attrs, pool_attrs, bias=True, extra_use=False) -> Graph:
    """Conv (+ bias, activation) -> MaxPool, a network's stem; ``extra_use``: the Conv's
    output is a graph output too (not fusable)."""
    rng = np.random.default_rng(3)
    g = Graph("stem")
    x = g.add_input("x", xs)
    inputs = [x, g.add_const("w", (rng.standard_normal(ws) * 0.3).astype(np.float32))]
    if bias:
        inputs.append(g.add_const("b", rng.standard_normal(ws[0]).astype(np.float32)))
    c = g.add_node("Conv", inputs, conv_attrs, name="conv").output
    g.outputs.append(g.add_node("MaxPool", [c], pool_attrs, name="pool").output)
    if extra_use:
        g.outputs.append(c)
    return g


STEM_POOL = {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}


@pytest.mark.parametrize(("xs", "ws", "conv_attrs", "pool_attrs", "bias", "extra_use", "fused"), [
    pytest.param((1, 3, 40, 40), (16, 3, 7, 7),
                 {"strides": (2, 2), "pads": (3, 3, 3, 3), "activation": "relu"}, STEM_POOL,
                 True, False, True, id="stem_c3_b1"),
    pytest.param((8, 3, 32, 32), (16, 3, 7, 7),
                 {"strides": (2, 2), "pads": (3, 3, 3, 3), "activation": "relu"}, STEM_POOL,
                 True, False, True, id="stem_c3_b8"),
    pytest.param((2, 1, 23, 21), (5, 1, 5, 5), {"strides": (1, 2), "pads": (2, 1, 0, 2)},
                 {"kernel_shape": (3, 2), "strides": (2, 1), "pads": (0, 1, 1, 0),
                  "ceil_mode": 1}, True, False, True, id="c1_no_activation_ceil_mode"),
    pytest.param((8, 4, 17, 17), (9, 4, 3, 3), {"pads": (1, 1, 1, 1), "activation": "relu"},
                 {"kernel_shape": (2, 2), "strides": (2, 2), "dilations": (2, 2)}, False, False,
                 True, id="c4_no_bias_dilated_pool"),
    pytest.param((2, 6, 9, 9), (8, 3, 3, 3), {"group": 2, "activation": "relu"}, STEM_POOL,
                 True, False, True, id="grouped_conv"),
    pytest.param((1, 3, 12, 12), (6, 3, 3, 3), {"activation": "leaky_relu", "act_alpha": 0.1},
                 STEM_POOL, True, False, False, id="leaky_relu_not_fused"),
    pytest.param((1, 3, 12, 12), (6, 3, 3, 3), {"activation": "relu"}, STEM_POOL, True, True,
                 False, id="conv_output_also_a_graph_output"),
    # a 1x1 map: the window's taps at -1 and +1 read only padding (-FLT_MAX, not relu(b))
    pytest.param((1, 3, 3, 3), (6, 3, 3, 3), {"activation": "relu"},
                 {"kernel_shape": (2, 2), "dilations": (2, 2), "pads": (1, 1, 1, 1)}, True,
                 False, None, id="window_of_padding_only"),
])
def test_conv_max_pool_fused(monkeypatch, xs, ws, conv_attrs, pool_attrs, bias, extra_use, fused):
    """A Conv read only by a MaxPool runs as nn.conv_max_pool (bias and relu on the pooled
    map) when that gives the same bits: torch's values, the same bits as the two kernels
    (_FUSE_POOL off), unfused where it would not hold (another activation, another reader,
    a window of padding only)."""
    import fc.np_ops.interpreter
    import fc.np_ops.nn

    calls = []
    real = fc.np_ops.nn.conv_max_pool
    monkeypatch.setattr(fc.np_ops.nn, "conv_max_pool",
                        lambda *a: calls.append(real(*a)) or calls[-1])
    g = stem_graph(xs, ws, conv_attrs, pool_attrs, bias, extra_use)
    x = np.random.default_rng(4).standard_normal(xs).astype(np.float32)
    y = fc.np_ops.run(g, x)[g.outputs[0].name]
    # planned: relu or no activation, no other reader; declined at run time: padding only
    assert [c is not None for c in calls] == {True: [True], False: [], None: [False]}[fused]
    c = {k: T(v.const) for k, v in g.initializers.items()}
    ca = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1,
          **conv_attrs}
    pt, pl, pb, pr = ca["pads"]
    ref = F.conv2d(F.pad(T(x), (pl, pr, pt, pb)), c["w"], c.get("b"), ca["strides"], 0,
                   ca["dilations"], ca["group"])
    ref = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.1)}.get(
        ca.get("activation", ""), lambda t: t)(ref)
    pa = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "ceil_mode": 0,
          **pool_attrs}
    # padded by hand with the lowest float (torch pads with -inf), 2 more at the end for the
    # ceil_mode windows (strides <= 2 here), cropped to fc's size
    pt, pl, pb, pr = pa["pads"]
    low = float(np.finfo(np.float32).min)
    want = F.max_pool2d(F.pad(ref, (pl, pr + 2, pt, pb + 2), value=low), pa["kernel_shape"],
                        pa["strides"], 0, pa["dilations"]).numpy()[..., :y.shape[2], :y.shape[3]]
    check_close(y, want, op="MaxPool")
    monkeypatch.setattr(fc.np_ops.interpreter, "_FUSE_POOL", False)
    y0 = fc.np_ops.run(g, x)[g.outputs[0].name]
    np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))
