"""Malformed MXNet symbol files (issue 16): one line, exit 2, no output — written by hand as
JSON (no mxnet needed), as an attacker would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fc.cli import main
from fc.frontend.mxnet.params import save_params


def _pool_symbol(kernel: str) -> dict:
    return {"nodes": [{"op": "null", "name": "data", "inputs": []},
                      {"op": "Pooling", "name": "pool", "inputs": [[0, 0, 0]],
                       "attrs": {"kernel": kernel, "pool_type": "max"}}],
            "arg_nodes": [0], "heads": [[1, 0, 0]]}


def _conv_symbol() -> dict:
    return {"nodes": [{"op": "null", "name": "data", "inputs": []},
                      {"op": "null", "name": "w", "inputs": []},
                      {"op": "Convolution", "name": "conv", "inputs": [[0, 0, 0], [1, 0, 0]],
                       "attrs": {"kernel": "(1, 1)", "num_filter": "4", "no_bias": "True"}}],
            "arg_nodes": [0, 1], "heads": [[2, 0, 0]]}


def _compile(tmp_path: Path, symbol: str | dict, params: dict, *extra: str) -> int:
    sym = tmp_path / "m-symbol.json"
    sym.write_text(symbol if isinstance(symbol, str) else json.dumps(symbol))
    save_params(tmp_path / "m-0000.params", params)
    return main(["compile", "mxnet", str(sym), "-o", str(tmp_path / "out"), "--no-png", *extra])


@pytest.mark.parametrize(("symbol", "shape", "fragment"), [
    pytest.param("[" * 1000 + "]" * 1000, "1,3,8", "not a symbol file (JSON nested too deeply)",
                 id="nested_1000_deep"),
    pytest.param('{"nodes": ' + "[" * 100_000, "1,3,8", "(JSON nested too deeply)",
                 id="unclosed_100000_deep"),
    pytest.param(_pool_symbol("(2, 2)"), "1,3,8",
                 "node 'pool' (Pooling): kernel [2, 2] needs a rank-4 NCHW input, got input "
                 "'data' of shape [1, 3, 8]", id="pooling_2d_kernel_on_1d_input"),
    pytest.param(_pool_symbol("(2,)"), "1,3,8", "Pooling(1-D pooling) x1 ('pool')",
                 id="pooling_1d_refused"),
])
def test_malformed_symbol_is_one_line_exit_2(symbol, shape, fragment, tmp_path, capsys):
    assert _compile(tmp_path, symbol, {}, "--input-shape", shape) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcc: error: "), err
    assert fragment in err, err
    assert not (tmp_path / "out").exists()


def test_parameter_above_the_limit_is_refused(tmp_path, capsys):
    params = {"arg:w": np.ones((4, 3, 1, 1), np.float32)}
    assert _compile(tmp_path, _conv_symbol(), params, "--input-shape", "data=1,3,4,4",
                    "--max-tensor-size", "32") == 2
    err = capsys.readouterr().err
    assert "m-0000.params: array #0 float32 data would take 48 B, above fc's limit of 32 B" \
        in err, err
    assert _compile(tmp_path, _conv_symbol(), params, "--input-shape", "data=1,3,4,4") == 0


_LIBGOMP_MISSING = """
import ctypes, sys
real = ctypes.CDLL
class CDLL(real):
    def __init__(self, name, *args, **kwargs):
        if "libmxnet" in str(name):  # what the loader says on an image without libgomp1
            raise OSError("libgomp.so.1: cannot open shared object file: No such file or "
                          "directory")
        super().__init__(name, *args, **kwargs)
ctypes.CDLL = CDLL
from fc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_mxnet_library_that_does_not_load_is_one_line(tmp_path):
    """A slim image without libgomp1: libmxnet.so raises OSError at import; fcc says what to
    install in one line (the loader's failure is simulated: the library is present here)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _LIBGOMP_MISSING, "compile", "mxnet",
                           "resnet18_v1b", "-o", str(tmp_path / "out"), "--no-png"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "mxnet is installed but its library does not load: libgomp.so.1" in proc.stderr
    assert "apt-get install libgomp1" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
