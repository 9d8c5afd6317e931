"""The MXNet converter table: one function per MXNet operator name.

``@converter("Convolution", check=...)`` registers ``fn(ctx) -> Value | list[Value | None]``
in a ``fc.frontend.registry.ConverterRegistry``; it translates one symbol node into fc IR
nodes through a :class:`~fc.frontend.mxnet.context.ConvertContext` and returns the fc
``Value`` of each MXNet output. One function may serve several aliases
(``@converter("elemwise_add", "_plus")``); registering a name twice raises.

Two optional declarations travel with a registration, so the importer can judge a whole
symbol *before* converting anything (an unsupported model lists all its problems at once):

* ``check(ctx) -> str | None``: a reason when this node's attributes ask for something fc
  cannot translate (``Activation`` with ``act_type='softrelu'``); the node is then reported
  under ``"Op(reason)"`` with the unsupported ops;
* ``label_inputs``: input positions that are training labels (``SoftmaxOutput``'s second
  input). Inference ignores them, so a variable feeding only labels is not a graph input.

The converter modules are imported explicitly by :func:`_load` (no discovery).
"""

from __future__ import annotations

from fc.frontend.registry import Converter, ConverterRegistry

__all__ = ["CONVERTERS", "converter", "find_converter", "get_converter", "supported_ops"]


def _load() -> None:
    # The explicit list of converter modules; each registers its ops on import.
    import fc.frontend.mxnet.ops_elementwise  # noqa: F401
    import fc.frontend.mxnet.ops_nn  # noqa: F401
    import fc.frontend.mxnet.ops_tensor  # noqa: F401


CONVERTERS = ConverterRegistry("MXNet", loader=_load, meta={"label_inputs": ()})

#: ``@converter("Op", "alias", check=None, label_inputs=())``
converter = CONVERTERS.register


def find_converter(op: str) -> Converter | None:
    return CONVERTERS.find(op)


def get_converter(op: str) -> Converter:
    """The converter of ``op``; a miss raises naming the op."""
    return CONVERTERS.get(op)


def supported_ops() -> list[str]:
    """Every MXNet operator name fc converts (aliases included), sorted."""
    return CONVERTERS.names()
