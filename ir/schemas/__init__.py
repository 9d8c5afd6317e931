"""Op schemas by family. Each module registers its ops on import; the list is explicit."""

from fc.ir.schemas import elementwise, nn, quant, tensor

__all__ = ["elementwise", "nn", "quant", "tensor"]
