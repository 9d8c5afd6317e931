"""The fused-only Scale kernel (X * scale[c] + B[c] over axis 1, then the fused activation)
against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fc.np_ops
from fc.testing import check_close

T = torch.from_numpy


def _torch_scale(x: np.ndarray, s: np.ndarray, b: np.ndarray | None) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = T(x) * T(s).reshape(shape)
    return y if b is None else y + T(b).reshape(shape)


CASES = [
    pytest.param((2, 5, 4, 4), True, "", {}, lambda y: y, id="nchw_bias"),
    pytest.param((3, 5), True, "", {}, lambda y: y, id="2d_bias"),
    pytest.param((2, 5, 7), False, "", {}, lambda y: y, id="3d_nobias"),
    pytest.param((2, 5, 3, 3), True, "relu", {}, F.relu, id="relu"),
    pytest.param((2, 5, 3, 3), True, "clip", {"act_alpha": 0.0, "act_beta": 6.0}, F.relu6, id="relu6"),
    pytest.param((2, 5, 3, 3), False, "leaky_relu", {"act_alpha": 0.1},
                 lambda y: F.leaky_relu(y, 0.1), id="leaky_relu"),
    pytest.param((2, 5, 3, 3), True, "silu", {}, F.silu, id="silu"),
    pytest.param((2, 5, 3, 3), True, "hard_sigmoid", {"act_alpha": 0.2, "act_beta": 0.5},
                 lambda y: torch.clamp(0.2 * y + 0.5, 0, 1), id="hard_sigmoid"),
    pytest.param((2, 5, 3, 3), True, "gelu", {"act_alpha": 1.0},
                 lambda y: F.gelu(y, approximate="tanh"), id="gelu_tanh"),
]


@pytest.mark.parametrize("shape, bias, activation, act_attrs, torch_act", CASES)
def test_scale(shape, bias, activation, act_attrs, torch_act):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    s = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32) if bias else None
    x_copy = x.copy()
    args = (x, s) if b is None else (x, s, b)
    y = fc.np_ops.call("Scale", *args, activation=activation, **act_attrs)
    np.testing.assert_array_equal(x, x_copy)  # kernels must not mutate their inputs
    check_close(y, torch_act(_torch_scale(x, s, b)).numpy())


def test_scale_keeps_float64():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2)).astype(np.float64)
    s, b = rng.standard_normal(3), rng.standard_normal(3)
    y = fc.np_ops.call("Scale", x, s, b)
    check_close(y, _torch_scale(x, s, b).numpy())
