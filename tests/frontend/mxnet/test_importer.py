"""Tests of the MXNet importer's driver: files and their defaults, input shapes, notes, the
unsupported-op report, malformed symbols, zoo names with real parameter files, and the live
gluon/symbol APIs. Numbers are checked against mxnet's own forward pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fc.zoo.mxnet as zoo
from fc.errors import ImportError_, UnsupportedOpsError
from fc.frontend.mxnet import import_gluon, import_symbol, load_mxnet, supported_ops
from fc.frontend.mxnet._mx import import_mxnet
from fc.frontend.mxnet.params import save_params
from fc.frontend.mxnet.registry import converter
from fc.ir import verify
from fc.np_ops import run
from fc.testing import MODEL_REL_L2, check_close

mx = import_mxnet()
sym = mx.sym


def _small_net() -> Any:
    """conv -> BN -> relu -> pool -> dense, with a SoftmaxOutput head (label input)."""
    x = sym.Variable("data")
    c = sym.Convolution(x, kernel=(3, 3), pad=(1, 1), num_filter=4, name="conv0")
    b = sym.BatchNorm(c, fix_gamma=False, name="bn0")
    r = sym.Activation(b, act_type="relu", name="relu0")
    p = sym.Pooling(r, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool0")
    f = sym.FullyConnected(p, num_hidden=5, name="fc0")
    return sym.SoftmaxOutput(f, name="softmax")


def _params(s: Any, shape: tuple[int, ...], seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    arg_shapes, _, aux_shapes = s.infer_shape(data=shape)
    arg = {n: mx.nd.array(rng.standard_normal(sh) * 0.5)
           for n, sh in zip(s.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")}
    aux = {n: mx.nd.array(rng.uniform(0.5, 1.5, sh))
           for n, sh in zip(s.list_auxiliary_states(), aux_shapes)}
    return arg, aux


def _mx_forward(s: Any, x: np.ndarray, arg: dict, aux: dict) -> np.ndarray:
    args = {**arg, "data": mx.nd.array(x)}
    if "softmax_label" in s.list_arguments():
        args["softmax_label"] = mx.nd.zeros((x.shape[0],))
    exe = s.bind(mx.cpu(), args, aux_states=aux, grad_req="null")
    return exe.forward(is_train=False)[0].asnumpy()


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, Any, dict, dict]:
    """``net-symbol.json`` + ``net-0002.params`` written by mxnet's save_checkpoint."""
    s = _small_net()
    arg, aux = _params(s, (1, 3, 8, 8), seed=0)
    prefix = tmp_path / "net"
    mx.model.save_checkpoint(str(prefix), 2, s, arg, aux)
    return tmp_path / "net-symbol.json", s, arg, aux


# -- files ------------------------------------------------------------------------------------

def test_files_match_mxnet(checkpoint: tuple[Path, Any, dict, dict]) -> None:
    path, s, arg, aux = checkpoint
    graph, notes = load_mxnet(str(path), input_shapes=(2, 3, 8, 8))
    verify(graph)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    check_close(run(graph, x)["softmax"], _mx_forward(s, x, arg, aux))
    assert [v.name for v in graph.inputs] == ["data"]
    assert graph.inputs[0].shape == (2, 3, 8, 8)
    assert any("softmax_label" in n for n in notes)
    assert graph.name == "net"


def test_default_params_is_highest_epoch(checkpoint: tuple[Path, Any, dict, dict]) -> None:
    path, s, _, _ = checkpoint
    arg, aux = _params(s, (1, 3, 8, 8), seed=7)
    mx.model.save_checkpoint(str(path.parent / "net"), 10, s, arg, aux)
    graph, _ = load_mxnet(str(path), input_shapes=(1, 3, 8, 8))
    np.testing.assert_array_equal(graph.initializers["conv0_weight"].const,
                                  arg["conv0_weight"].asnumpy())


def test_explicit_params_file(checkpoint: tuple[Path, Any, dict, dict], tmp_path: Path) -> None:
    path, s, _, _ = checkpoint
    arg, aux = _params(s, (1, 3, 8, 8), seed=9)
    other = tmp_path / "elsewhere.params"
    save_params(other, {**{f"arg:{k}": v.asnumpy() for k, v in arg.items()},
                        **{f"aux:{k}": v.asnumpy() for k, v in aux.items()}})
    graph, _ = load_mxnet(str(path), params=str(other), input_shapes=(1, 3, 8, 8))
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    check_close(run(graph, x)["softmax"], _mx_forward(s, x, arg, aux))


def test_missing_params_names_directory(tmp_path: Path) -> None:
    path = tmp_path / "lonely-symbol.json"
    path.write_text(_small_net().tojson())
    with pytest.raises(ImportError_, match=r"lonely-NNNN\.params.*" + str(tmp_path)):
        load_mxnet(str(path))


def test_missing_symbol_file(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match="no such MXNet symbol file"):
        load_mxnet(str(tmp_path / "nothing-symbol.json"))


def test_default_input_shape_note(checkpoint: tuple[Path, Any, dict, dict]) -> None:
    """A file gives no input shape: 'data' defaults to (1, 3, 224, 224), with a note."""
    path = checkpoint[0]
    s = sym.Convolution(sym.Variable("data"), kernel=(1, 1), num_filter=2, name="c")
    arg = {"c_weight": mx.nd.ones((2, 3, 1, 1)), "c_bias": mx.nd.zeros((2,))}
    mx.model.save_checkpoint(str(path.parent / "one"), 0, s, arg, {})
    graph, notes = load_mxnet(str(path.parent / "one-symbol.json"))
    assert graph.inputs[0].shape == (1, 3, 224, 224)
    assert any("(1, 3, 224, 224)" in n for n in notes)


# -- input shapes -----------------------------------------------------------------------------

def _two_input_symbol() -> Any:
    return sym.broadcast_add(sym.Variable("a"), sym.Variable("b"), name="sum")


@pytest.mark.parametrize(("shapes", "match"), [
    pytest.param((2, 3), "bare input shape needs a one-input", id="bare_for_two_inputs"),
    pytest.param({"a": (2, 3), "c": (2, 3)}, r"names \['c'\]", id="unknown_name"),
    pytest.param({"a": (2, 3)}, r"no shape for input\(s\) \['b'\]", id="missing"),
    pytest.param({"a": (2, 0), "b": (2, 3)}, "must be positive", id="non_positive"),
])
def test_input_shape_errors(shapes: Any, match: str) -> None:
    with pytest.raises(ImportError_, match=match):
        import_symbol(_two_input_symbol(), {}, {}, input_shapes=shapes)


def test_input_shapes_dict_and_declared_shape() -> None:
    """A dict names the inputs; a variable declared with a shape needs none."""
    s = sym.broadcast_add(sym.Variable("a"), sym.Variable("b", shape=(1, 3)), name="sum")
    graph = import_symbol(s, {}, {}, input_shapes={"a": (2, 3)})
    assert [(v.name, v.shape) for v in graph.inputs] == [("a", (2, 3)), ("b", (1, 3))]
    a, b = np.ones((2, 3), np.float32), np.full((1, 3), 2.0, np.float32)
    check_close(run(graph, {"a": a, "b": b})["sum"], np.full((2, 3), 3.0, np.float32))


# -- unsupported and malformed ------------------------------------------------------------------

def test_unsupported_ops_all_listed() -> None:
    """Every unsupported op and attribute variant is listed at once, with node names."""
    x = sym.Variable("data")
    a = sym.Activation(x, act_type="softrelu", name="sr0")
    b = sym.Activation(a, act_type="softrelu", name="sr1")
    c = sym.topk(b, k=2, name="top")
    d = sym.Pooling(c, kernel=(2, 2), pool_type="lp", name="lp")
    e = sym.Convolution(d, kernel=(3,), num_filter=2, name="conv1d")
    with pytest.raises(UnsupportedOpsError) as info:
        import_symbol(sym.Activation(e, act_type="relu", name="ok"), {}, {},
                      input_shapes=(1, 3, 8))
    assert info.value.unsupported == {
        "Activation(act_type=softrelu)": ["sr0", "sr1"],
        "topk": ["top"],
        "Pooling(pool_type=lp)": ["lp"],
        "Convolution(1-D convolution)": ["conv1d"],
    }
    assert "<mxnet symbol>: 4 unsupported mxnet op type(s)" in str(info.value)


def _corrupt(text: str) -> Any:
    return text


def _edit(fn: Any) -> Any:
    def make() -> str:
        doc = json.loads(_small_net().tojson())
        fn(doc)
        return json.dumps(doc)
    return make


def _set_attr(doc: dict, node: str, key: str, value: str) -> None:
    next(n for n in doc["nodes"] if n["name"] == node)["attrs"][key] = value


@pytest.mark.parametrize(("make", "match"), [
    pytest.param(lambda: "{not json", "not valid symbol JSON", id="not_json"),
    pytest.param(lambda: "[1, 2]", "no 'nodes' list", id="not_object"),
    pytest.param(_edit(lambda d: d.pop("heads")), "no 'heads'", id="no_heads"),
    pytest.param(_edit(lambda d: d["nodes"][2].update(inputs=[[5, 0, 0]])),
                 "not in topological order", id="forward_reference"),
    pytest.param(_edit(lambda d: d["nodes"][2].update(inputs=[[0]])), "bad node entry",
                 id="bad_entry"),
    pytest.param(_edit(lambda d: d["nodes"][2].update(inputs=[[999, 0, 0]])), "refers to no node",
                 id="dangling_entry"),
    pytest.param(_edit(lambda d: d["nodes"].__setitem__(1, "x")), "string 'op'", id="bad_node"),
    pytest.param(_edit(lambda d: _set_attr(d, "conv0", "kernel", "(a, b)")),
                 r"node 'conv0' \(Convolution\): attribute 'kernel' must be a list of integers, "
                 r"got '\(a, b\)'", id="bad_attr"),
    pytest.param(_edit(lambda d: _set_attr(d, "fc0", "num_hidden", "7")),
                 r"node 'fc0' \(FullyConnected\): .*num_hidden=7", id="shape_mismatch"),
])
def test_corrupt_symbol_names_file(tmp_path: Path, make: Any, match: str) -> None:
    s = _small_net()
    arg, aux = _params(s, (1, 3, 8, 8), seed=0)
    mx.model.save_checkpoint(str(tmp_path / "bad"), 0, s, arg, aux)
    path = tmp_path / "bad-symbol.json"
    path.write_text(make())
    with pytest.raises(ImportError_, match=match) as info:
        load_mxnet(str(path), input_shapes=(1, 3, 8, 8))
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_param_shape_differs_from_declared(checkpoint: tuple[Path, Any, dict, dict],
                                           tmp_path: Path) -> None:
    path, *_ = checkpoint
    doc = json.loads(path.read_text())
    for n in doc["nodes"]:
        if n["name"] == "conv0_weight":
            n.setdefault("attrs", {})["__shape__"] = "(4, 3, 5, 5)"
    path.write_text(json.dumps(doc))
    with pytest.raises(ImportError_, match=r"'conv0_weight' has shape \[4, 3, 3, 3\].*"
                                           r"declares \[4, 3, 5, 5\]"):
        load_mxnet(str(path), input_shapes=(1, 3, 8, 8))


def test_legacy_param_and_attr_keys() -> None:
    """Old symbol files keep op parameters under 'param' and user attributes under 'attr'."""
    doc = json.loads(sym.Pooling(sym.Variable("data", shape=(1, 2, 4, 4)), kernel=(2, 2),
                                 stride=(2, 2), pool_type="avg", name="p").tojson())
    for n in doc["nodes"]:
        attrs = n.pop("attrs", {})
        n["param"] = {k: v for k, v in attrs.items() if not k.startswith("__")}
        n["attr"] = {k: v for k, v in attrs.items() if k.startswith("__")}
    graph = import_symbol(json.dumps(doc))
    assert graph.inputs[0].shape == (1, 2, 4, 4)
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    ref = mx.nd.Pooling(mx.nd.array(x), kernel=(2, 2), stride=(2, 2), pool_type="avg").asnumpy()
    check_close(run(graph, x)["p"], ref)


def test_converter_registered_twice_raises() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        converter("Convolution")(lambda ctx: None)


def test_supported_ops_cover_gluon_exports() -> None:
    gluon_ops = {"Convolution", "BatchNorm", "Activation", "Pooling", "Flatten", "FullyConnected",
                 "elemwise_add", "Concat", "LeakyReLU", "clip", "Dropout", "_copy",
                 "broadcast_add", "broadcast_mul", "Deconvolution", "UpSampling", "Reshape"}
    assert gluon_ops <= set(supported_ops())


# -- zoo names with parameter files -----------------------------------------------------------

ZOO_SMALL = "mobilenet0.5"


@pytest.fixture(scope="module")
def zoo_net() -> Any:
    return zoo.get_model(ZOO_SMALL, seed=5)


def _zoo_check(graph: Any, net: Any) -> None:
    x = np.random.default_rng(3).standard_normal(zoo.input_shape(ZOO_SMALL)).astype(np.float32)
    ref = net(mx.nd.array(x)).asnumpy()
    check_close(next(iter(run(graph, x).values())), ref, rel_l2_max=MODEL_REL_L2)


def test_zoo_seeded_note_and_weights(zoo_net: Any) -> None:
    graph, notes = load_mxnet("MobileNet0_5", seed=5)
    assert notes[0].startswith("weights: seeded random (seed 5)")
    assert graph.name == ZOO_SMALL
    _zoo_check(graph, zoo_net)


def test_zoo_with_exported_params(zoo_net: Any, tmp_path: Path) -> None:
    zoo_net.export(str(tmp_path / "real"), epoch=0)
    graph, notes = load_mxnet(ZOO_SMALL, params=str(tmp_path / "real-0000.params"), seed=0)
    assert notes[0] == f"weights: {tmp_path / 'real-0000.params'}"
    _zoo_check(graph, zoo_net)


def test_zoo_with_gluon_save_parameters(zoo_net: Any, tmp_path: Path) -> None:
    """Structural names (features.0.weight) are mapped onto the block by gluon."""
    path = tmp_path / "real.params"
    zoo_net.save_parameters(str(path))
    graph, _ = load_mxnet(ZOO_SMALL, params=str(path), seed=0)
    _zoo_check(graph, zoo_net)


@pytest.mark.parametrize("kind", [pytest.param("export", id="export_names"),
                                  pytest.param("gluon", id="gluon_names")])
def test_zoo_params_mismatch_listed(zoo_net: Any, tmp_path: Path, kind: str) -> None:
    """Missing, unexpected and mis-shaped parameters are all reported, by name."""
    path = tmp_path / "bad.params"
    if kind == "export":
        zoo_net.export(str(tmp_path / "x"), epoch=0)
        from fc.frontend.mxnet.params import load_params

        stored = load_params(tmp_path / "x-0000.params")
        first, second, third = list(stored)[:3]
    else:
        zoo_net.save_parameters(str(tmp_path / "x.params"))
        from fc.frontend.mxnet.params import load_params

        stored = load_params(tmp_path / "x.params")
        first, second, third = list(stored)[:3]
    stored.pop(first)
    stored["extra_weight" if kind == "gluon" else "arg:extra_weight"] = np.zeros(3, np.float32)
    stored[second] = np.zeros((1, 2), np.float32)
    save_params(path, stored)
    with pytest.raises(ImportError_) as info:
        load_mxnet(ZOO_SMALL, params=str(path))
    msg = str(info.value)

    def strip(key: str) -> str:
        return key.split(":", 1)[-1]

    assert f"1 missing ({strip(first)})" in msg
    assert "1 unexpected (extra_weight)" in msg
    assert f"1 mismatched ({strip(second)} [1, 2]" in msg
    assert third not in msg


# -- live objects -----------------------------------------------------------------------------

class _TwoInputs(mx.gluon.HybridBlock):
    def __init__(self) -> None:
        super().__init__()
        with self.name_scope():
            self.conv = mx.gluon.nn.Conv2D(4, 3, padding=1, in_channels=3)
            self.bn = mx.gluon.nn.BatchNorm(in_channels=4)
            self.dense = mx.gluon.nn.Dense(6, in_units=4 * 5 * 5)

    def hybrid_forward(self, F: Any, a: Any, b: Any) -> Any:  # noqa: N803 - gluon's API
        y = F.broadcast_add(F.relu(self.bn(self.conv(a))), b)
        return self.dense(y)


def test_import_gluon_two_inputs() -> None:
    mx.random.seed(0)
    net = _TwoInputs()
    net.initialize(mx.init.Normal(0.5))
    rng = np.random.default_rng(0)
    for p in net.bn.collect_params().values():
        p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
    graph = import_gluon(net, [(2, 3, 5, 5), (1, 4, 5, 5)])
    assert [v.name for v in graph.inputs] == ["data0", "data1"]
    a = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    b = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    ref = net(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    check_close(next(iter(run(graph, {"data0": a, "data1": b}).values())), ref, op="Gemm")


def test_import_gluon_rejects_plain_block() -> None:
    with pytest.raises(ImportError_, match="HybridBlock"):
        import_gluon(mx.gluon.Block(), (1, 3))


def test_import_symbol_numpy_params_and_notes(caplog: pytest.LogCaptureFixture) -> None:
    """Parameters may be numpy arrays; an unused parameter is noted, not an error."""
    s = _small_net()
    arg, aux = _params(s, (1, 3, 8, 8), seed=4)
    np_arg = {k: v.asnumpy() for k, v in arg.items()}
    np_arg["unused_weight"] = np.zeros(2, np.float32)
    with caplog.at_level("INFO", logger="fc.frontend.mxnet.importer"):
        graph = import_symbol(s, np_arg, {k: v.asnumpy() for k, v in aux.items()},
                              input_shapes={"data": (1, 3, 8, 8)}, name="small")
    assert graph.name == "small"
    assert "unused_weight" in caplog.text
    x = np.random.default_rng(5).standard_normal((1, 3, 8, 8)).astype(np.float32)
    check_close(run(graph, x)["softmax"], _mx_forward(s, x, arg, aux))


def test_heads_that_are_inputs_weights_or_repeated() -> None:
    """A head that is a graph input, a parameter or a repeat gets an Identity node, so every
    graph output is a node output with its own name."""
    x = sym.Variable("data")
    w = sym.Variable("w")
    r = sym.relu(x, name="r")
    graph = import_symbol(sym.Group([r, x, w, r]), {"w": np.full((2,), 3.0, np.float32)}, {},
                          input_shapes=(2,))
    verify(graph)
    assert [v.name for v in graph.outputs] == ["r", "data_output", "w_output", "r_output"]
    out = run(graph, np.array([-1.0, 2.0], np.float32))
    check_close(out["r_output"], np.array([0.0, 2.0], np.float32))
    check_close(out["w_output"], np.full((2,), 3.0, np.float32))
