"""The pass infrastructure: a rule's match reaches its rewrite, the intermediate rule is
enforced for every rule, passes declare in-place, and the pass manager warns when it stops
without a fixed point."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fc.errors import PassError
from fc.ir import Graph, Node, verify
from fc.ir.clone import clone
from fc.passes.infra import FusionPass, FusionRule, Match, Pass, PassManager, absorb_into
from fc.testing import assert_same_outputs


class ReluOfRelu(FusionRule):
    """Relu(Relu(x)) -> Relu(x). Its check says nothing about other users of the inner
    Relu's output: the infrastructure must refuse those matches by itself."""

    name = "relu_of_relu"
    anchor_ops = ("Relu",)

    def __init__(self) -> None:
        self.checks = 0
        self.matches: list[Match] = []
        self.rewritten: list[Match] = []

    def check(self, graph: Graph, node: Node) -> Match | str:
        self.checks += 1
        inner = node.inputs[0].producer
        if inner is None or inner.op_type != "Relu":
            return "input is not a Relu"
        m = Match(node, [inner, node], inner=inner)
        self.matches.append(m)
        return m

    def rewrite(self, graph: Graph, match: Match) -> None:
        self.rewritten.append(match)
        node = match.anchor
        node.set_input(0, match.inner.inputs[0])
        graph.erase_node(match.inner)


def _graph(extra: str = "") -> Graph:
    g = Graph()
    x = g.add_input("x", (2, 3))
    inner = g.add_node("Relu", [x], name="inner")
    outer = g.add_node("Relu", [inner.output], name="outer")
    g.outputs = [outer.output]
    if extra == "other_user":
        g.outputs.append(g.add_node("Tanh", [inner.output], name="other").output)
    if extra == "graph_output":
        g.outputs.append(inner.output)
    return g


def test_rewrite_receives_the_match_check_returned() -> None:
    g = _graph()
    before = clone(g)
    rule = ReluOfRelu()
    assert FusionPass(rule)(g).count == 1
    verify(g)
    assert [n.name for n in g] == ["outer"]
    assert rule.checks == 2 and rule.rewritten == rule.matches[:1]  # matched once, not again
    assert_same_outputs(before, g, {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)})


@pytest.mark.parametrize("extra, reason", [
    pytest.param("other_user", "Relu output 'inner_out' has 2 uses, also outside the match ('other')",
                 id="intermediate_with_another_user"),
    pytest.param("graph_output", "Relu output 'inner_out' is a graph output",
                 id="intermediate_is_graph_output"),
])
def test_the_infrastructure_refuses_a_shared_intermediate(extra: str, reason: str) -> None:
    g = _graph(extra)
    rule = ReluOfRelu()
    p = FusionPass(rule)
    assert p(g).count == 0 and rule.rewritten == []
    assert ("outer", reason) in p.refusals
    assert [n.name for n in g][:2] == ["inner", "outer"]


def test_match_lists_its_intermediates_and_names_missing_facts() -> None:
    g = _graph()
    inner, outer = g.nodes
    m = Match(outer, [inner, outer], inner=inner)
    assert m.intermediates() == [inner.output]
    assert Match(outer).nodes == [outer] and Match(outer).intermediates() == []
    with pytest.raises(AttributeError, match="has no fact 'layer' .*'inner'"):
        _ = m.layer


def test_absorb_into_refuses_an_output_used_outside() -> None:
    g = _graph("other_user")
    inner, outer, _ = g.nodes
    with pytest.raises(PassError, match="used outside the fusion"):
        absorb_into(g, inner, [outer])


# -- pass manager ---------------------------------------------------------------------------
class FlipAlpha(Pass):
    """Never converges: toggles a LeakyRelu's alpha between two values on every run."""

    name = "flip_alpha"

    def run(self, graph: Graph) -> int:
        for n in graph:
            n.attrs["alpha"] = 0.2 if n.attrs["alpha"] == 0.1 else 0.1
        return 1


class Quiet(Pass):
    name = "quiet"

    def run(self, graph: Graph) -> int:
        return 0


def _leaky() -> Graph:
    g = Graph()
    g.outputs = [g.add_node("LeakyRelu", [g.add_input("x", (3,))], {"alpha": 0.1}).output]
    return g


def test_pass_manager_warns_naming_the_passes_still_changing(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="fc.passes"):
        result, report = PassManager([Quiet(), FlipAlpha()], max_iterations=3)(_leaky())
    assert report.iterations == 3 and report.still_changing == ["flip_alpha"]
    assert not report.converged and result.modified
    assert "without a fixed point" in caplog.text and "flip_alpha" in caplog.text
    assert "quiet" not in caplog.text


def test_pass_manager_at_a_fixed_point_does_not_warn(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="fc.passes"):
        result, report = PassManager([Quiet()], max_iterations=3)(_leaky())
    assert report.iterations == 1 and report.converged and not result.modified
    assert caplog.text == ""


class CopyWithRelu(Pass):
    """Not in place: returns a new graph (Relu appended), leaving its input as it was."""

    name = "copy_with_relu"
    in_place = False

    def __init__(self) -> None:
        self.done = False

    def __call__(self, graph: Graph):
        from fc.passes.infra import PassResult

        if self.done:
            return PassResult(graph, False, 0)
        self.done = True
        new = clone(graph)
        new.outputs = [new.add_node("Relu", [new.outputs[0]], name="relu").output]
        return PassResult(new, True, 1)


def test_pass_manager_threads_the_graph_a_functional_pass_returns() -> None:
    g = _leaky()
    result, report = PassManager([CopyWithRelu(), Quiet()], verify=True)(g)
    assert [n.op_type for n in result.graph] == ["LeakyRelu", "Relu"]
    assert [n.op_type for n in g] == ["LeakyRelu"]  # the input graph is untouched
    assert report.counts == {"copy_with_relu": 1, "quiet": 0}


def test_an_in_place_pass_must_return_its_graph() -> None:
    class Liar(CopyWithRelu):
        name = "liar"
        in_place = True

    with pytest.raises(PassError, match="pass 'liar' declares in_place but returned another graph"):
        PassManager([Liar()])(_leaky())
