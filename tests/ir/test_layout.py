"""The source layout recorded at the graph boundary: permutations, conversion, verification,
serialization, and `fc.api.run` / `fcc run` feeding and returning the source layout."""

from __future__ import annotations

import numpy as np
import pytest

import fc.api
from fc.errors import IRError
from fc.ir import Graph, load, save, verify
from fc.ir.clone import clone
from fc.ir.layout import ir_layout, to_ir_layout, to_ir_perm, to_source_layout, to_source_perm
from fc.np_ops import run

P = pytest.param


@pytest.mark.parametrize(("source", "ir", "to_source"), [
    P("NHWC", "NCHW", (0, 2, 3, 1), id="nhwc"), P("NWC", "NCW", (0, 2, 1), id="nwc"),
    P("NCHW", "NCHW", (0, 1, 2, 3), id="nchw"), P("NDHWC", "NCDHW", (0, 2, 3, 4, 1), id="ndhwc"),
])
def test_permutations(source: str, ir: str, to_source: tuple[int, ...]) -> None:
    assert ir_layout(source) == ir
    assert to_source_perm(source) == to_source
    a = np.arange(2 * 3 * 4 * 5 * 6)[: np.prod(range(2, 2 + len(source)))].reshape(
        range(2, 2 + len(source)))
    assert np.array_equal(a.transpose(to_source_perm(source)).transpose(to_ir_perm(source)), a)


def _nhwc_graph() -> Graph:
    """Relu then a global average pool on an NCHW IR whose input and 4-D output are fed and
    returned NHWC; a second output (N, C) has no layout."""
    g = Graph("nhwc")
    x = g.add_input("image", (1, 3, 4, 5))
    y = g.add_node("Mul", [x, g.add_const("s", np.array([1.0, 2.0, 3.0], np.float32)
                                          .reshape(3, 1, 1))], name="scale").output
    p = g.add_node("GlobalAveragePool", [y], name="pool").output
    f = g.add_node("Flatten", [p], name="flat").output
    g.outputs.extend([y, f])
    g.layouts.update({"image": "NHWC", y.name: "NHWC"})
    return g


def test_run_takes_and_returns_the_source_layout() -> None:
    g = _nhwc_graph()
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 3)).astype(np.float32)
    got = fc.api.run(g, x)
    scale = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(got["scale_out"], x * scale)  # NHWC in, NHWC out
    np.testing.assert_allclose(got["flat_out"], (x * scale).mean(axis=(1, 2)), rtol=1e-5, atol=1e-7)
    # the IR itself is channels-first
    ir = run(g, to_ir_layout(g, {"image": x}))
    assert ir["scale_out"].shape == (2, 3, 4, 5)
    assert np.array_equal(to_source_layout(g, ir)["scale_out"], got["scale_out"])


def test_layouts_round_trip_and_clone(tmp_path) -> None:
    g = _nhwc_graph()
    save(g, tmp_path / "m")
    assert '"layouts": {"image": "NHWC", "scale_out": "NHWC"}' in \
        (tmp_path / "m_graph.json").read_text()
    assert load(tmp_path / "m_graph.json").layouts == g.layouts
    assert clone(g).layouts == g.layouts


def test_no_layouts_no_field(tmp_path) -> None:
    """IRs of channels-first models serialize exactly as before the field existed."""
    g = _nhwc_graph()
    g.layouts.clear()
    save(g, tmp_path / "m")
    assert "layouts" not in (tmp_path / "m_graph.json").read_text()


@pytest.mark.parametrize(("name", "layout", "message"), [
    P("nothing", "NHWC", "is not a graph input or output", id="unknown_name"),
    P("flat_out", "NHWC", "has 4 axes, the tensor is 2-D", id="rank_mismatch"),
    P("image", "HWNC", "is not a layout", id="batch_not_first"),
    P("image", "NHHC", "is not a layout", id="repeated_letter"),
])
def test_verify_rejects_bad_layouts(name: str, layout: str, message: str) -> None:
    g = _nhwc_graph()
    g.layouts[name] = layout
    with pytest.raises(IRError, match=message):
        verify(g)


def test_cli_run_feeds_nhwc(tmp_path, capsys) -> None:
    from fc.cli import main

    g = _nhwc_graph()
    save(g, tmp_path / "m")
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", "--graph", str(tmp_path / "m_graph.json"), "--input_npy",
                 str(tmp_path / "x.npy"), "--output_npy", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_array_equal(y["scale_out"], x * np.array([1, 2, 3], np.float32))
    assert main(["info", "--graph", str(tmp_path / "m_graph.json")]) == 0
    assert "input  image: float32[1, 3, 4, 5] (fed and returned as NHWC)" in capsys.readouterr().out
