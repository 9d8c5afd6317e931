"""Graph pictures with Graphviz: ``to_dot`` writes the source, ``render`` calls ``dot``.

Each node shows its op, its fused activation and its output shape, in compact labels laid
out top to bottom, so a 300-node ResNet stays legible. Without ``dot`` on the PATH the
caller gets the ``.dot`` source and a warning instead of a PNG.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from fc.errors import FcError
from fc.ir.core import Graph, Node

__all__ = ["to_dot", "render", "dot_available"]

# Fill colours by op family: layers the MAC array runs stand out from data movement.
_COLOURS = {
    "Conv": "#cfe2f3", "ConvTranspose": "#cfe2f3", "Gemm": "#d9d2e9", "MatMul": "#d9d2e9",
    "MaxPool": "#d9ead3", "AveragePool": "#d9ead3", "GlobalAveragePool": "#d9ead3",
    "GlobalMaxPool": "#d9ead3", "BatchNormalization": "#fce5cd", "Scale": "#fce5cd",
    "Add": "#fff2cc", "Mul": "#fff2cc", "Concat": "#eeeeee", "Softmax": "#f4cccc",
}
_DEFAULT_COLOUR = "#ffffff"


def _quote(*lines: str) -> str:
    """A dot string of ``lines`` (joined by dot's own ``\\n`` escape). Any text — a node
    name ending in a backslash, quotes, line breaks — is escaped, so it cannot end the
    string early or break the DOT source."""
    def esc(s: str) -> str:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
        return s.replace("\r", "").replace("\n", "\\n")

    return '"' + "\\n".join(esc(line) for line in lines) + '"'


def _shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "×".join(str(d) for d in shape)


def _detail(node: Node) -> str:
    a = node.attrs
    if node.op_type in ("Conv", "ConvTranspose"):
        w = node.inputs[1]
        k = "×".join(str(d) for d in w.shape[2:]) if w is not None and w.shape else "?"
        s = a.get("strides", (1, 1))
        parts = [f"{k}"]
        if tuple(s) != (1, 1):
            parts.append(f"s{s[0]}" if s[0] == s[1] else f"s{s[0]}×{s[1]}")
        if a.get("group", 1) != 1:
            parts.append(f"g{a['group']}")
        return " ".join(parts)
    if node.op_type in ("MaxPool", "AveragePool"):
        k, s = a["kernel_shape"], a["strides"]
        return f"{k[0]}×{k[1]} s{s[0]}"
    return ""


def _label(node: Node) -> str:
    head = node.op_type
    detail = _detail(node)
    if detail:
        head += f" {detail}"
    act = node.attrs.get("activation")
    if act:
        head += f" +{act}"
    shapes = ", ".join(_shape(v.shape) for v in node.outputs)
    return _quote(head, shapes)


def _io_label(v) -> str:
    return _quote(v.name, _shape(v.shape))


def to_dot(graph: Graph, title: str | None = None) -> str:
    """Graphviz source for ``graph`` (weights are folded into their consumers' labels)."""
    lines = [
        f"digraph {_quote(graph.name)} {{",
        "  rankdir=TB; nodesep=0.15; ranksep=0.25;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        "height=0.3, margin=\"0.08,0.03\"];",
        '  edge [arrowsize=0.5, color="#666666"];',
    ]
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)}; fontname=\"Helvetica\"; fontsize=14;")
    ids: dict[str, str] = {}
    for i, v in enumerate(graph.inputs):
        ids[v.name] = f"i{i}"
        lines.append(f"  i{i} [label={_io_label(v)}, shape=ellipse, fillcolor=\"#eeeeee\"];")
    for i, node in enumerate(graph):
        nid = f"n{i}"
        colour = _COLOURS.get(node.op_type, _DEFAULT_COLOUR)
        lines.append(f"  {nid} [label={_label(node)}, fillcolor={_quote(colour)}, "
                     f"tooltip={_quote(node.name)}];")
        for v in node.inputs:
            if v is None or v.const is not None:
                continue
            src = ids.get(v.name)
            if src is not None:
                lines.append(f"  {src} -> {nid};")
        for v in node.outputs:
            ids[v.name] = nid
    for i, v in enumerate(graph.outputs):
        lines.append(f"  o{i} [label={_io_label(v)}, shape=ellipse, fillcolor=\"#eeeeee\"];")
        if v.name in ids:
            lines.append(f"  {ids[v.name]} -> o{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render(graph: Graph, png_path: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``png_path`` with ``dot``; without ``dot``, write the ``.dot`` file beside it
    and return that path instead (the caller warns)."""
    png_path = Path(png_path)
    source = to_dot(graph, title)
    if not dot_available():
        dot_path = png_path.with_suffix(".dot")
        dot_path.write_text(source, encoding="utf-8")
        return dot_path
    try:
        proc = subprocess.run(["dot", "-Tpng", "-Gdpi=72", "-o", str(png_path)], input=source.encode(),
                              capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise FcError(f"{png_path}: graphviz 'dot' timed out") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FcError(f"{png_path}: graphviz 'dot' failed: {msg[0] if msg else proc.returncode}")
    return png_path
