"""fc.passes."""
