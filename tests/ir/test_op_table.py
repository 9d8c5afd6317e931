"""One op table checked against the schemas.

For every op schema: which tables implement it. The tables keyed by IR op name (numpy
kernels, torch and TensorFlow lowerings; quantization rules join here when they become a
table) must hold only ops with a schema, and must cover every schema: the golden executor and
both reconstructors run every IR op. The frontends' converter registries are keyed by the
*source* framework's op names; what they implement is the IR ops their converter code emits
(``ctx.add_node("Conv", ...)``, ``ctx.helper(...)``, ``ctx.emit(...)``, with the op as a string,
a conditional of strings, or a local name assigned strings in the same function, and the
op-name tables such calls read), found by reading the modules' syntax trees; every op named
in such a call must have a schema, or the converter would fail on the first model that
reaches it.

``python tests/ir/test_op_table.py`` prints the coverage table (markdown).
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

from fc.ir.schema import all_schemas

ROOT = Path(__file__).resolve().parents[2]
FRONTENDS = ("onnx", "mxnet", "torch")
_EMITTERS = {"add_node", "helper", "emit"}  # the context calls that create an IR node


def _ir_tables() -> dict[str, object]:
    """Table name -> its ``fc.ir.registry.OpTable`` (imported here: the TF one loads TF)."""
    from fc.np_ops.registry import KERNELS
    from fc.reconstruct.onnx.registry import EXPORTERS as ONNX_EXPORTERS
    from fc.reconstruct.tf.registry import LOWERINGS as TF_LOWERINGS
    from fc.reconstruct.torch.registry import LOWERINGS as TORCH_LOWERINGS

    return {"kernel": KERNELS, "torch lowering": TORCH_LOWERINGS, "TF lowering": TF_LOWERINGS,
            "ONNX export": ONNX_EXPORTERS}


def _converters(frontend: str):
    if frontend == "onnx":
        from fc.frontend.onnx.registry import CONVERTERS
    elif frontend == "mxnet":
        from fc.frontend.mxnet.registry import CONVERTERS
    else:
        from fc.frontend.torch.registry import CONVERTERS
    return CONVERTERS


def _strings(node: ast.AST) -> list[tuple[str, int]]:
    """String constants directly in ``node`` (a conditional expression gives both)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(node.value, node.lineno)]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


@cache
def emitted_ops(frontend: str) -> tuple[dict[str, list[str]], set[str]]:
    """(op named as the first argument of an emitting call -> ["file:line", ...]; IR op names
    in the literal tables of the same modules (dict keys/values, tuple/list/set elements))."""
    schemas = set(all_schemas())
    calls: dict[str, list[str]] = {}
    tables: set[str] = set()
    for path in sorted((ROOT / "frontend" / frontend).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            local: dict[str, list[tuple[str, int]]] = {}  # name -> strings assigned to it
            for a in ast.walk(fn):
                if isinstance(a, ast.Assign):
                    for t in a.targets:
                        if isinstance(t, ast.Name):
                            local.setdefault(t.id, []).extend(_strings(a.value))
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in _EMITTERS and call.args):
                    arg = call.args[0]
                    found = local.get(arg.id, []) if isinstance(arg, ast.Name) else _strings(arg)
                    for op, line in found:
                        calls.setdefault(op, []).append(f"{path.name}:{line}")
        for node in ast.walk(tree):
            elements: list[ast.AST] = []
            if isinstance(node, ast.Dict):
                elements = [k for k in node.keys if k is not None] + list(node.values)
            elif isinstance(node, ast.Tuple | ast.List | ast.Set):
                elements = list(node.elts)
            tables.update(s for e in elements for s, _ in _strings(e) if s in schemas)
    return calls, tables


def frontend_ops(frontend: str) -> set[str]:
    """IR ops the frontend's converters emit (see the module docstring); for ONNX also every
    converter registered under an IR op name (IR op names are ONNX's)."""
    calls, tables = emitted_ops(frontend)
    ops = set(calls) | tables
    if frontend == "onnx":
        ops |= set(_converters("onnx")) & set(all_schemas())
    return ops & set(all_schemas())


def coverage() -> dict[str, dict[str, bool]]:
    """op -> {table name: implements it}, for every schema."""
    tables = _ir_tables()
    fronts = {f"{f} converter": frontend_ops(f) for f in FRONTENDS}
    out = {}
    for op, schema in sorted(all_schemas().items()):
        row = {"shape rule": callable(schema.infer)}
        row.update({name: op in table for name, table in tables.items()})
        row.update({name: op in ops for name, ops in fronts.items()})
        out[op] = row
    return out


def coverage_markdown() -> str:
    table = coverage()
    cols = list(next(iter(table.values())))
    lines = ["| op | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {op} | " + " | ".join("x" if row[c] else "" for c in cols) + " |"
              for op, row in table.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["kernel", "torch lowering", "TF lowering"])
def test_ir_table_holds_only_ops_with_a_schema(name: str) -> None:
    entries = set(_ir_tables()[name])
    assert entries, f"the {name} table is empty"
    assert sorted(entries - set(all_schemas())) == []


def test_every_schema_has_a_shape_rule_a_kernel_and_both_lowerings() -> None:
    missing = {op: [t for t, has in row.items() if not has and "converter" not in t]
               for op, row in coverage().items()}
    assert {op: m for op, m in missing.items() if m} == {}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_converters_emit_only_ops_with_a_schema(frontend: str) -> None:
    calls, _ = emitted_ops(frontend)
    assert len(calls) >= 10, f"found only {sorted(calls)}: the scan no longer sees the calls"
    unknown = {op: where for op, where in calls.items() if op not in all_schemas()}
    assert unknown == {}, f"{frontend} converters emit ops without a schema: {unknown}"


@pytest.mark.parametrize("frontend, ops", [
    pytest.param("onnx", {"Conv", "Gemm", "Relu", "Softmax", "Resize", "LayerNormalization"},
                 id="onnx"),
    pytest.param("mxnet", {"Conv", "BatchNormalization", "Gemm", "Relu", "Concat", "Softmax"},
                 id="mxnet"),
    pytest.param("torch", {"Conv", "Gemm", "Relu", "MatMul", "Softmax", "LayerNormalization"},
                 id="torch"),
])
def test_coverage_sees_what_each_frontend_imports(frontend: str, ops: set[str]) -> None:
    # Ops the frontends' own tests import: a scan that misses them would list nothing useful.
    assert ops <= frontend_ops(frontend)


def test_no_schema_is_implemented_by_nothing_but_its_rule(capsys) -> None:
    text = coverage_markdown()
    print(text)  # the table, for ``pytest -s``
    assert text.count("\n") == len(all_schemas()) + 1
    unused = [op for op, row in coverage().items() if not any(v for k, v in row.items()
                                                              if "converter" in k)]
    # Ops no frontend emits exist for the passes (Scale is a folded BatchNormalization).
    assert "Scale" in unused and "Conv" not in unused


if __name__ == "__main__":
    sys.stdout.write(coverage_markdown() + "\n")
