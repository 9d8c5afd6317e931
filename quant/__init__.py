"""fc.quant."""
