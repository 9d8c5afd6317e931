"""The ONNX converter tables: one function per (ONNX op type, opset range).

Two ``fc.frontend.registry.ConverterRegistry`` tables, keyed the same way:

* **converters** (``@converter("Conv", since=1, check=...)``) translate one ONNX node into fc
  IR nodes through a :class:`~fc.frontend.onnx.context.ConvertContext` and return the fc
  ``Value`` of each ONNX output (``None`` for an output they do not produce); a ``check``
  refuses attribute variants fc does not translate (a 3-D Conv), so the importer lists them
  all with the unsupported ops;
* **folders** (``@folder("Range", since=11)``) evaluate a node whose inputs are all constant
  with numpy at import and return one array per output. They exist for the shape-arithmetic
  ops fc's IR does not have (Shape, Range, Equal, Where, Expand, ...) and for integer
  arithmetic; a folder may return ``None`` to hand the node to the converter path, which then
  folds it through fc's own numpy kernels.

``since``/``until`` are the first and last opset (inclusive) a function handles; ``until=None``
means "to the newest". Ranges of one op must not overlap: registering twice raises. The
converter modules are imported explicitly by :func:`_load` (no discovery).
"""

from __future__ import annotations

from fc.frontend.registry import Converter, ConverterRegistry

__all__ = [
    "CONVERTERS",
    "FOLDERS",
    "converter",
    "folder",
    "find_converter",
    "find_folder",
    "get_converter",
    "supported_ops",
]


def _load() -> None:
    # The explicit list of converter modules; each registers its ops on import.
    import fc.frontend.onnx.ops_constant  # noqa: F401
    import fc.frontend.onnx.ops_elementwise  # noqa: F401
    import fc.frontend.onnx.ops_nn  # noqa: F401
    import fc.frontend.onnx.ops_tensor  # noqa: F401


CONVERTERS = ConverterRegistry("ONNX", versioned=True, loader=_load, version_name="opset")
# the same modules register both tables: loading the folders loads the converters
FOLDERS = ConverterRegistry("ONNX", versioned=True, loader=lambda: CONVERTERS.load(),
                            kind="folder", version_name="opset")

#: ``@converter("Conv", since=1, until=None, check=None)``
converter = CONVERTERS.register
#: ``@folder("Range", since=11)``
folder = FOLDERS.register


def find_converter(op_type: str, opset: int) -> Converter | None:
    return CONVERTERS.find(op_type, opset)


def find_folder(op_type: str, opset: int) -> Converter | None:
    return FOLDERS.find(op_type, opset)


def get_converter(op_type: str, opset: int) -> Converter:
    """The converter of ``op_type`` at ``opset``; a miss raises naming the op and opset."""
    return CONVERTERS.get(op_type, opset)


def supported_ops() -> dict[str, list[tuple[int | None, int | None]]]:
    """Op type -> opset ranges fc converts (folding-only ops excluded)."""
    return CONVERTERS.ranges()
