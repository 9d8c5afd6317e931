"""Numerics helpers shared by fc's tests and reports: one ``check_close`` and one tolerance
table, with the vocabulary of DESIGN.md (``max_abs``, ``rel_l2`` = distance, ``cosine``,
``sqnr_db``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["TOLERANCES", "tolerance", "check_close", "rel_l2", "max_abs", "cosine", "sqnr_db",
           "MODEL_REL_L2", "MODEL_TOLERANCES", "model_rel_l2", "onnx_with_seeded_weights",
           "ACTIVATION_EXAMPLES", "torch_activation", "activation_cases", "as_float64",
           "fp32_noise_ensemble"]

# fp32 per-op default; every override is listed here with its reason.
DEFAULT_TOL = {"rtol": 1e-5, "atol": 1e-6}
TOLERANCES: dict[str, dict[str, float]] = {
    # Long reductions (K = C*kh*kw up to thousands) accumulate in a different order than
    # the oracle's GEMM: the error grows like sqrt(K) * eps * |x||w|.
    "Conv": {"rtol": 1e-4, "atol": 1e-5},
    "ConvTranspose": {"rtol": 1e-4, "atol": 1e-5},
    "Gemm": {"rtol": 1e-4, "atol": 1e-5},
    "MatMul": {"rtol": 1e-4, "atol": 1e-5},
    # Transcendentals: numpy's and torch's libm differ by a few ulp.
    "Gelu": {"rtol": 1e-5, "atol": 1e-5},
    "Erf": {"rtol": 1e-5, "atol": 1e-6},
    "Pow": {"rtol": 1e-5, "atol": 1e-5},
    # x / (bias + alpha/size * sum)^beta: pow of an accumulated sum.
    "LRN": {"rtol": 1e-5, "atol": 1e-5},
    # Mean/variance over many elements, then a division.
    "LayerNormalization": {"rtol": 1e-4, "atol": 1e-5},
    "InstanceNormalization": {"rtol": 1e-4, "atol": 1e-5},
    "ReduceSum": {"rtol": 1e-5, "atol": 1e-5},
    "ReduceMean": {"rtol": 1e-5, "atol": 1e-6},
    # Linear interpolation weights computed in float32 vs float64 by the oracle.
    "Resize": {"rtol": 1e-5, "atol": 1e-5},
}
# A whole model against its oracle (relative L2 distance).
MODEL_REL_L2 = 1e-5
# Whole models whose fp32 comparisons cannot stay within MODEL_REL_L2, each with its measured
# reason; every other model is held to MODEL_REL_L2. Key: "<frontend>:<model>" (the input
# size is the test's). The reason is always one: an fp32 result of the model (the source
# framework's, fc's executor's or the frozen .pb's) lies more than half of 1e-5 from the same
# model in float64 (random weights through a deep network amplify rounding), so two correct
# fp32 evaluations can lie up to the sum of their errors apart; the tests check that it still
# holds. The "tf:" rows are measured on keras.applications with fc.zoo.tf's seeded weights and
# two seeded images (tests/frontend/tf/test_zoo.py; "Keras fp32" = TF's oneDNN kernels). The
# bounds are ~1.6x the largest distance measured.
MODEL_TOLERANCES: dict[str, float] = {
    # 32x32: Keras fp32 9.4e-6 from fp64, fc's executor 9.1e-6 (fused IR 8.2e-6); fused IR vs
    # Keras 1.3e-5, the .pb of the IR for reconstruct vs fc 9.8e-6.
    "tf:mobilenet_v2": 2e-5,
    # 64x64: Keras fp32 2.9e-5 from fp64, fc's executor 2.5e-5 (fused IR 2.6e-5); fused IR vs
    # Keras 3.8e-5, the .pb of the IR for reconstruct (TF's kernels) vs fc 3.6e-5.
    "tf:resnet50": 6e-5,
    # 64x64: Keras fp32 1.4e-5 from fp64, fc's executor 4.2e-6; fused IR vs Keras 1.5e-5, the
    # .pb of the IR for reconstruct vs fc 1.3e-5.
    "tf:efficientnet_b0": 2.5e-5,
    # 75x75: Keras fp32 1.2e-5 from fp64, fc's executor 1.1e-5; fused IR vs Keras 1.6e-5, the
    # .pb of the IR for reconstruct vs fc 1.6e-5.
    "tf:inception_v3": 2.5e-5,
    # MXNet zoo, 224x224 (inceptionv3 299x299), seeded weights (fc.zoo.mxnet); each row holds
    # two tests. (1) The .pb of the IR against fc's executor (tests/reconstruct/tf/
    # test_models.py, input seed 0): resnet50_v1b: fc's executor in fp32 lies 1.3e-5 (fused IR
    # 1.4e-5) from itself in float64, the .pb (TF's kernels) 1.6e-5 / 1.4e-5; .pb vs fc 1.2e-5.
    # The others, fc's fp32 noise beside the largest .pb / trainable vs fc distance:
    # inceptionv3 2.4e-5 vs 2.4e-5; resnet50_v1 1.4e-5 vs 1.2e-5; resnet50_v2 1.0e-5 vs
    # 1.0e-5; resnet101_v1b 8.2e-5 vs 7.2e-5; resnet152_v1b 2.8e-4 vs 2.6e-4 (deep seeded
    # ResNets amplify rounding). In float64 the .pb agrees with fc to < 1e-9. (2) fc against
    # mxnet's own forward pass (tests/frontend/mxnet/test_zoo_import.py, input seed 1; mxnet's
    # oneDNN kernels): the largest of fc vs mxnet fp32 (both IRs) and fc vs mxnet float64,
    # beside mxnet fp32's own distance from mxnet float64: resnet50_v1b 2.1e-5 (the fused IR)
    # vs 1.6e-5; resnet50_v1 2.1e-5 vs 1.5e-5; resnet50_v2 1.5e-5 vs 1.1e-5; inceptionv3
    # 3.1e-5 vs 2.2e-5; resnet101_v1b 1.0e-4 vs 7.7e-5; resnet152_v1b 4.1e-4 vs 3.0e-4;
    # vgg16_bn 1.4e-5 vs 1.1e-5. Every other zoo model stays <= 7.2e-6 in both tests. In
    # float64 fc agrees with mxnet to < 1e-10. The bounds are ~1.6x the largest of both tests.
    "mxnet:resnet50_v1b": 3.5e-5,
    "mxnet:inceptionv3": 5e-5,
    "mxnet:resnet50_v1": 3.5e-5,
    "mxnet:resnet50_v2": 2.5e-5,
    "mxnet:resnet101_v1b": 1.7e-4,
    "mxnet:resnet152_v1b": 6.5e-4,
    # TF's rounding (the .pb's and the trainable form's): TF's oneDNN Conv2D in fp32 lies
    # 2.3-3.2x further from float64 than fc's convolution and than TF's own Eigen kernel
    # (TF_ENABLE_ONEDNN_OPTS=0), measured on zfnet512's four K >= 2304 convolutions, each alone
    # on its float64 input (K=4608: oneDNN 8.9e-7, Eigen 2.5e-7, fc 2.9e-7); its MatMul, which
    # kernel depends on the graph around it: zfnet512's K=18432 MatMul+BiasAdd+Relu lies 4.5e-7
    # from float64 in a Session (the .pb), 1.8e-6 in a tf.function (the trainable form), fc's
    # 3.3e-7, Eigen's 5.8e-7. Semantics are exact (the float64 .pb agrees with fc to < 1e-13)
    # and LRN is not it (TF's 6e-8, fc's 4.4e-8). Both IRs, 224x224, seeded weights:
    # zfnet512 (ONNX), at the softmax (the logits'): fc 4.2e-6 (6.2e-7) from float64, the .pb
    # 7.8e-6 (1.4e-6), the trainable form 3.0e-5 (2.3e-6); vs fc the .pb 1.2e-5, the trainable
    # form 2.8e-5 (the softmax over logits -20..23 amplifies 6-13x); with Eigen's kernels the
    # .pb is 3.8e-6 from fc. vgg16_bn (MXNet): fc 7.1e-6, the .pb 1.15e-5, .pb vs fc 1.21e-5;
    # with Eigen's kernels 6.5e-6 and 6.8e-6; against mxnet see (2) above.
    "onnx:zfnet512": 4.5e-5,
    "mxnet:vgg16_bn": 2.2e-5,
}


def model_rel_l2(key: str) -> float:
    """The rel-L2 bound of whole model ``key`` ("tf:resnet50"): its ``MODEL_TOLERANCES`` row,
    else ``MODEL_REL_L2``."""
    return MODEL_TOLERANCES.get(key, MODEL_REL_L2)


def tolerance(op: str | None = None) -> dict[str, float]:
    return dict(TOLERANCES.get(op, DEFAULT_TOL)) if op else dict(DEFAULT_TOL)


def max_abs(y: Any, r: Any) -> float:
    y, r = np.asarray(y, np.float64), np.asarray(r, np.float64)
    return float(np.max(np.abs(y - r))) if y.size else 0.0


def rel_l2(y: Any, r: Any) -> float:
    """||y - r|| / ||r|| (the "distance" of fc's reports); 0 when both are zero."""
    y, r = np.asarray(y, np.float64), np.asarray(r, np.float64)
    num, den = np.linalg.norm((y - r).ravel()), np.linalg.norm(r.ravel())
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return float(num / den)


def cosine(y: Any, r: Any) -> float:
    y, r = np.asarray(y, np.float64).ravel(), np.asarray(r, np.float64).ravel()
    den = np.linalg.norm(y) * np.linalg.norm(r)
    return float(np.dot(y, r) / den) if den else 1.0


def sqnr_db(y: Any, r: Any) -> float:
    d = rel_l2(y, r)
    return float("inf") if d == 0 else float(-20 * np.log10(d))


def check_close(actual: Any, expected: Any, *, op: str | None = None, rtol: float | None = None,
                atol: float | None = None, rel_l2_max: float | None = None, what: str = "") -> None:
    """Assert shape, then dtype, then values (elementwise, or by rel-L2 with ``rel_l2_max``)."""
    a, e = np.asarray(actual), np.asarray(expected)
    label = f"{what}: " if what else ""
    assert a.shape == e.shape, f"{label}shape {a.shape} != expected {e.shape}"
    assert a.dtype == e.dtype, f"{label}dtype {a.dtype} != expected {e.dtype}"
    if rel_l2_max is not None:
        d = rel_l2(a, e)
        assert d <= rel_l2_max, (f"{label}rel_l2 {d:.3g} > {rel_l2_max:g} "
                                 f"(max_abs {max_abs(a, e):.3g})")
        return
    tol = tolerance(op)
    tol.update({k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None})
    np.testing.assert_allclose(a, e, err_msg=label, equal_nan=True, **tol)


def onnx_with_seeded_weights(proto: Any, seed: int = 0) -> Any:
    """The model with seeded random weights, and its logits (the Softmax input) as an extra
    output: each ConstantOfShape weight becomes an initializer (listed as an input too, as
    IR v3 does), and every BatchNormalization gets statistics that match unit-scale
    activations (the files' real ones belong to the trained weights and would blow the random
    activations up to ~1e5, saturating the Softmax into a one-hot that compares trivially)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    rng = np.random.default_rng(seed)
    new: dict[str, np.ndarray] = {}
    keep = []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in inits[node.input[0]])
            if len(shape) >= 2:
                scale = np.float32(np.sqrt(2 / np.prod(shape[1:])))
                new[node.output[0]] = rng.standard_normal(shape, np.float32) * scale
            else:
                new[node.output[0]] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            continue
        keep.append(node)
    for node in keep:
        if node.op_type == "BatchNormalization":
            c = (inits.get(node.input[1]) if node.input[1] in inits else new[node.input[1]]).shape
            for name, arr in zip(node.input[1:], (rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                                                  rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c))):
                new[name] = arr.astype(np.float32)
    for name, arr in new.items():
        if name in inits:
            g.initializer.remove(next(t for t in g.initializer if t.name == name))
        else:
            g.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                         list(arr.shape)))
        g.initializer.append(numpy_helper.from_array(arr, name))
    del g.node[:]
    g.node.extend(keep)
    if keep[-1].op_type == "Softmax":
        g.output.append(onnx.ValueInfoProto(name=keep[-1].input[0]))
    return model


def as_float64(graph: Any) -> Any:
    """A copy of ``graph`` computing in float64: every float32 constant and value widened.
    The golden executor's kernels are dtype-generic, so this run is the model's arithmetic
    without float32 rounding: the yardstick for how much of a disagreement between two fp32
    engines is their summation order (fp32 noise) rather than a difference in semantics."""
    from fc.ir.clone import clone

    wide = clone(graph)
    for v in wide.values():
        if v.const is not None and v.const.dtype == np.float32:
            v.const = v.const.astype(np.float64)
        if v.dtype == "float32":
            v.dtype = "float64"
    return wide


def fp32_noise_ensemble(graph: Any, inputs: dict[str, np.ndarray], *, samples: int = 16,
                        seed: int = 0, randomize: bool = True) -> list[float]:
    """The distances from exact arithmetic (the float64 run of ``as_float64``) of ``samples``
    simulated fp32 engines, sorted: a deep model's fp32 noise is a distribution, of which the
    golden executor's own fp32 run is one draw, and another fp32 engine (onnxruntime, TF)
    another. Each simulated engine runs the float64 graph and, at every node, adds the error
    fc's fp32 kernel makes there (the kernel on the node's inputs rounded to float32, minus
    the float64 kernel on the same inputs), each element's error with a random sign: the same
    magnitudes of rounding, in another direction, as a summation order or a transcendental
    approximation other than fc's would give them (stochastic rounding, Monte Carlo
    arithmetic). On Keras EfficientNetB0 (random input) the draws span 25x: 30 of them
    1.3e-5..4.1e-4 at the softmax, fc's own 4.0e-5, onnxruntime's 2.4e-4. A distance is the
    worst rel-L2 over the graph's outputs. ``randomize=False`` keeps every error's sign, which
    replays fc's fp32 run (on EfficientNetB0, both IRs, to the bit): the check that the errors
    simulated are fc's."""
    from fc.np_ops import run
    from fc.np_ops.interpreter import Interpreter

    wide = as_float64(graph)
    feeds = {k: np.asarray(v, np.float64) if np.asarray(v).dtype == np.float32 else v
             for k, v in inputs.items()}
    exact = run(wide, feeds)
    rng = np.random.default_rng(seed)

    def narrow(a: Any) -> Any:
        return a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a

    class Perturbed(Interpreter):
        def run_node(self, node, args):
            wide_out = super().run_node(node, args)
            fp32_out = super().run_node(node, [narrow(a) for a in args])
            out = []
            for y, y32 in zip(wide_out, fp32_out):
                if isinstance(y, np.ndarray) and y.dtype == np.float64 and y.size:
                    err = np.asarray(y32, np.float64) - y
                    y = y + (np.where(rng.random(y.shape) < 0.5, err, -err) if randomize
                             else err)
                out.append(y)
            return tuple(out)

    dists = []
    for _ in range(samples):
        got = Perturbed(wide).run(feeds)
        dists.append(max(rel_l2(got[k], exact[k]) for k in exact))
    return sorted(dists)


def assert_same_outputs(before: Any, after: Any, feeds: dict[str, np.ndarray], *,
                        op: str | None = None) -> None:
    """A rewritten graph computes what the original did: same output names, same values
    through the golden executor (for pass tests: the rewrite must keep the semantics)."""
    from fc.np_ops import run

    ref, got = run(before, feeds), run(after, feeds)
    assert list(got) == list(ref), f"outputs {list(got)} != {list(ref)}"
    for name in ref:
        check_close(got[name], ref[name], op=op, what=name)


def apply_pass(pass_: Any, build: Any, *, count: int, remaining: list[str]) -> tuple[Any, Any]:
    """Pass tests' common start: build the graph twice, run ``pass_`` on the second copy,
    check its rewrite count and the op types left, verify it; return (before, after)."""
    from fc.ir.verify import verify

    before, after = build(), build()
    result = pass_(after)
    assert (result.count, result.modified) == (count, count > 0), result
    assert [n.op_type for n in after] == remaining
    verify(after)
    return before, after


def assert_refused(rule: Any, graph: Any, reason: str, *, at: str | None = None,
                   single: bool = True) -> None:
    """A fusion ``rule`` leaves ``graph`` exactly as it was and gives ``reason`` (at node
    ``at``, when named; as its only refusal, when ``single``)."""
    from fc.ir.verify import verify
    from fc.passes.infra import FusionPass

    before = [(n.op_type, dict(n.attrs)) for n in graph]
    p = FusionPass(rule)
    assert p(graph).count == 0
    assert [(n.op_type, dict(n.attrs)) for n in graph] == before
    if single:
        assert len(p.refusals) == 1, p.refusals
    refusals = dict(p.refusals)
    found = refusals[at] if at is not None else p.refusals[0][1]
    assert reason in found, p.refusals
    verify(graph)


# -- activations: the independent oracle of every entry of fc.ir.activations ------------------
#: fused activation -> the (act_alpha, act_beta) its tests try (defaults, typical, edge ones)
ACTIVATION_EXAMPLES: dict[str, tuple[tuple[float, float], ...]] = {
    "relu": ((0.0, 0.0),),
    "clip": ((0.0, 6.0), (-0.5, 0.7), (0.6, 0.2)),  # relu6; general; min > max: max wins
    "leaky_relu": ((0.01, 0.0), (0.2, 0.0)),
    "elu": ((1.0, 0.0), (0.7, 0.0)),
    "sigmoid": ((0.0, 0.0),),
    "tanh": ((0.0, 0.0),),
    "hard_sigmoid": ((0.2, 0.5), (1 / 6, 0.5), (-0.3, 0.4)),  # ONNX default, torch's, slope < 0
    "hard_swish": ((0.0, 0.0),),
    "silu": ((0.0, 0.0),),
    "gelu": ((0.0, 0.0), (1.0, 0.0)),  # exact, tanh approximation
}


def torch_activation(activation: str, alpha: float = 0.0, beta: float = 0.0
                     ) -> Callable[[Any], Any]:
    """torch's implementation of the fused ``(activation, alpha, beta)``: the oracle that a
    new entry of ``fc.ir.activations`` needs here (``KeyError`` until it has one)."""
    import torch
    import torch.nn.functional as F

    table: dict[str, Callable[[Any], Any]] = {
        "relu": F.relu,
        "clip": lambda t: torch.clamp(t, alpha, beta),
        "leaky_relu": lambda t: F.leaky_relu(t, alpha),
        "elu": lambda t: F.elu(t, alpha),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        # torch's F.hardsigmoid has fixed (1/6, 0.5): the formula, for any alpha and beta
        "hard_sigmoid": lambda t: torch.clamp(alpha * t + beta, 0.0, 1.0),
        "hard_swish": F.hardswish,
        "silu": F.silu,
        "gelu": lambda t: F.gelu(t, approximate="tanh" if alpha else "none"),
    }
    return table[activation]


def activation_cases() -> list[tuple[str, float, float]]:
    """Every ``(activation, alpha, beta)`` of ``ACTIVATION_EXAMPLES``, for parametrizing."""
    return [(name, a, b) for name, examples in ACTIVATION_EXAMPLES.items() for a, b in examples]
