"""PyTorch frontend: architectures fc defines itself (no torchvision)."""
