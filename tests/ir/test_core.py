"""The linked IR: producers/users, rewiring, erasing, ordering and naming."""

from __future__ import annotations

import numpy as np
import pytest

from fc.errors import IRError, SchemaError
from fc.ir import Graph, Node, Value, verify


def _chain() -> tuple[Graph, Value, Node, Node]:
    """x -> relu -> sigmoid (graph output "out")."""
    g = Graph()
    x = g.add_input("x", (2, 3))
    relu = g.add_node("Relu", [x], name="relu")
    sig = g.add_node("Sigmoid", [relu.output], name="sig")
    sig.output.name = "out"
    g.rename_index()
    g.outputs.append(sig.output)
    return g, x, relu, sig


def test_value_knows_producer_and_users() -> None:
    g, x, relu, sig = _chain()
    add = g.add_node("Add", [relu.output, x], name="add")
    assert relu.output.producer is relu and relu.output.index == 0
    assert x.producer is None
    assert relu.output.users == [sig, add]
    assert relu.output.uses == [(sig, 0), (add, 0)]
    assert x.users == [relu, add]
    assert x.uses == [(relu, 0), (add, 1)]
    verify(g)


def test_node_using_same_value_twice() -> None:
    g, x, relu, _ = _chain()
    sq = g.add_node("Mul", [relu.output, relu.output], name="square")
    assert relu.output.uses[-2:] == [(sq, 0), (sq, 1)]
    assert relu.output.users.count(sq) == 1  # distinct users
    sq.set_input(1, x)
    assert (sq, 1) not in relu.output.uses and (sq, 0) in relu.output.uses
    assert x.uses[-1] == (sq, 1)
    verify(g)
    g.erase_node(sq)
    assert sq not in relu.output.users and sq not in x.users
    verify(g)


def test_set_input_updates_uses_and_accepts_negative_index() -> None:
    g, x, relu, sig = _chain()
    sig.set_input(-1, x)
    assert sig.inputs == (x,)
    assert relu.output.uses == [] and x.uses == [(relu, 0), (sig, 0)]
    sig.set_input(0, None)
    assert x.uses == [(relu, 0)]


def test_set_input_out_of_range_raises() -> None:
    _, x, _, sig = _chain()
    with pytest.raises(IRError, match=r"node 'sig' \(Sigmoid\) has no input 3"):
        sig.set_input(3, x)


def test_replace_all_uses_with_rewires_every_consumer() -> None:
    g, x, relu, sig = _chain()
    add = g.add_node("Add", [relu.output, relu.output], name="add")
    g.outputs.append(add.output)
    tanh = g.add_node("Tanh", [x], name="tanh", before=sig)
    relu.output.replace_all_uses_with(tanh.output)
    assert relu.output.uses == []
    assert sig.inputs == (tanh.output,) and add.inputs == (tanh.output, tanh.output)
    assert tanh.output.uses == [(sig, 0), (add, 0), (add, 1)]
    g.erase_node(relu)
    verify(g)


def test_replace_all_uses_with_graph_output_keeps_its_name_when_asked() -> None:
    g, x, relu, sig = _chain()
    tanh = g.add_node("Tanh", [relu.output], name="tanh")
    old = sig.output
    old.replace_all_uses_with(tanh.output, rename=True)
    assert g.outputs == [tanh.output]
    assert tanh.output.name == "out"
    assert old.name == "out_replaced"
    g.erase_node(sig)  # no longer a graph output, so it can go
    verify(g)
    assert [v.name for v in g.outputs] == ["out"]


def test_replace_all_uses_with_renames_nothing_unless_asked() -> None:
    g, x, relu, sig = _chain()
    tanh = g.add_node("Tanh", [relu.output], name="tanh")
    old = sig.output
    old.replace_all_uses_with(tanh.output)
    assert g.outputs == [tanh.output]
    assert (tanh.output.name, old.name) == ("tanh_out", "out")
    g.erase_node(sig)
    verify(g)


@pytest.mark.parametrize("kind, reason", [
    pytest.param("input", "is a graph input", id="graph_input"),
    pytest.param("const", "is a constant", id="constant"),
    pytest.param("output", "are both graph outputs", id="already_an_output"),
])
def test_replace_all_uses_with_rename_refuses_to_rename_the_interface(kind: str, reason: str) -> None:
    g, x, relu, sig = _chain()
    other = {"input": x, "const": g.add_const("c", np.zeros(4, np.float32)),
             "output": relu.output}[kind]
    if kind == "output":
        g.outputs.append(relu.output)
    with pytest.raises(IRError, match=reason):
        sig.output.replace_all_uses_with(other, rename=True)
    assert g.outputs[0] is sig.output and sig.output.name == "out"  # nothing changed


def test_replace_all_uses_of_a_graph_input_finds_the_graph_through_a_user() -> None:
    g = Graph()
    x = g.add_input("x", (4,))
    y = g.add_input("y", (4,))
    relu = g.add_node("Relu", [x])
    g.outputs.append(relu.output)
    x.replace_all_uses_with(y)
    assert relu.inputs == (y,) and x.uses == []
    verify(g)


def test_replace_all_uses_with_refuses_a_direct_cycle() -> None:
    g, x, relu, sig = _chain()
    with pytest.raises(IRError, match=r"'sig' uses .* cycle"):
        relu.output.replace_all_uses_with(sig.output)
    assert sig.inputs == (relu.output,)  # nothing rewired


@pytest.mark.parametrize("how", [
    pytest.param("consumer", id="used_by_a_node"),
    pytest.param("graph_output", id="graph_output"),
])
def test_erase_node_refuses_while_outputs_are_used(how: str) -> None:
    g, x, relu, sig = _chain()
    victim = relu if how == "consumer" else sig
    user = "sig" if how == "consumer" else "<graph output>"
    with pytest.raises(IRError, match=rf"cannot erase node '{victim.name}'.*{user}"):
        g.erase_node(victim)
    assert len(g) == 2 and victim.graph is g
    verify(g)


def test_erase_node_unlinks_inputs_and_outputs() -> None:
    g, x, relu, sig = _chain()
    dead = g.add_node("Tanh", [relu.output], name="dead")
    g.erase_node(dead)
    assert len(g) == 2 and g.nodes == [relu, sig]
    assert dead.graph is None and dead.output.producer is None
    assert relu.output.users == [sig]
    with pytest.raises(KeyError, match="dead"):
        g.node_by_name("dead")
    verify(g)


def test_erase_node_of_another_graph_raises() -> None:
    g, *_ = _chain()
    other, _, relu2, _ = _chain()
    with pytest.raises(IRError, match="not in graph"):
        g.erase_node(relu2)


def _ordered(where: str) -> list[str]:
    g = Graph()
    x = g.add_input("x", (1,))
    a = g.add_node("Relu", [x], name="a")
    b = g.add_node("Relu", [x], name="b")
    c = g.add_node("Relu", [x], name="c")
    new = Node("Relu", [x], [Value("n_out")], name="new")
    anchor = {"head": a, "middle": b, "tail": c}[where.split("_")[1]]
    if where.startswith("before"):
        g.insert_before(anchor, new)
    else:
        g.insert_after(anchor, new)
    names = [n.name for n in g]
    # The backward links must agree with the forward order.
    back, n = [], g._tail
    while n is not None:
        back.append(n.name)
        n = n._prev
    assert back == names[::-1]
    assert len(g) == 4
    return names


@pytest.mark.parametrize("where, expected", [
    pytest.param("before_head", ["new", "a", "b", "c"], id="before_head"),
    pytest.param("before_middle", ["a", "new", "b", "c"], id="before_middle"),
    pytest.param("after_middle", ["a", "b", "new", "c"], id="after_middle"),
    pytest.param("after_tail", ["a", "b", "c", "new"], id="after_tail"),
])
def test_insert_before_after_order(where: str, expected: list[str]) -> None:
    assert _ordered(where) == expected


def test_add_node_before_an_anchor() -> None:
    g, x, relu, sig = _chain()
    t = g.add_node("Tanh", [x], name="t", before=relu)
    assert [n.name for n in g] == ["t", "relu", "sig"]
    assert g._head is t


def test_insert_next_to_a_node_of_another_graph_raises() -> None:
    g, x, *_ = _chain()
    _, _, foreign, _ = _chain()
    with pytest.raises(IRError, match="not in graph"):
        g.insert_after(foreign, Node("Relu", [x], [Value("o")]))
    with pytest.raises(IRError, match="not in graph"):
        g.add_node("Relu", [x], before=foreign)
    assert len(g) == 2


def test_unique_naming() -> None:
    g = Graph()
    x = g.add_input("x", (1, 2))
    x2 = g.add_input("x", (1, 2))
    w = g.add_const("w", np.zeros(2, np.float32))
    w2 = g.add_const("w", np.ones(2, np.float32))
    assert (x.name, x2.name, w.name, w2.name) == ("x", "x_1", "w", "w_1")
    assert list(g.initializers) == ["w", "w_1"]
    n1 = g.add_node("Relu", [x], name="act")
    n2 = g.add_node("Relu", [x], name="act")
    u1 = g.add_node("Relu", [x])
    u2 = g.add_node("Relu", [x])
    assert [n1.name, n2.name, u1.name, u2.name] == ["act", "act_1", "relu_1", "relu_2"]
    outs = [v.name for v in g.values()]
    assert len(set(outs)) == len(outs)
    assert g.node_by_name("act_1") is n2
    # A node appended with a taken name is renamed, not duplicated.
    dup = g.append(Node("Relu", [x], [Value("d_out", (1, 2), "float32")], name="act"))
    assert dup.name not in ("act", "act_1") and g.node_by_name(dup.name) is dup
    verify(g)


def test_add_node_failure_leaves_the_graph_unchanged() -> None:
    g = Graph()
    x = g.add_input("x", (1, 64, 8, 8))
    w = g.add_const("w", np.zeros((6, 21, 3, 3), np.float32))
    with pytest.raises(SchemaError, match="'group'=3 does not divide input channels 64"):
        g.add_node("Conv", [x, w], {"group": 3}, name="bad")
    assert len(g) == 0 and x.uses == [] and w.uses == []
    with pytest.raises(KeyError):
        g.node_by_name("bad")
    # The name is still free.
    ok = g.add_node("Conv", [x, g.add_const("w2", np.zeros((8, 64, 1, 1), np.float32))], name="bad")
    assert ok.name == "bad" and ok.output.shape == (1, 8, 8, 8)


def test_add_node_checks_required_inputs_and_arity() -> None:
    g = Graph()
    x = g.add_input("x", (1, 3, 4, 4))
    b = g.add_const("b", np.zeros(3, np.float32))
    with pytest.raises(SchemaError, match="required input 'W'"):
        g.add_node("Conv", [x, None, b], name="c")
    with pytest.raises(SchemaError, match=r"Relu takes 1 inputs, got 2"):
        g.add_node("Relu", [x, x], name="r")
    assert len(g) == 0 and x.uses == [] and b.uses == []


def test_node_constructor_failure_leaves_no_stale_uses() -> None:
    g, x, relu, _ = _chain()
    with pytest.raises(IRError, match="already has a producer 'relu'"):
        Node("Tanh", [x], [relu.output], name="t")
    assert x.users == [relu]


def test_remove_unused_consts_keeps_used_and_output_weights() -> None:
    g = Graph()
    x = g.add_input("x", (2,))
    used = g.add_const("used", np.ones(2, np.float32))
    g.add_const("dead", np.ones(2, np.float32))
    out_w = g.add_const("out_w", np.ones(2, np.float32))
    g.outputs += [g.add_node("Add", [x, used]).output, out_w]
    assert g.remove_unused_consts() == 1
    assert list(g.initializers) == ["used", "out_w"]


def test_wide_fan_out_rewire_and_verify() -> None:
    """One value used by 5,000 nodes: replace_all_uses_with and verify stay linear."""
    g = Graph()
    x = g.add_input("x", (1, 4))
    y = g.add_input("y", (1, 4))
    sinks = [g.add_node("Relu", [x]) for _ in range(5000)]
    g.outputs += [n.output for n in sinks]
    x.replace_all_uses_with(y)
    assert x.uses == [] and len(y.uses) == 5000 and sinks[-1].inputs == (y,)
    verify(g)
