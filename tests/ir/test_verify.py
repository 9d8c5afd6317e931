"""The verifier, on broken IR files and broken in-memory graphs.

Every broken file must give ``fc.errors.IRError`` (never a KeyError, IndexError, TypeError or
a numpy error), with a one-line message naming the file and the node/field. Each case
corrupts a copy of the small valid IR of ``conftest.py`` (Conv -> Relu -> MaxPool ->
Flatten -> Gemm).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fc.errors import IRError
from fc.ir import Graph, Node, Value, load, verify

Corrupt = Callable[[Path, Path], None]


def edit(fn: Callable[[dict[str, Any]], None]) -> Corrupt:
    """A corruption of the graph JSON through its parsed document."""

    def corrupt(gpath: Path, ppath: Path) -> None:
        doc = json.loads(gpath.read_text(encoding="utf-8"))
        fn(doc)
        gpath.write_text(json.dumps(doc), encoding="utf-8")

    return corrupt


def node(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["name"] == name)


def text(data: str | bytes) -> Corrupt:
    """Replace the graph file's content."""

    def corrupt(gpath: Path, ppath: Path) -> None:
        gpath.write_bytes(data.encode() if isinstance(data, str) else data)

    return corrupt


def truncate(which: str) -> Corrupt:
    def corrupt(gpath: Path, ppath: Path) -> None:
        p = gpath if which == "graph" else ppath
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    return corrupt


def weights(fn: Callable[[dict[str, np.ndarray]], None]) -> Corrupt:
    """Rewrite the params file with np.savez after ``fn`` edits the arrays."""

    def corrupt(gpath: Path, ppath: Path) -> None:
        with np.load(ppath) as npz:
            arrays = {k: npz[k] for k in npz.files}
        fn(arrays)
        np.savez(ppath, **arrays)

    return corrupt


def remove(which: str) -> Corrupt:
    def corrupt(gpath: Path, ppath: Path) -> None:
        (gpath if which == "graph" else ppath).unlink()

    return corrupt


def flip_weight_byte(gpath: Path, ppath: Path) -> None:
    """Flip one byte inside the stored data of 'fc_w' (the zip's CRC no longer matches)."""
    with np.load(ppath) as npz:
        payload = npz["fc_w"].tobytes()
    data = bytearray(ppath.read_bytes())
    at = bytes(data).index(payload) + 100
    data[at] ^= 0xFF
    ppath.write_bytes(bytes(data))


def npy_instead_of_npz(gpath: Path, ppath: Path) -> None:
    with open(ppath, "wb") as f:
        np.save(f, np.zeros(3, np.float32))


def zip_with_text_member(gpath: Path, ppath: Path) -> None:
    with zipfile.ZipFile(ppath, "a") as zf:
        zf.writestr("readme.txt", "not an array")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """doc edit: set a dotted path like 'nodes.conv.attrs.group.type' (nodes by name)."""

    def fn(doc: dict[str, Any]) -> None:
        keys = path.split(".")
        obj: Any = doc
        for k in keys[:-1]:
            obj = node(doc, k) if obj is doc["nodes"] else (obj[int(k)] if isinstance(obj, list) else obj[k])
        obj[int(keys[-1]) if isinstance(obj, list) else keys[-1]] = value

    return fn


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        keys = path.split(".")
        obj: Any = doc
        for k in keys[:-1]:
            obj = node(doc, k) if obj is doc["nodes"] else obj[k]
        del obj[keys[-1]]

    return fn


def _swap_nodes(i: int, j: int) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        doc["nodes"][i], doc["nodes"][j] = doc["nodes"][j], doc["nodes"][i]

    return fn


G, P = "graph", "params"
BROKEN = [
    # -- the JSON text ---------------------------------------------------------------------
    pytest.param(text("{not json"), G, r"invalid JSON at line 1 column 2", id="invalid_json"),
    pytest.param(truncate(G), G, r"invalid JSON at line \d+", id="truncated_json"),
    pytest.param(text(b'{"format": "fc-ir\xff\xfe"}'), G, r"cannot read graph file .*utf-8",
                 id="non_utf8_bytes"),
    pytest.param(text("[" * 100000), G, r"invalid JSON: nested too deeply", id="json_nested_too_deep"),
    pytest.param(text("[1, 2]"), G, r"top level: expected an object, got list", id="top_level_not_object"),
    pytest.param(remove(G), G, r"graph file not found", id="graph_file_missing"),
    # -- top-level fields ------------------------------------------------------------------
    pytest.param(edit(_set("format", "onnx")), G, r"format: expected 'fc-ir', got 'onnx'",
                 id="wrong_format_tag"),
    pytest.param(edit(_set("version", 99)), G, r"version: unsupported version 99", id="unsupported_version"),
    pytest.param(edit(_set("version", "1")), G, r"top level\.version: expected int, got str",
                 id="version_not_int"),
    pytest.param(edit(_del("nodes")), G, r"top level: missing field 'nodes'", id="missing_nodes"),
    pytest.param(edit(_set("nodes", {})), G, r"top level\.nodes: expected list, got dict",
                 id="nodes_not_a_list"),
    pytest.param(edit(_set("outputs", ["ghost"])), G,
                 r"outputs\[0\]: graph output 'ghost' is not a defined tensor",
                 id="graph_output_not_produced"),
    # -- tensors ---------------------------------------------------------------------------
    pytest.param(edit(_set("inputs.0.shape", [1, -3, 8, 8])), G,
                 r"inputs\[0\]\.shape: expected non-negative integers, got \[1, -3, 8, 8\]",
                 id="negative_dim"),
    pytest.param(edit(_set("nodes.conv.outputs.0.shape", [1, 4, 8.0, 8])), G,
                 r"node 'conv' \(nodes\[0\]\)\.outputs\[0\]\.shape: expected non-negative integers",
                 id="non_int_dim"),
    pytest.param(edit(_set("inputs.0.shape", [True, 3, 8, 8])), G,
                 r"inputs\[0\]\.shape: expected non-negative integers", id="bool_dim"),
    pytest.param(edit(_set("inputs.0.shape", "1x3x8x8")), G,
                 r"inputs\[0\]\.shape: expected list/NoneType, got str", id="shape_not_a_list"),
    pytest.param(edit(_set("inputs.0.shape", None)), G, r"inputs\[0\]\.shape: a graph input needs a shape",
                 id="input_without_shape"),
    pytest.param(edit(_set("inputs.0.dtype", "float33")), G,
                 r"inputs\[0\]\.dtype: unknown or non-numeric dtype 'float33'", id="unknown_dtype"),
    pytest.param(edit(_set("params.0.dtype", "<f4")), G,
                 r"params\[0\]\.dtype: unknown or non-numeric dtype '<f4'", id="non_canonical_dtype"),
    pytest.param(edit(_set("nodes.conv.outputs.0.dtype", "object")), G,
                 r"node 'conv' \(nodes\[0\]\)\.outputs\[0\]\.dtype: unknown or non-numeric dtype 'object'",
                 id="object_dtype"),
    # -- nodes -----------------------------------------------------------------------------
    pytest.param(edit(_set("nodes.2", 5)), G, r"nodes\[2\]: expected an object, got int",
                 id="node_not_object"),
    pytest.param(edit(_del("nodes.conv.op")), G, r"node 'conv' \(nodes\[0\]\): missing field 'op'",
                 id="node_missing_op"),
    pytest.param(edit(_del("nodes.relu.inputs")), G, r"node 'relu' \(nodes\[1\]\): missing field 'inputs'",
                 id="node_missing_inputs"),
    pytest.param(edit(_set("nodes.relu.name", "")), G, r"nodes\[1\]\.name: empty node name",
                 id="node_empty_name"),
    pytest.param(edit(_set("nodes.relu.op", "Frobnicate")), G, r"unknown op\(s\): Frobnicate x1 \('relu'\)",
                 id="unknown_op"),
    pytest.param(edit(_set("nodes.relu.inputs", ["ghost"])), G,
                 r"node 'relu' \(nodes\[1\]\)\.inputs\[0\]: tensor 'ghost' is not defined before this node",
                 id="dangling_input"),
    pytest.param(edit(_set("nodes.relu.inputs", [3])), G,
                 r"node 'relu' \(nodes\[1\]\)\.inputs\[0\]: expected a tensor name, got 3",
                 id="input_not_a_name"),
    pytest.param(edit(_swap_nodes(1, 2)), G,
                 r"node 'pool' \(nodes\[1\]\)\.inputs\[0\]: tensor 'relu_out' is not defined before",
                 id="nodes_out_of_order"),
    pytest.param(edit(_set("nodes.conv.inputs.0", "relu_out")), G,
                 r"node 'conv' \(nodes\[0\]\)\.inputs\[0\]: tensor 'relu_out' is not defined before",
                 id="cycle"),
    pytest.param(edit(_set("nodes.relu.outputs.0.name", "conv_out")), G,
                 r"node 'relu' \(nodes\[1\]\)\.outputs\[0\]: tensor 'conv_out' is defined more than once",
                 id="tensor_produced_twice"),
    pytest.param(edit(_set("nodes.relu.outputs.0.name", "fc_w")), G,
                 r"outputs\[0\]: tensor 'fc_w' is defined more than once", id="node_output_shadows_weight"),
    pytest.param(edit(_set("nodes.relu.name", "conv")), G, r"node name 'conv' is used twice",
                 id="duplicate_node_name"),
    pytest.param(edit(_set("nodes.conv.inputs", ["x", "", "conv_b"])), G,
                 r"node 'conv' \(Conv\): Conv required input 'W' \(position 1\) is missing",
                 id="missing_required_input"),
    pytest.param(edit(_set("nodes.relu.inputs", ["conv_out", "conv_out"])), G,
                 r"node 'relu' \(Relu\): Relu takes 1 inputs, got 2", id="too_many_inputs"),
    pytest.param(edit(_set("nodes.conv.outputs.0.shape", [1, 4, 9, 9])), G,
                 r"node 'conv' \(Conv\): output 'conv_out' is stored as float32\[1, 4, 9, 9\] but infers to "
                 r"float32\[1, 4, 8, 8\]", id="stored_shape_differs_from_inferred"),
    pytest.param(edit(_set("nodes.flatten.outputs.0.dtype", "float64")), G,
                 r"node 'flatten' \(Flatten\): output 'flatten_out' is stored as float64\[1, 64\]",
                 id="stored_dtype_differs_from_inferred"),
    # -- attributes ------------------------------------------------------------------------
    pytest.param(edit(_set("nodes.conv.attrs.group.type", "float")), G,
                 r"node 'conv' \(nodes\[0\]\)\.attrs\.group: declared type 'float', but Conv expects 'int'",
                 id="attr_wrong_declared_type"),
    pytest.param(edit(_set("nodes.conv.attrs.group.value", "1")), G,
                 r"node 'conv' \(nodes\[0\]\)\.attrs\.group\.value: expected int, got str '1'",
                 id="attr_value_wrong_json_type"),
    pytest.param(edit(_set("nodes.conv.attrs.group.value", True)), G,
                 r"attrs\.group\.value: expected int, got bool", id="attr_value_bool"),
    pytest.param(edit(_set("nodes.pool.attrs.strides.value", [2, "2"])), G,
                 r"node 'pool' \(nodes\[2\]\)\.attrs\.strides: MaxPool attribute 'strides' must be ints, "
                 r"but element 1 is str", id="attr_list_element_wrong_type"),
    pytest.param(edit(_set("nodes.conv.attrs.act_alpha.value", float("nan"))), G,
                 r"attrs\.act_alpha: Conv attribute 'act_alpha' must be finite", id="attr_float_nan"),
    pytest.param(edit(_set("nodes.conv.attrs.group.type", "tensor")), G,
                 r"attrs\.group: unknown attribute type 'tensor'", id="attr_unknown_type"),
    pytest.param(edit(_set("nodes.conv.attrs.group", 1)), G,
                 r"attrs\.group: expected an object, got int", id="attr_not_typed"),
    pytest.param(edit(_set("nodes.conv.attrs.padding", {"type": "int", "value": 1})), G,
                 r"node 'conv' \(Conv\): unknown attribute\(s\) \['padding'\] for Conv",
                 id="unknown_attribute"),
    pytest.param(edit(_del("nodes.pool.attrs.kernel_shape")), G,
                 r"node 'pool' \(MaxPool\): MaxPool attribute 'kernel_shape' is required",
                 id="missing_required_attribute"),
    pytest.param(edit(_set("nodes.conv.attrs.group.value", 2)), G,
                 r"node 'conv' \(Conv\): attribute 'group'=2 does not divide input channels 3",
                 id="attr_value_breaks_shape_rule"),
    # -- the params file -------------------------------------------------------------------
    pytest.param(remove(P), P, r"params file not found", id="params_file_missing"),
    pytest.param(weights(lambda a: a.pop("conv_b")), P,
                 r"weight 'conv_b' \(declared in small_graph\.json params\[1\]\) is missing",
                 id="npz_missing_weight"),
    pytest.param(weights(lambda a: a.update(conv_w=a["conv_w"].reshape(4, 27))), P,
                 r"weight 'conv_w' is float32\[4, 27\], but small_graph\.json params\[0\] declares "
                 r"float32\[4, 3, 3, 3\]", id="npz_weight_wrong_shape"),
    pytest.param(weights(lambda a: a.update(fc_b=a["fc_b"].astype(np.float64))), P,
                 r"weight 'fc_b' is float64\[10\], but small_graph\.json params\[3\] declares float32\[10\]",
                 id="npz_weight_wrong_dtype"),
    pytest.param(weights(lambda a: a.update(ghost=np.zeros(2))), P,
                 r"member 'ghost\.npy' is not a weight the graph declares", id="npz_extra_weight"),
    pytest.param(weights(lambda a: a.update(conv_w=np.array([{"a": 1}], dtype=object))), P,
                 r"member 'conv_w' is a pickled object array", id="npz_pickled_object_array"),
    pytest.param(lambda g, p: p.write_text("conv_w = [1, 2, 3]\n"), P, r"not a valid npz file",
                 id="params_text_file"),
    pytest.param(lambda g, p: p.write_bytes(b""), P, r"not a valid npz file", id="params_empty_file"),
    pytest.param(truncate(P), P, r"not a valid npz file", id="npz_truncated"),
    pytest.param(flip_weight_byte, P, r"member 'fc_w' is corrupt", id="npz_bit_flip"),
    pytest.param(npy_instead_of_npz, P, r"not an npz archive", id="npy_instead_of_npz"),
    pytest.param(zip_with_text_member, P, r"member 'readme\.txt' is not a \.npy array",
                 id="npz_non_npy_member"),
]


@pytest.mark.parametrize("corrupt, culprit, pattern", BROKEN)
def test_broken_ir_file_raises_ir_error_naming_file_and_field(
        corrupt: Corrupt, culprit: str, pattern: str, saved_ir: tuple[Path, Path]) -> None:
    gpath, ppath = saved_ir
    corrupt(gpath, ppath)
    with pytest.raises(IRError) as err:
        load(gpath)
    msg = str(err.value)
    assert type(err.value) is IRError
    assert msg.startswith(f"{gpath if culprit == G else ppath}: "), msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg


def test_the_valid_ir_loads(saved_ir: tuple[Path, Path]) -> None:
    g = load(saved_ir[0])
    assert [n.op_type for n in g] == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"]


def test_verify_is_what_rejects_a_stale_shape(saved_ir: tuple[Path, Path]) -> None:
    """load(check=False) reads the file; the default load runs the verifier and refuses it."""
    gpath, _ = saved_ir
    edit(_set("nodes.pool.outputs.0.shape", [1, 4, 3, 3]))(*saved_ir)
    assert load(gpath, check=False).node_by_name("pool").output.shape == (1, 4, 3, 3)
    with pytest.raises(IRError, match="'pool_out' is stored as float32"):
        load(gpath)


# -- in-memory graphs -----------------------------------------------------------------------
def _break_stale_use(g: Graph) -> None:
    Node("Relu", [g.node_by_name("relu").output], [Value("orphan")], name="orphan")


def _break_missing_use(g: Graph) -> None:
    g.node_by_name("relu").output._uses.clear()


def _break_attr_int_for_float(g: Graph) -> None:
    g.node_by_name("fc").attrs["alpha"] = 1


def _break_attr_list_for_tuple(g: Graph) -> None:
    g.node_by_name("conv").attrs["strides"] = [1, 1]


def _break_attr_missing(g: Graph) -> None:
    del g.node_by_name("conv").attrs["group"]


def _break_attr_order(g: Graph) -> None:
    attrs = g.node_by_name("conv").attrs
    attrs["strides"] = attrs.pop("strides")


def _break_weight_array(g: Graph) -> None:
    g.initializers["fc_b"].const = np.zeros(11, np.float32)


def _break_node_name(g: Graph) -> None:
    g.node_by_name("relu").name = "conv"


def _break_value_name(g: Graph) -> None:
    g.node_by_name("relu").output.name = ""


def _break_foreign_output(g: Graph) -> None:
    g.outputs.append(Value("elsewhere", (1,), "float32"))


def _break_list_link(g: Graph) -> None:
    g.node_by_name("pool")._prev = None


@pytest.mark.parametrize("breaker, pattern", [
    pytest.param(_break_stale_use, r"tensor 'relu_out' lists node 'orphan' \(Relu\) as a user, but that node "
                                   r"is not in the graph", id="stale_use"),
    pytest.param(_break_missing_use, r"node 'pool' \(MaxPool\): input 0 'relu_out' does not list the node",
                 id="input_not_listed_as_use"),
    pytest.param(_break_attr_int_for_float, r"node 'fc' \(Gemm\): attributes not in canonical form",
                 id="attr_int_for_float"),
    pytest.param(_break_attr_list_for_tuple, r"node 'conv' \(Conv\): attributes not in canonical form",
                 id="attr_list_for_tuple"),
    pytest.param(_break_attr_missing, r"node 'conv' \(Conv\): attributes incomplete \(missing \['group'\]\)",
                 id="attr_missing"),
    pytest.param(_break_attr_order, r"node 'conv' \(Conv\): attributes not in canonical form or order",
                 id="attr_order"),
    pytest.param(_break_weight_array, r"weight 'fc_b': array is float32\[11\], declared float32\[10\]",
                 id="weight_array_changed"),
    pytest.param(_break_node_name, r"node 'conv' \(Relu\): node name used twice", id="node_name_twice"),
    pytest.param(_break_value_name, r"node 'relu' \(Relu\): a tensor has an empty name",
                 id="empty_value_name"),
    pytest.param(_break_foreign_output, r"graph output 'elsewhere' is not produced by the graph",
                 id="foreign_graph_output"),
    pytest.param(_break_list_link, r"node 'pool' \(MaxPool\): broken node list", id="broken_list_link"),
])
def test_verify_rejects_broken_graphs(breaker: Callable[[Graph], None], pattern: str,
                                      small_graph: Graph) -> None:
    verify(small_graph)
    breaker(small_graph)
    with pytest.raises(IRError, match=pattern):
        verify(small_graph)
