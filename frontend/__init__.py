"""fc.frontend."""
