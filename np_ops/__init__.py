"""The golden executor: numpy kernels for every IR op and the interpreter that runs them."""

from fc.np_ops.interpreter import run
from fc.np_ops.registry import call, get_kernel, has_kernel, kernel, registered_ops

__all__ = ["run", "call", "get_kernel", "has_kernel", "kernel", "registered_ops"]
