"""IR files: layout of ``_graph.json`` / ``_params.npz``, determinism, atomic writes, and a
round trip over a corpus of graphs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.ir.serialize as serialize
from fc.errors import IRError
from fc.ir import Graph, load, save
from fc.ir.schema import FLT_MAX


def assert_roundtrip(graph: Graph, tmp_path: Path) -> Graph:
    """save -> load gives the same graph (names, ops, typed attributes, shapes, dtypes,
    provenance, weights bit for bit), and saving the loaded graph gives identical bytes."""
    gpath, ppath = save(graph, tmp_path / "a")
    loaded = load(gpath)
    assert loaded.name == graph.name
    assert [(v.name, v.shape, v.dtype) for v in loaded.inputs] == \
        [(v.name, v.shape, v.dtype) for v in graph.inputs]
    assert [v.name for v in loaded.outputs] == [v.name for v in graph.outputs]
    assert list(loaded.initializers) == list(graph.initializers)
    for name, v in graph.initializers.items():
        w = loaded.initializers[name].const
        # Same dtype name and bits (NaN, -0.0 too); stored in native byte order and C order.
        assert w.dtype.name == v.const.dtype.name and w.shape == v.const.shape, name
        assert w.dtype.isnative and w.flags.c_contiguous, name
        assert w.tobytes() == v.const.astype(w.dtype, order="C").tobytes(), name
    assert len(loaded) == len(graph)
    for a, b in zip(loaded, graph):
        assert (a.name, a.op_type, a.provenance) == (b.name, b.op_type, b.provenance)
        assert [None if v is None else v.name for v in a.inputs] == \
            [None if v is None else v.name for v in b.inputs]
        assert [(v.name, v.shape, v.dtype) for v in a.outputs] == \
            [(v.name, v.shape, v.dtype) for v in b.outputs]
        assert a.attrs == b.attrs and list(a.attrs) == list(b.attrs)
        assert [type(x) for x in a.attrs.values()] == [type(x) for x in b.attrs.values()]
    g2, p2 = save(loaded, tmp_path / "b")
    assert g2.read_bytes() == gpath.read_bytes()
    assert p2.read_bytes() == ppath.read_bytes()
    return loaded


# -- file layout ----------------------------------------------------------------------------
def test_graph_json_layout(saved_ir: tuple[Path, Path]) -> None:
    gpath, _ = saved_ir
    assert gpath.name == "small_graph.json"
    doc = json.loads(gpath.read_text(encoding="utf-8"))
    assert (doc["format"], doc["version"], doc["name"]) == ("fc-ir", 1, "small")
    assert doc["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert doc["outputs"] == ["fc_out"]
    assert doc["params"] == [
        {"name": "conv_w", "shape": [4, 3, 3, 3], "dtype": "float32"},
        {"name": "conv_b", "shape": [4], "dtype": "float32"},
        {"name": "fc_w", "shape": [10, 64], "dtype": "float32"},
        {"name": "fc_b", "shape": [10], "dtype": "float32"},
    ]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert [n["op"] for n in doc["nodes"]] == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm"]
    assert nodes["conv"]["inputs"] == ["x", "conv_w", "conv_b"]
    assert nodes["conv"]["provenance"] == ["features.0"]
    assert nodes["conv"]["attrs"]["group"] == {"type": "int", "value": 1}
    assert nodes["conv"]["attrs"]["pads"] == {"type": "ints", "value": [1, 1, 1, 1]}
    assert nodes["conv"]["attrs"]["activation"] == {"type": "string", "value": ""}
    assert nodes["fc"]["attrs"]["alpha"] == {"type": "float", "value": 1.0}
    assert nodes["pool"]["attrs"]["kernel_shape"] == {"type": "ints", "value": [2, 2]}


def test_graph_json_records_every_tensor_shape_as_torch_computes_it(saved_ir: tuple[Path, Path]) -> None:
    doc = json.loads(saved_ir[0].read_text(encoding="utf-8"))
    x = torch.zeros(1, 3, 8, 8)
    c = F.conv2d(x, torch.zeros(4, 3, 3, 3), padding=1)
    p = F.max_pool2d(F.relu(c), 2, 2)
    f = torch.flatten(p, 1)
    expected = {"conv_out": c, "relu_out": c, "pool_out": p, "flatten_out": f,
                "fc_out": F.linear(f, torch.zeros(10, 64))}
    got = {o["name"]: (o["shape"], o["dtype"]) for n in doc["nodes"] for o in n["outputs"]}
    assert got == {k: (list(v.shape), "float32") for k, v in expected.items()}


def test_params_npz_is_a_plain_npz_with_one_member_per_weight(small_graph: Graph,
                                                              tmp_path: Path) -> None:
    _, ppath = save(small_graph, tmp_path / "m")
    assert ppath.name == "m_params.npz"
    with np.load(ppath, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(small_graph.initializers)
        for name, v in small_graph.initializers.items():
            assert npz[name].dtype == v.const.dtype
            np.testing.assert_array_equal(npz[name], v.const)


def test_files_are_created_with_the_umask_not_0600(small_graph: Graph, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = save(small_graph, tmp_path / "m")
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644, 0o644]


# -- determinism ----------------------------------------------------------------------------
def _same_graph_twice(build: Callable[[], Graph], d: Path) -> tuple[Path, Path, Path, Path]:
    g = build()
    return (*save(g, d / "one"), *save(g, d / "two"))


def _two_identical_builds(build: Callable[[], Graph], d: Path) -> tuple[Path, Path, Path, Path]:
    return (*save(build(), d / "one"), *save(build(), d / "two"))


def _save_load_save(build: Callable[[], Graph], d: Path) -> tuple[Path, Path, Path, Path]:
    g1, p1 = save(build(), d / "one")
    return g1, p1, *save(load(g1), d / "two")


@pytest.mark.parametrize("make", [
    pytest.param(_same_graph_twice, id="same_graph_saved_twice"),
    pytest.param(_two_identical_builds, id="two_separately_built_graphs"),
    pytest.param(_save_load_save, id="save_load_save"),
])
def test_saving_is_byte_deterministic(make: Callable[..., tuple[Path, Path, Path, Path]],
                                      graph_builder: Callable[[], Graph], tmp_path: Path) -> None:
    g1, p1, g2, p2 = make(graph_builder, tmp_path)
    assert g1.read_bytes() == g2.read_bytes()
    assert p1.read_bytes() == p2.read_bytes()


def test_params_members_have_plain_zip_headers(small_graph: Graph, tmp_path: Path) -> None:
    """Every member of a params file under 4 GiB has a plain local header (version 2.0, no
    extra field) and a central entry without zip64 fields: the bytes CPython's zipfile
    writes alike in every release, where its zip64 headers changed within 3.11 (gh-103861:
    Debian 12's 3.11.2 gave other params bytes than 3.11.7). Read from the file's bytes."""
    import struct
    import zipfile

    _, ppath = save(small_graph, tmp_path / "m")
    data = ppath.read_bytes()
    with zipfile.ZipFile(ppath) as zf:
        infos = zf.infolist()
    assert len(infos) == len(small_graph.initializers)
    for info in infos:
        sig, version, _, _, _, _, _, csize, usize, nlen, xlen = struct.unpack_from(
            "<IHHHHHIIIHH", data, info.header_offset)
        assert sig == 0x04034B50 and version == 20 and xlen == 0, info.filename
        assert csize == usize == info.file_size < 0xFFFFFFFF and info.extra == b""
        assert info.create_version == info.extract_version == 20


# -- atomic writes --------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [
    pytest.param(RuntimeError("disk full"), id="error"),
    pytest.param(KeyboardInterrupt(), id="keyboard_interrupt"),
])
def test_failed_save_keeps_old_files_and_leaves_no_temp_files(
        exc: BaseException, small_graph: Graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpath, ppath = save(small_graph, tmp_path / "m")
    old = {p: p.read_bytes() for p in (gpath, ppath)}
    small_graph.initializers["fc_b"].const[:] = 7  # a different model at the same path
    real = np.lib.format.write_array
    calls = []

    def failing(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:  # after the first weight
            raise exc
        real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(type(exc)):
        save(small_graph, tmp_path / "m")
    assert len(calls) == 2
    assert {p: p.read_bytes() for p in (gpath, ppath)} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_graph.json", "m_params.npz"]
    monkeypatch.setattr(np.lib.format, "write_array", real)
    load(gpath)  # the old pair is still a valid IR


def test_save_refuses_an_invalid_graph_and_writes_nothing(small_graph: Graph, tmp_path: Path) -> None:
    small_graph.node_by_name("pool").output.shape = (1, 4, 5, 5)
    with pytest.raises(IRError, match=r"node 'pool' \(MaxPool\): output 'pool_out' is stored as "
                                      r"float32\[1, 4, 5, 5\] but infers to float32\[1, 4, 4, 4\]"):
        save(small_graph, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_an_object_weight_naming_it(tmp_path: Path) -> None:
    g = Graph()
    x = g.add_input("x", (1,))
    g.outputs.append(g.add_node("Relu", [x]).output)
    g.add_const("bad", np.array([{"a": 1}], dtype=object))
    with pytest.raises(IRError, match=r"weight 'bad' is an object array"):
        save(g, tmp_path / "m", check=False)
    assert list(tmp_path.iterdir()) == []


# -- round trip over a corpus ---------------------------------------------------------------
def _corpus_optional_inputs_and_float_limits() -> Graph:
    g = Graph("opt")
    x = g.add_input("x", (2, 3, 6, 6))
    w = g.add_const("w", np.ones((3, 1, 3, 3), np.float32))
    y = g.add_node("Conv", [x, w], {"group": 3, "activation": "clip", "act_alpha": 0.0,
                                    "act_beta": 6.0}).output  # no bias
    y = g.add_node("Clip", [y]).output  # defaults are +-FLT_MAX, JSON has no infinity
    assert g.nodes[-1].attrs["max"] == FLT_MAX
    y = g.add_node("LeakyRelu", [y], {"alpha": 0.1}).output
    g.outputs.append(g.add_node("Transpose", [y]).output)  # perm=() (an empty ints)
    return g


def _corpus_multi_output_and_int_weights() -> Graph:
    g = Graph("split")
    x = g.add_input("x", (4, 6))
    idx = g.add_const("idx", np.array([[0, 2], [1, 1]], np.int64))
    a, b, c = g.add_node("Split", [x], {"axis": 1, "split": (1, 2, 3)}, num_outputs=3).outputs
    g.outputs += [a, g.add_node("Gather", [b, idx], {"axis": 0}).output, c]
    return g


def _corpus_odd_weights() -> Graph:
    """Scalar, big-endian, Fortran-ordered, float16 and NaN weights; unicode names."""
    g = Graph("wéights")
    x = g.add_input("entrée", (3, 4), "float16")
    s = g.add_const("scalar", np.array(2.0, np.float16))
    be = g.add_const("big_endian", np.arange(4, dtype=">f2").astype(">f2"))
    fo = g.add_const("fortran", np.asfortranarray(np.arange(12, dtype=np.float16).reshape(3, 4)))
    nan = g.add_const("nan", np.array([np.nan, -np.inf, 0.0, -0.0], np.float16))
    y = g.add_node("Mul", [x, s], name="mul·1", provenance=["módulo/ç"]).output
    y = g.add_node("Add", [y, be]).output
    y = g.add_node("Sub", [y, fo]).output
    g.outputs.append(g.add_node("Add", [y, nan]).output)
    return g


def _corpus_graph_output_renamed_by_rewrite() -> Graph:
    g = Graph("rewrite")
    x = g.add_input("x", (2, 2))
    old = g.add_node("Relu", [x], name="old")
    g.outputs.append(old.output)
    new = g.add_node("Sigmoid", [x], name="new")
    old.output.replace_all_uses_with(new.output)
    g.erase_node(old)
    return g


@pytest.mark.parametrize("build", [
    pytest.param(None, id="conv_relu_pool_flatten_gemm"),  # the conftest graph
    pytest.param(_corpus_optional_inputs_and_float_limits, id="optional_inputs_float_limits"),
    pytest.param(_corpus_multi_output_and_int_weights, id="split_gather_int64_weights"),
    pytest.param(_corpus_odd_weights, id="scalar_bigendian_fortran_nan_unicode"),
    pytest.param(_corpus_graph_output_renamed_by_rewrite, id="output_name_kept_by_rewrite"),
])
def test_roundtrip_corpus(build: Callable[[], Graph] | None, graph_builder: Callable[[], Graph],
                         tmp_path: Path) -> None:
    assert_roundtrip((build or graph_builder)(), tmp_path)


def test_roundtrip_keeps_big_endian_values(tmp_path: Path) -> None:
    g = _corpus_odd_weights()
    loaded = assert_roundtrip(g, tmp_path)
    np.testing.assert_array_equal(loaded.initializers["big_endian"].const, [0, 1, 2, 3])
    assert loaded.initializers["scalar"].const.shape == ()


def test_long_chain_roundtrip(tmp_path: Path) -> None:
    """10,000 nodes: add_node, verify, save and load must all be linear (a quadratic step
    takes tens of seconds here; nothing is timed)."""
    g = Graph("chain")
    v = g.add_input("x", (1, 8))
    for _ in range(10000):
        v = g.add_node("Relu", [v]).output
    g.outputs.append(v)
    gpath, _ = save(g, tmp_path / "chain")
    loaded = load(gpath)
    assert len(loaded) == 10000
    assert loaded.outputs[0].name == v.name
    assert loaded.nodes[-1].inputs[0].producer is loaded.nodes[-2]


def test_atomic_write_text_mode_is_utf8(tmp_path: Path) -> None:
    with serialize.atomic_write(tmp_path / "t.txt", "w") as f:
        f.write("ünïcode\n")
    assert (tmp_path / "t.txt").read_bytes() == "ünïcode\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]
