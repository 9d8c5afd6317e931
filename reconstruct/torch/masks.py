"""Keeping pruned weights zero while a reconstructed module fine-tunes.

``fc.passes.prune`` returns masks keyed by IR weight name, in the IR's layout (True where a
weight was zeroed). A reconstructed module holds the same weights under its own names and
layouts (``module.fc_info.bindings``: a transposed ``nn.Linear`` weight, a reshaped slope),
so each mask goes through the binding of its weight. Calling :func:`apply_masks` after every
optimizer step is the usual way (Distiller's ``mask_all``): gradient steps and momentum may
move a pruned weight, the mask puts it back to zero, and ``thin`` can remove the channel
after ``write_back``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fc.errors import ReconstructError

__all__ = ["torch_masks", "apply_masks"]


def torch_masks(module: torch.nn.Module, masks: Mapping[str, np.ndarray]
                ) -> dict[str, torch.Tensor]:
    """State-dict key -> bool tensor in the module's layout, for every masked IR weight.
    A mask whose weight the module does not hold is an error (it would silently not apply)."""
    info = getattr(module, "fc_info", None)
    if info is None:
        raise ReconstructError("the module was not made by fc.reconstruct.torch.reconstruct "
                               "(it has no fc_info)")
    out: dict[str, torch.Tensor] = {}
    found: set[str] = set()
    for key, binding in info.bindings.items():
        mask = masks.get(binding.ir_name)
        if mask is not None:
            if tuple(mask.shape) != binding.ir_shape:
                raise ReconstructError(f"mask of {binding.ir_name!r} {list(mask.shape)} does not "
                                       f"fit the weight {list(binding.ir_shape)}")
            out[key] = binding.to_torch(np.asarray(mask, bool))
            found.add(binding.ir_name)
    missing = sorted(set(masks) - found)
    if missing:
        raise ReconstructError(f"the module holds no weight {missing} of the masks")
    return out


@torch.no_grad()
def apply_masks(module: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked entries of the module's tensors in place (``masks`` from
    :func:`torch_masks`)."""
    state = dict(module.named_parameters())
    state.update(module.named_buffers())
    for key, mask in masks.items():
        state[key].masked_fill_(mask, 0)
