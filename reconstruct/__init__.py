"""fc.reconstruct."""
