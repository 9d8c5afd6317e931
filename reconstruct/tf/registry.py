"""The table of TensorFlow lowerings: one function per IR op, keyed by the IR op name.

A lowering takes the :class:`~fc.reconstruct.tf.context.LowerContext` first, then the node's
inputs as :class:`~fc.reconstruct.tf.context.Lt` positionally (``None`` for an absent optional
input) and its complete attributes keyword-only with the schema's names, and returns one
``Lt`` per output (``ctx.out(tensor, perm)``)::

    @LOWERINGS.register("Relu")
    def relu(ctx, x):
        return ctx.out(ctx.tf.nn.relu(x.tensor), x.perm)

The table is an :class:`fc.ir.registry.OpTable`, so a keyword that is not the schema's
attribute fails at import. Other packages add lowerings for their own ops the same way (the
quantizer's fake-quant ops), or replace one for a single reconstruction with
``overrides={"Conv": fn}``.
"""

from __future__ import annotations

from fc.errors import ReconstructError
from fc.ir.registry import OpTable

__all__ = ["LOWERINGS"]


def _load_builtin() -> None:
    # The explicit list of lowering modules; each registers its ops on import.
    import fc.reconstruct.tf.ops_elementwise  # noqa: F401
    import fc.reconstruct.tf.ops_nn  # noqa: F401
    import fc.reconstruct.tf.ops_quant  # noqa: F401
    import fc.reconstruct.tf.ops_tensor  # noqa: F401


LOWERINGS = OpTable("TensorFlow lowering", loader=_load_builtin, error=ReconstructError)
