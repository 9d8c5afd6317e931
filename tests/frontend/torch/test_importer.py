"""The PyTorch importer: names and provenance, modes, sources (module, .pt2, factory, zoo),
refusals listed at once, one-line errors, safe .pt2 loading, deterministic files."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fc.ir
from fc.cli import main
from fc.errors import ImportError_, UnsupportedOpsError
from fc.frontend.torch import import_torch
from fc.np_ops import run
from fc.zoo.torch._init import seeded


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(Block())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(x)


def _x(batch: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 8, 8))
                            .astype(np.float32))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return seeded(Net(), 0)


@pytest.fixture(scope="module")
def imported(net):
    return import_torch(net, [_x()])


def test_weights_keep_state_dict_names(net, imported) -> None:
    g = imported.graph
    assert set(g.initializers) == set(net.state_dict()) - {"layer1.0.bn1.num_batches_tracked"}
    for k, v in g.initializers.items():
        np.testing.assert_array_equal(v.const, net.state_dict()[k].numpy())


def test_provenance_is_the_module_path(imported) -> None:
    prov = {n.op_type: n.provenance for n in imported.graph}
    assert prov["Conv"] == ("layer1.0.conv1",)
    assert prov["BatchNormalization"] == ("layer1.0.bn1",)
    assert prov["Gemm"] == ("layer1.0.fc",)


def test_inputs_outputs_and_batch(net, imported) -> None:
    g = imported.graph
    assert [(v.name, v.shape) for v in g.inputs] == [("x", (1, 3, 8, 8))]
    assert [v.name for v in g.outputs] == ["output"]
    x3 = _x(3)
    with torch.no_grad():
        ref = net(x3).numpy()
    np.testing.assert_allclose(run(g, x3.numpy())["output"], ref, rtol=1e-5, atol=1e-6)
    assert imported.seconds.keys() == {"export", "decompose", "convert"}


def test_train_mode_is_imported_in_eval_with_a_note() -> None:
    m = seeded(Net(), 1).train()
    imp = import_torch(m, [_x()])
    assert m.training  # the caller's module is left as it was
    assert any("train mode" in n for n in imp.notes)
    assert "BatchNormalization" in imp.graph.op_histogram()
    with torch.no_grad():
        ref = m.eval()(_x()).numpy()
    np.testing.assert_allclose(run(imp.graph, _x().numpy())["output"], ref, rtol=1e-5, atol=1e-6)


def test_same_model_gives_identical_files(net, tmp_path) -> None:
    for d in ("a", "b"):
        fc.ir.save(import_torch(net, [_x()]).graph, tmp_path / d)
    for suffix in ("_graph.json", "_params.npz"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cumsum(x, 1) + torch.sort(x, -1).values
        return self.conv3d(y.unsqueeze(1)).flatten(1)


def test_every_refusal_listed_at_once() -> None:
    with pytest.raises(UnsupportedOpsError) as e:
        import_torch(Unsupported(), [torch.randn(1, 4, 6, 6)])
    msg = str(e.value)
    assert "3 unsupported PyTorch ATen op type(s)" in msg, msg
    assert "aten.convolution.default(3-D)" in msg and "aten.cumsum.default" in msg
    assert "aten.sort.default" in msg and "\n" not in msg


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x - 1


def test_data_dependent_control_flow_is_one_line() -> None:
    with pytest.raises(ImportError_, match=r"DataDependent: torch.export cannot trace the model:"
                       ) as e:
        import_torch(DataDependent(), [torch.randn(1, 3)])
    assert "\n" not in str(e.value)


# -- sources ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pt2(net, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    torch.export.save(torch.export.export(net.eval(), (_x(),)), path)
    return path


def test_pt2_file_imports_like_the_module(pt2, imported) -> None:
    g = import_torch(pt2).graph
    assert g.op_histogram() == imported.graph.op_histogram()
    x = _x().numpy()
    np.testing.assert_array_equal(run(g, x)["output"], run(imported.graph, x)["output"])


class _Planted:
    """Unpickling this writes a marker file: proof that code from the archive ran."""

    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _rewrite(src: Path, dst: Path, member_suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            body = data if item.filename.endswith(member_suffix) else zin.read(item)
            zout.writestr(item, body)


def test_pt2_with_a_planted_pickle_is_refused(pt2, tmp_path) -> None:
    marker = tmp_path / "marker"
    _Planted.marker = str(marker)
    evil = tmp_path / "evil.pt2"
    buf = io.BytesIO()
    torch.save({"x": _Planted()}, buf)  # a torch.save zip whose data.pkl runs code
    _rewrite(pt2, evil, "sample_inputs/model.pt", buf.getvalue())
    with pytest.raises(ImportError_) as e:
        import_torch(evil)
    assert "refused: sample inputs" in str(e.value) and "never unpickles" in str(e.value)
    assert "\n" not in str(e.value)
    assert not marker.exists()
    # the attack is real: torch's own loader falls back to weights_only=False and runs it
    try:
        torch.export.load(evil)
    except Exception:
        pass
    assert marker.read_text() == "pwned"


def test_pt2_with_a_pickled_weight_is_refused(pt2, tmp_path) -> None:
    with zipfile.ZipFile(pt2) as z:
        name = next(n for n in z.namelist() if n.endswith("_weights_config.json"))
        config = z.read(name).replace(b'"use_pickle": false', b'"use_pickle": true', 1)
    evil = tmp_path / "evil.pt2"
    _rewrite(pt2, evil, "_weights_config.json", config)
    with pytest.raises(ImportError_, match=r"refused: tensor '.*' \(.*\) is stored as a pickle"):
        import_torch(evil)


def test_not_a_pt2_file(tmp_path) -> None:
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ImportError_, match=r"bad.pt2: not a .pt2 file"):
        import_torch(bad)


FACTORY = '''
import torch
from torch import nn

def good():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

def broken():
    raise RuntimeError("no weights here")
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "fc_test_factories.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fc_test_factories"
    sys.modules.pop("fc_test_factories", None)


def test_factory_source_with_input_shape(factory_module, tmp_path, capsys) -> None:
    out = tmp_path / "ir"
    rc = main(["compile", "torch", f"{factory_module}:good", "--input-shape", "1,3,8,8",
               "-o", str(out), "--no-png"])
    assert rc == 0, capsys.readouterr().err
    g = fc.ir.load(out / "IR_for_reconstruct_graph.json")
    assert g.op_histogram() == {"Conv": 1, "Relu": 1}
    assert g.inputs[0].shape == (1, 3, 8, 8)


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param(":broken", "the factory raised RuntimeError: no weights here", id="raises"),
    pytest.param(":missing", "has no callable 'missing'", id="missing"),
])
def test_bad_factory_exit_2_writes_nothing(factory_module, tmp_path, capsys, spec, message) -> None:
    out = tmp_path / "ir"
    rc = main(["compile", "torch", factory_module + spec, "--input-shape", "1,3,8,8", "-o",
               str(out), "--no-png"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_cli_not_a_pt2_exit_2(tmp_path, capsys) -> None:
    bad = tmp_path / "m.pt2"
    bad.write_bytes(b"\x00" * 10)
    assert main(["compile", "torch", str(bad), "-o", str(tmp_path / "ir"), "--no-png"]) == 2
    assert "not a .pt2 file" in capsys.readouterr().err
    assert not (tmp_path / "ir").exists()
