"""Every activation of fc.ir.activations, parametrized from the table: the standalone kernel
against torch, and the fused form (on Add, Conv, Gemm, Scale) equal to the standalone kernel
bit for bit, so fusing an activation never changes a number."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fc.np_ops
from fc.ir.activations import ACTIVATIONS, standalone_form
from fc.testing import activation_cases, check_close, torch_activation

CASES = [pytest.param(n, a, b, id=f"{n}_{a:g}_{b:g}") for n, a, b in activation_cases()]


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)


@pytest.mark.parametrize("name, alpha, beta", CASES)
def test_standalone_kernel_vs_torch(name, alpha, beta) -> None:
    op, attrs = standalone_form(name, alpha, beta)
    x = np.concatenate([_x(500), np.float32([-100, -20, -3, -1e-3, 0, 1e-3, 3, 20, 100])])
    y = fc.np_ops.call(op, x, **attrs)
    ref = torch_activation(name, alpha, beta)(torch.from_numpy(x)).numpy()
    check_close(y, ref, op="Gelu" if name == "gelu" else op)


def _layer_output(kind: str, attrs: dict) -> np.ndarray:
    if kind == "Add":
        return fc.np_ops.call("Add", _x(2, 3, 4, 5, seed=1), _x(3, 1, 1, seed=2), **attrs)
    if kind == "Conv":
        return fc.np_ops.call("Conv", _x(1, 3, 6, 6, seed=3), _x(4, 3, 3, 3, seed=4), _x(4, seed=5),
                              pads=(1, 1, 1, 1), **attrs)
    if kind == "Gemm":
        return fc.np_ops.call("Gemm", _x(3, 8, seed=6), _x(5, 8, seed=7), _x(5, seed=8), transB=1,
                              **attrs)
    return fc.np_ops.call("Scale", _x(2, 3, 4, 4, seed=9), _x(3, seed=10), _x(3, seed=11), **attrs)


@pytest.mark.parametrize("kind", ["Add", "Conv", "Gemm", "Scale"])
@pytest.mark.parametrize("name, alpha, beta", CASES)
def test_fused_form_is_the_standalone_kernel_bit_for_bit(kind, name, alpha, beta) -> None:
    fused = _layer_output(kind, {"activation": name, "act_alpha": alpha, "act_beta": beta})
    op, attrs = standalone_form(name, alpha, beta)
    separate = fc.np_ops.call(op, _layer_output(kind, {}), **attrs)
    assert fused.dtype == separate.dtype == np.float32
    np.testing.assert_array_equal(fused, separate)


@pytest.mark.parametrize("name, alpha, beta", CASES)
def test_fused_add_vs_torch(name, alpha, beta) -> None:
    a, b = _x(2, 3, 4, 5, seed=1), _x(3, 1, 1, seed=2)
    y = fc.np_ops.call("Add", a, b, activation=name, act_alpha=alpha, act_beta=beta)
    ref = torch_activation(name, alpha, beta)(torch.from_numpy(a) + torch.from_numpy(b)).numpy()
    check_close(y, ref, op="Gelu" if name == "gelu" else "Add")


def test_every_activation_is_covered() -> None:
    assert {n for n, _, _ in activation_cases()} == set(ACTIVATIONS)


def test_unknown_fused_activation_is_named() -> None:
    from fc.errors import ExecutionError
    from fc.np_ops.activation import apply_activation

    with pytest.raises(ExecutionError, match="activation 'swish2' not one of"):
        apply_activation(np.zeros(3, np.float32), "swish2")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
@pytest.mark.parametrize("layout", ["flat", "chunks", "channels_last", "column_slice",
                                    "wide_column_slice", "strided"])
def test_relu_inplace_is_maximum_zero_bit_for_bit(dtype, layout) -> None:
    """relu_inplace (flat chunks against a zero array, or a zero row) gives np.maximum(y, 0)'s
    bits on every layout: NaN stays NaN (its payload), -0.0 becomes +0.0, infinities."""
    from fc.np_ops import activation as act

    rng = np.random.default_rng(3)
    wide = act._ZERO_CHUNK + 200  # rows longer than the zero array
    n = {"chunks": 3 * act._ZERO_CHUNK + 5, "wide_column_slice": 2 * wide}.get(layout, 4 * 96 * 7 * 5)
    base = (rng.standard_normal(n) * 4).astype(dtype)
    if np.dtype(dtype).kind == "f":
        base[::7] = -0.0
        base[3::11] = np.nan
        base[5::13] = -np.inf
        base[6::17] = np.inf
    if layout in ("flat", "chunks"):
        y = base
    elif layout == "channels_last":
        y = base.reshape(4, 7, 5, 96).transpose(0, 3, 1, 2)
    elif layout == "column_slice":
        y = base.reshape(4 * 7 * 5, 96)[:, 16:80]
    elif layout == "wide_column_slice":
        y = base.reshape(2, wide)[:, 100:]
    else:
        y = base.reshape(4 * 7 * 5, 96)[:, ::2]
    ref = np.maximum(y, np.asarray(0, dtype=dtype))
    out = act.relu_inplace(y)
    assert out is y or np.shares_memory(out, y)
    assert y.dtype == ref.dtype
    assert np.array_equal(np.ascontiguousarray(y).view(np.uint8), np.ascontiguousarray(ref).view(np.uint8))
