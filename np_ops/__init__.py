"""The golden executor: numpy kernels for every IR op and the interpreter that runs them."""

from fc.np_ops.interpreter import Interpreter, Observer, run
from fc.np_ops.registry import KERNELS, call, get_kernel, has_kernel, kernel, registered_ops

__all__ = ["run", "Interpreter", "Observer", "KERNELS", "call", "get_kernel", "has_kernel",
           "kernel", "registered_ops"]
