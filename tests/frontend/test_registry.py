"""The converter registry every frontend shares: version ranges, aliases, metadata, twice
raises, loading before lookup, and the collection of refusals into one error."""

from __future__ import annotations

from typing import Any

import pytest

from fc.errors import ImportError_, UnsupportedOpsError
from fc.frontend.registry import ConverterRegistry, Refusals


def _fn(tag: str) -> Any:
    def convert(ctx: Any) -> str:
        return tag

    convert.__name__ = f"convert_{tag}"
    return convert


@pytest.fixture
def onnx_like() -> ConverterRegistry:
    reg = ConverterRegistry("Test", versioned=True, version_name="opset")
    reg.register("Softmax", since=1, until=12)(_fn("old"))
    reg.register("Softmax", since=13)(_fn("new"))
    return reg


@pytest.mark.parametrize(("version", "tag"), [
    pytest.param(1, "old", id="first"),
    pytest.param(12, "old", id="last_of_range"),
    pytest.param(13, "new", id="first_of_open_range"),
    pytest.param(99, "new", id="newest"),
])
def test_lookup_follows_version_ranges(onnx_like: ConverterRegistry, version: int,
                                       tag: str) -> None:
    assert onnx_like.get("Softmax", version)(None) == tag


def test_miss_names_op_and_version(onnx_like: ConverterRegistry) -> None:
    assert onnx_like.find("Softmax", 0) is None
    with pytest.raises(ImportError_, match=r"^no Test converter for 'Hardmax' at opset 13$"):
        onnx_like.get("Hardmax", 13)


@pytest.mark.parametrize(("since", "until"), [
    pytest.param(12, 14, id="straddles"),
    pytest.param(1, None, id="covers_all"),
    pytest.param(20, 20, id="inside_open_range"),
])
def test_overlapping_range_raises_and_leaves_the_table(onnx_like: ConverterRegistry,
                                                       since: int, until: int | None) -> None:
    with pytest.raises(ValueError, match=r"'Softmax' registered twice \(convert_"):
        onnx_like.register("Softmax", since=since, until=until)(_fn("x"))
    assert onnx_like.ranges() == {"Softmax": [(1, 12), (13, None)]}


def test_override_replaces_the_overlapped_entries(onnx_like: ConverterRegistry) -> None:
    onnx_like.register("Softmax", since=10, override=True)(_fn("mine"))
    assert onnx_like.ranges() == {"Softmax": [(10, None)]}
    assert onnx_like.find("Softmax", 9) is None
    assert onnx_like.get("Softmax", 13)(None) == "mine"


def test_bad_range_raises() -> None:
    reg = ConverterRegistry("Test", versioned=True)
    with pytest.raises(ValueError, match="until=3 < since=5"):
        reg.register("Op", since=5, until=3)


def test_aliases_share_one_function_and_metadata() -> None:
    reg = ConverterRegistry("Test", meta={"label_inputs": ()})
    fn = _fn("softmax")
    reg.register("SoftmaxOutput", "Softmax", label_inputs=(1,))(fn)
    reg.register("Relu")(_fn("relu"))
    a, b = reg.get("SoftmaxOutput"), reg.get("Softmax")
    assert a.fn is b.fn is fn and (a.name, b.name) == ("SoftmaxOutput", "Softmax")
    assert a.meta["label_inputs"] == (1,) and reg.get("Relu").meta["label_inputs"] == ()
    assert reg.names() == ["Relu", "Softmax", "SoftmaxOutput"]
    with pytest.raises(ValueError, match="'Softmax' registered twice"):
        reg.register("Softmax")(_fn("again"))


def test_unknown_metadata_and_unversioned_ranges_raise() -> None:
    reg = ConverterRegistry("Test", meta={"label_inputs": ()})
    with pytest.raises(TypeError, match=r"unknown metadata \['labels'\]"):
        reg.register("Op", labels=(1,))
    with pytest.raises(ValueError, match="have no version range"):
        reg.register("Op", since=3)


def test_builtins_load_before_lookup_and_before_outside_registration() -> None:
    loads: list[str] = []

    def load() -> None:
        loads.append("load")
        reg.register("Conv")(_fn("builtin"))

    reg = ConverterRegistry("Test", loader=load)
    assert loads == []
    # an outside registration first loads the built-ins, so the clash is seen right here
    with pytest.raises(ValueError, match="'Conv' registered twice"):
        reg.register("Conv")(_fn("user"))
    assert reg.get("Conv")(None) == "builtin" and loads == ["load"]


def test_check_refusals_of_a_model_are_collected_into_one_error() -> None:
    reg = ConverterRegistry("Test")
    reg.register("Conv", check=lambda ctx: None if ctx["rank"] == 4 else f"{ctx['rank'] - 2}-D")(
        _fn("conv"))
    refusals = Refusals("test", "model.x")
    model = [("c0", "Conv", {"rank": 4}), ("c1", "Conv", {"rank": 5}), ("h", "Hardmax", {}),
             ("c2", "Conv", {"rank": 5}), ("c3", "Conv", {"rank": 3})]
    refused = [refusals.judge(name, op, reg.find(op), ctx) for name, op, ctx in model]
    assert refused == [False, True, True, True, True]
    refusals.judge("c1", "Conv", reg.find("Conv"), {"rank": 3})  # judged again: first label wins
    assert refusals.by_label() == {"Conv(3-D)": ["c1", "c2"], "Hardmax": ["h"],
                                   "Conv(1-D)": ["c3"]}
    with pytest.raises(UnsupportedOpsError) as err:
        refusals.raise_if_any()
    assert str(err.value) == ("model.x: 3 unsupported test op type(s): Conv(1-D) x1 ('c3'); "
                              "Conv(3-D) x2 ('c1', 'c2'); Hardmax x1 ('h')")


def test_refusals_keyed_by_index_keep_repeated_names() -> None:
    refusals = Refusals("test", "m")
    refusals.add("n", "A", key=0)
    refusals.add("n", "A", key=1)
    assert refusals.by_label() == {"A": ["n", "n"]} and 1 in refusals and "n" not in refusals
