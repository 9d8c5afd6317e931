"""fc's framework-neutral IR: linked graph, op schemas, serialization, verifier."""

from fc.ir.core import Graph, Node, Value
from fc.ir.schema import TensorType, all_schemas, get_schema, infer_types
from fc.ir.serialize import load, load_graph_json, save
from fc.ir.verify import verify

__all__ = [
    "Graph",
    "Node",
    "Value",
    "TensorType",
    "all_schemas",
    "get_schema",
    "infer_types",
    "load",
    "load_graph_json",
    "save",
    "verify",
]
