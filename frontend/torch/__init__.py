"""PyTorch frontend (torch.export -> fc IR)."""
