"""The activation table: every fact about an activation function, written once.

An activation exists in the IR in two forms: as a standalone op (``Relu``, ``Clip``,
``Gelu``, ...) and *fused* into a layer, whose ``activation`` / ``act_alpha`` / ``act_beta``
attributes name it (Conv, ConvTranspose, Gemm, Scale and the residual Add carry them; see
``fused_layers``). Each ``Activation`` entry says how the two forms correspond and what the
function guarantees; everything else reads it:

* the schemas (``fc.ir.schemas``): the standalone op's schema (its attributes and defaults)
  and the names a layer's ``activation`` may take;
* the numpy executor (``fc.np_ops.activation``): the fused form runs the standalone op's
  kernel with ``to_attrs(alpha, beta)``, so each function has one numpy implementation;
* the passes: ``fuse_activation`` turns a standalone op into its fused form
  (``fused_form``), ``fold_pad`` asks whether a value is known non-negative
  (``is_non_negative``);
* torch/TF lowerings, ONNX export and quantization map a fused triple back to a standalone
  op (``standalone_form``) and read the sign facts (unsigned activation ranges).

Adding a fusable activation: one entry here, its kernel (``@kernel`` in
``np_ops/activation_kernels.py``) and its oracle (``fc.testing.torch_activation`` and
``ACTIVATION_EXAMPLES``); the tests that cover schemas, kernels and fusion are parametrized
over this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fc.ir.schema import FLOAT, FLT_MAX, STRING, Attr

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "ACTIVATION_ATTRS",
    "by_op_type",
    "fused_form",
    "standalone_form",
    "fused_layers",
    "is_non_negative",
]

#: the attributes a layer with a fused activation carries ("" = no activation)
ACTIVATION_ATTRS: Mapping[str, Attr] = MappingProxyType({
    "activation": Attr(STRING, ""),
    "act_alpha": Attr(FLOAT, 0.0),
    "act_beta": Attr(FLOAT, 0.0),
})

Params = Callable[[float, float], bool]


def _always(alpha: float, beta: float) -> bool:
    return True


def _never(alpha: float, beta: float) -> bool:
    return False


@dataclass(frozen=True)
class Activation:
    """One activation function, in its fused and its standalone form.

    ``from_attrs`` and ``to_attrs`` convert between the two parametrizations (a fused layer
    has only ``act_alpha``/``act_beta``; the standalone op has named attributes). Parameters
    the function does not use are 0 in the fused form.
    """

    #: the fused name: the value of a layer's ``activation`` attribute
    name: str
    #: the standalone IR op computing the same function (schema registered from ``attrs``)
    op_type: str
    #: the function of x (alpha = act_alpha, beta = act_beta), for docs and reports
    formula: str
    #: the standalone op's schema attributes
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    #: what act_alpha / act_beta mean ("" = unused, always 0)
    alpha: str = ""
    beta: str = ""
    #: the standalone op's (complete) attributes -> (act_alpha, act_beta)
    from_attrs: Callable[[Mapping[str, Any]], tuple[float, float]] = lambda a: (0.0, 0.0)
    #: (act_alpha, act_beta) -> the standalone op's attributes (the inverse)
    to_attrs: Callable[[float, float], dict[str, Any]] = lambda alpha, beta: {}
    #: f(x) >= 0 for every x (given the parameters): a pad with 0 before MaxPool never wins
    non_negative: Params = _never
    #: x >= 0 implies f(x) >= 0: a non-negative input stays non-negative (unsigned ranges)
    keeps_non_negative: Params = _always


def _clip_non_negative(alpha: float, beta: float) -> bool:
    # min(max(x, lo), hi) lies in [lo, hi] when lo <= hi and is hi when lo > hi.
    return alpha >= 0.0 and beta >= 0.0


_TABLE = (
    Activation("relu", "Relu", "max(x, 0)", non_negative=_always),
    Activation(
        "clip", "Clip", "min(max(x, alpha), beta)  (relu6: alpha=0, beta=6)",
        attrs={"min": Attr(FLOAT, -FLT_MAX), "max": Attr(FLOAT, FLT_MAX)},
        alpha="min", beta="max",
        from_attrs=lambda a: (a["min"], a["max"]),
        to_attrs=lambda alpha, beta: {"min": alpha, "max": beta},
        non_negative=_clip_non_negative,
        keeps_non_negative=lambda alpha, beta: beta >= 0.0,
    ),
    Activation(
        "leaky_relu", "LeakyRelu", "x if x >= 0 else alpha * x",
        attrs={"alpha": Attr(FLOAT, 0.01)}, alpha="slope for x < 0",
        from_attrs=lambda a: (a["alpha"], 0.0),
        to_attrs=lambda alpha, beta: {"alpha": alpha},
    ),
    Activation(
        "elu", "Elu", "x if x > 0 else alpha * (exp(x) - 1)",
        attrs={"alpha": Attr(FLOAT, 1.0)}, alpha="scale of the negative part",
        from_attrs=lambda a: (a["alpha"], 0.0),
        to_attrs=lambda alpha, beta: {"alpha": alpha},
    ),
    Activation("sigmoid", "Sigmoid", "1 / (1 + exp(-x))", non_negative=_always),
    Activation("tanh", "Tanh", "tanh(x)"),
    Activation(
        "hard_sigmoid", "HardSigmoid", "max(0, min(1, alpha * x + beta))",
        attrs={"alpha": Attr(FLOAT, 0.2), "beta": Attr(FLOAT, 0.5)},
        alpha="slope", beta="offset",
        from_attrs=lambda a: (a["alpha"], a["beta"]),
        to_attrs=lambda alpha, beta: {"alpha": alpha, "beta": beta},
        non_negative=_always,
    ),
    Activation("hard_swish", "HardSwish", "x * max(0, min(1, x / 6 + 1 / 2))"),
    Activation("silu", "SiLU", "x * sigmoid(x)"),
    Activation(
        "gelu", "Gelu", "x * Phi(x)  (alpha=1: the tanh approximation)",
        attrs={"approximate": Attr(STRING, "none")}, alpha="1 = tanh approximation, 0 = exact",
        from_attrs=lambda a: (1.0 if a["approximate"] == "tanh" else 0.0, 0.0),
        to_attrs=lambda alpha, beta: {"approximate": "tanh" if alpha else "none"},
    ),
)

#: fused name -> entry, in table order
ACTIVATIONS: Mapping[str, Activation] = MappingProxyType({a.name: a for a in _TABLE})
_BY_OP: Mapping[str, Activation] = MappingProxyType({a.op_type: a for a in _TABLE})
assert len(ACTIVATIONS) == len(_BY_OP) == len(_TABLE), "activation names or ops repeat"


def by_op_type(op_type: str) -> Activation | None:
    """The entry whose standalone op is ``op_type`` (None for other ops)."""
    return _BY_OP.get(op_type)


def fused_form(op_type: str, attrs: Mapping[str, Any]) -> tuple[str, float, float]:
    """``(activation, act_alpha, act_beta)`` computing standalone ``op_type(attrs)``.

    ``Clip(0, FLT_MAX)`` is ``relu`` (the canonical name the hardware knows). Raises
    ``KeyError`` naming the op for an op that is not an activation.
    """
    entry = _BY_OP.get(op_type)
    if entry is None:
        raise KeyError(f"{op_type!r} is not an activation op (fc.ir.activations)")
    alpha, beta = (float(p) for p in entry.from_attrs(attrs))
    if entry.name == "clip" and alpha == 0.0 and beta >= FLT_MAX:
        return "relu", 0.0, 0.0
    return entry.name, alpha, beta


def standalone_form(activation: str, alpha: float = 0.0, beta: float = 0.0
                    ) -> tuple[str, dict[str, Any]]:
    """``(op_type, attrs)`` of the standalone op computing a fused activation."""
    entry = ACTIVATIONS.get(activation)
    if entry is None:
        raise KeyError(f"activation {activation!r} not one of {sorted(ACTIVATIONS)}")
    return entry.op_type, entry.to_attrs(alpha, beta)


def fused_layers() -> tuple[str, ...]:
    """Ops that carry a fused activation (their schema has ``ACTIVATION_ATTRS``), in schema
    order: the layers an activation may fuse into."""
    from fc.ir.schema import all_schemas

    return tuple(op for op, s in all_schemas().items() if set(ACTIVATION_ATTRS) <= set(s.attrs))


# Ops outside the table whose output is >= 0 for any input.
_NON_NEGATIVE_OPS = frozenset({"Abs"})


def is_non_negative(v: Any) -> bool:
    """True when every element of the IR value ``v`` is known to be >= 0 from its producers.

    A constant is checked; an activation (standalone, or fused into a layer) is non-negative
    when its function is (``Activation.non_negative``), or when it keeps a non-negative input
    non-negative (``keeps_non_negative``) and its input is known non-negative (standalone
    activations only: a layer's own output may have either sign). NaN is not considered.
    """
    while True:
        if v.const is not None:
            return bool((v.const >= 0).all())
        p = v.producer
        if p is None:
            return False
        if p.op_type in _NON_NEGATIVE_OPS:
            return True
        entry = _BY_OP.get(p.op_type)
        if entry is not None:
            alpha, beta = entry.from_attrs(p.attrs)
            if entry.non_negative(alpha, beta):
                return True
            if not entry.keeps_non_negative(alpha, beta):
                return False
            v = p.inputs[0]
            continue
        act = p.attrs.get("activation", "")
        if act in ACTIVATIONS:
            return ACTIVATIONS[act].non_negative(p.attrs["act_alpha"], p.attrs["act_beta"])
        return False
