"""fc.ir.registry.OpTable: entries checked against the op schemas at registration, built-ins
loaded before anything can collide with them, explicit override."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fc.errors import ExecutionError
from fc.ir.registry import OpTable


def relu(x):
    return np.maximum(x, 0)


def leaky(x, *, alpha):
    return np.where(x > 0, x, alpha * x)


def _table() -> tuple[OpTable, list[str]]:
    """A table whose loader registers built-in Relu and LeakyRelu (and logs that it ran)."""
    log: list[str] = []

    def load() -> None:
        log.append("loaded")
        table.register("Relu")(relu)
        table.register("LeakyRelu")(leaky)

    table = OpTable("test kernel", loader=load, error=ExecutionError)
    return table, log


def test_register_twice_raises():
    table, _ = _table()
    with pytest.raises(ValueError, match="'Relu' registered twice.*override=True"):
        table.register("Relu")(lambda x: x)
    assert table.get("Relu") is relu


def test_override_replaces():
    table, _ = _table()

    def mine(x):
        return x

    table.register("Relu", override=True)(mine)
    assert table.get("Relu") is mine
    assert table.get("LeakyRelu") is leaky


@pytest.mark.parametrize("fn, match", [
    pytest.param(lambda x, *, slope: x, r"missing \['alpha'\], unknown \['slope'\]", id="renamed"),
    pytest.param(lambda x: x, r"missing \['alpha'\]", id="missing"),
    pytest.param(lambda x, *, alpha, beta: x, r"unknown \['beta'\]", id="extra"),
])
def test_keywords_differing_from_schema_raise_at_registration(fn, match):
    table = OpTable("test kernel")
    with pytest.raises(ValueError, match=match):
        table.register("LeakyRelu")(fn)
    assert "LeakyRelu" not in table


def test_var_keyword_accepts_any_schema():
    table = OpTable("test kernel")
    fn = table.register("LeakyRelu", "Conv")(lambda *args, **attrs: args)
    assert table.get("Conv") is fn and table.get("LeakyRelu") is fn


def test_op_without_schema_raises_at_registration():
    table = OpTable("test kernel")
    with pytest.raises(ValueError, match="'NoSuchOp', which has no schema"):
        table.register("NoSuchOp")(lambda x: x)


def test_unknown_op_lookup_raises_table_error():
    table, _ = _table()
    with pytest.raises(ExecutionError, match="no test kernel for op 'Conv'"):
        table.get("Conv")
    assert table.find("Conv") is None and "Conv" not in table


def test_registration_before_first_lookup_keeps_builtins():
    table, log = _table()

    def mine(x):
        return -x

    # The first touch is a registration: the loader runs first, so the collision with the
    # built-in is visible (override needed) and later lookups still find every built-in.
    table.register("Relu", override=True)(mine)
    assert log == ["loaded"]
    assert table.get("Relu") is mine
    assert table.get("LeakyRelu") is leaky
    assert table.ops() == ["LeakyRelu", "Relu"]
    assert log == ["loaded"]


def test_failed_loader_retries():
    calls = []

    def load() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")
        table.register("Relu")(relu)

    table = OpTable("test kernel", loader=load)
    with pytest.raises(RuntimeError):
        table.get("Relu")
    assert table.get("Relu") is relu


def test_numpy_kernels_registration_first_in_a_fresh_process():
    """The bug of the old kernel dict: registering Conv before the first lookup made every
    later lookup (also of Relu) fail with "registered twice". In a fresh interpreter, where
    no kernel module has been imported yet."""
    code = textwrap.dedent("""
        import numpy as np
        from fc.np_ops.registry import get_kernel, kernel, registered_ops

        try:
            @kernel("Conv")
            def conv(x, w, b=None, **attrs):
                return x
        except ValueError as e:
            print("refused:", e)

        @kernel("Conv", override=True)
        def conv2(x, w, b=None, **attrs):
            return x

        assert get_kernel("Conv") is conv2
        x = np.array([-1.0, 2.0], np.float32)
        print(get_kernel("Relu")(x).tolist(), len(registered_ops()) > 40)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: numpy kernel for 'Conv' registered twice" in out.stdout
    assert out.stdout.strip().endswith("[0.0, 2.0] True")
