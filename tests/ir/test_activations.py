"""fc.ir.activations: the table agrees with the schemas, its two forms convert into each other,
and its sign facts hold for torch's implementation of each function (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fc.ir import Graph
from fc.ir.activations import (
    ACTIVATIONS,
    by_op_type,
    fused_form,
    fused_layers,
    is_non_negative,
    standalone_form,
)
from fc.ir.schema import FLT_MAX, get_schema
from fc.ir.schemas.nn import FUSED_ACTIVATIONS
from fc.testing import ACTIVATION_EXAMPLES, activation_cases, torch_activation

CASES = [pytest.param(n, a, b, id=f"{n}_{a:g}_{b:g}") for n, a, b in activation_cases()]
ENTRIES = [pytest.param(a, id=a.name) for a in ACTIVATIONS.values()]
# Both signs, tiny and large magnitudes, and the kinks of every function in the table.
GRID = torch.tensor(np.concatenate([np.linspace(-12, 12, 4801), [-1e4, -90, 90, 1e4]]),
                    dtype=torch.float32)


@pytest.mark.parametrize("entry", ENTRIES)
def test_standalone_op_schema_is_the_tables(entry) -> None:
    schema = get_schema(entry.op_type)
    assert [i.name for i in schema.inputs] == ["X"] and schema.outputs == ("Y",)
    assert schema.attrs == dict(entry.attrs)
    assert by_op_type(entry.op_type) is entry
    assert FUSED_ACTIVATIONS[entry.name] == entry.formula


def test_every_activation_has_an_oracle_and_examples() -> None:
    assert list(ACTIVATION_EXAMPLES) == list(ACTIVATIONS)
    for name in ACTIVATIONS:
        torch_activation(name)  # KeyError for an entry without an oracle


@pytest.mark.parametrize("name, alpha, beta", CASES)
def test_fused_and_standalone_forms_convert_into_each_other(name, alpha, beta) -> None:
    op, attrs = standalone_form(name, alpha, beta)
    complete = get_schema(op).complete(attrs)
    assert fused_form(op, complete) == (name, alpha, beta)


@pytest.mark.parametrize("op, attrs, expected", [
    pytest.param("Clip", {"min": 0.0, "max": FLT_MAX}, ("relu", 0.0, 0.0), id="clip_0_inf_is_relu"),
    pytest.param("Clip", {"min": 0.0, "max": 6.0}, ("clip", 0.0, 6.0), id="relu6"),
    pytest.param("Gelu", {"approximate": "tanh"}, ("gelu", 1.0, 0.0), id="gelu_tanh"),
    pytest.param("HardSigmoid", {}, ("hard_sigmoid", 0.2, 0.5), id="hard_sigmoid_defaults"),
    pytest.param("LeakyRelu", {}, ("leaky_relu", 0.01, 0.0), id="leaky_relu_default"),
])
def test_fused_form_of_standalone_ops(op, attrs, expected) -> None:
    assert fused_form(op, get_schema(op).complete(attrs)) == expected


def test_non_activations_are_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="'Exp' is not an activation op"):
        fused_form("Exp", {})
    with pytest.raises(KeyError, match="activation 'swish2' not one of"):
        standalone_form("swish2")
    assert by_op_type("Conv") is None


@pytest.mark.parametrize("name, alpha, beta", CASES)
def test_sign_facts_hold_for_torch_and_are_tight(name, alpha, beta) -> None:
    entry = ACTIVATIONS[name]
    y = torch_activation(name, alpha, beta)(GRID)
    assert entry.non_negative(alpha, beta) == bool((y >= 0).all()), "f(x) >= 0 for every x"
    assert entry.keeps_non_negative(alpha, beta) == bool((y[GRID >= 0] >= 0).all()), \
        "x >= 0 implies f(x) >= 0"


def test_layers_with_a_fused_activation() -> None:
    assert set(fused_layers()) == {"Conv", "ConvTranspose", "Gemm", "Scale", "Add"}


def _value(kind: str):
    g = Graph()
    x = g.add_input("x", (1, 2, 4, 4))
    w = g.add_const("w", np.ones((2, 2, 1, 1), np.float32))
    nodes = {
        "relu": lambda: g.add_node("Relu", [x]),
        "tanh": lambda: g.add_node("Tanh", [x]),
        "tanh_of_relu": lambda: g.add_node("Tanh", [g.add_node("Relu", [x]).output]),
        "gelu_of_sigmoid": lambda: g.add_node("Gelu", [g.add_node("Sigmoid", [x]).output]),
        "clip_neg_max_of_relu": lambda: g.add_node("Clip", [g.add_node("Relu", [x]).output],
                                                   {"min": -1.0, "max": -0.5}),
        "clip_min0": lambda: g.add_node("Clip", [x], {"min": 0.0, "max": 6.0}),
        "clip_min_above_negative_max": lambda: g.add_node("Clip", [x], {"min": 0.5, "max": -0.5}),
        "abs": lambda: g.add_node("Abs", [x]),
        "conv_relu": lambda: g.add_node("Conv", [x, w], {"activation": "relu"}),
        "conv_clip": lambda: g.add_node("Conv", [x, w], {"activation": "clip", "act_beta": 6.0}),
        "conv_tanh": lambda: g.add_node("Conv", [x, w], {"activation": "tanh"}),
        "conv_of_relu": lambda: g.add_node("Conv", [g.add_node("Relu", [x]).output, w]),
    }
    if kind == "input":
        return x
    if kind == "const":
        return w
    return nodes[kind]().output


@pytest.mark.parametrize("kind, expected", [
    pytest.param("relu", True, id="relu"),
    pytest.param("tanh", False, id="tanh"),
    pytest.param("tanh_of_relu", True, id="tanh_keeps_a_non_negative_input"),
    pytest.param("gelu_of_sigmoid", True, id="gelu_keeps_a_non_negative_input"),
    pytest.param("clip_neg_max_of_relu", False, id="clip_with_negative_max"),
    pytest.param("clip_min0", True, id="clip_min0"),
    pytest.param("clip_min_above_negative_max", False, id="clip_min_above_negative_max"),
    pytest.param("abs", True, id="abs"),
    pytest.param("conv_relu", True, id="conv_fused_relu"),
    pytest.param("conv_clip", True, id="conv_fused_relu6"),
    pytest.param("conv_tanh", False, id="conv_fused_tanh"),
    pytest.param("conv_of_relu", False, id="conv_of_non_negative_input"),
    pytest.param("input", False, id="graph_input"),
    pytest.param("const", True, id="non_negative_constant"),
])
def test_is_non_negative(kind, expected) -> None:
    assert is_non_negative(_value(kind)) is expected
