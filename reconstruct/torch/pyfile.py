"""``save_py``: the reconstructed module as a standalone, readable Python file.

The file needs torch only (no fc): a class whose ``__init__`` builds the same layers at the
same module paths and whose ``forward`` is the code fx generated, plus ``load()``. The
weights go beside it as ``<stem>.pt``, a plain state dict of tensors that ``torch.load``
reads with ``weights_only=True`` (no pickled code). The module is built on the meta device
and its tensors assigned from the file, so loading pays for no random initialisation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from fc.errors import ReconstructError
from fc.ir.serialize import atomic_write
from fc.reconstruct.torch.builder import ReconstructInfo

__all__ = ["save_py", "python_source"]

_FREE = re.compile(r";  (?:\w+ = )+None$")

_HEADER = '''"""{title}

Written by fc (fcc reconstruct torch) from the IR graph {graph!r}; needs only torch.
The weights are in {weights}, beside this file: a plain state dict that loads with
torch.load(weights_only=True).

    from {stem} import load
    model = load()      # eval mode; model.train() to fine-tune
    y = model({args})
"""

from pathlib import Path

import torch
from torch import nn

inf = float("inf")
nan = float("nan")
WEIGHTS = Path(__file__).with_name({weights!r})


def _put(root: nn.Module, path: str, obj: object) -> None:
    """Place a layer, parameter or buffer at a dotted module path."""
    *parents, last = path.split(".")
    for part in parents:
        if part not in root._modules:
            root.add_module(part, nn.Module())
        root = root._modules[part]
    if isinstance(obj, nn.Module):
        root.add_module(last, obj)
    elif isinstance(obj, nn.Parameter):
        root.register_parameter(last, obj)
    else:
        root.register_buffer(last, obj)
'''

_FOOTER = '''

def load(weights: str | Path = WEIGHTS) -> {cls}:
    """The model with its weights, in eval mode."""
    with torch.device("meta"):
        model = {cls}()
    model.load_state_dict(torch.load(weights, weights_only=True), assign=True)
    return model.eval()
'''


def _class_name(graph_name: str) -> str:
    from fc.reconstruct.torch.builder import _identifier

    name = _identifier(graph_name)
    return name[0].upper() + name[1:]


def _layer_source(cls: type[nn.Module], kwargs: dict) -> str:
    if getattr(nn, cls.__name__, None) is not cls:
        raise ReconstructError(f"layer class {cls.__qualname__} is not in torch.nn; cannot write "
                               "it as standalone source")
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"nn.{cls.__name__}({args})"


def python_source(module: fx.GraphModule, weights_name: str, stem: str) -> str:
    """The source of the standalone file (see the module docstring)."""
    info: ReconstructInfo = module.fc_info
    cls = _class_name(info.graph_name)
    lines = [_HEADER.format(title=f"{info.graph_name}, rebuilt in PyTorch.", graph=info.graph_name,
                            weights=weights_name, stem=stem, args=", ".join(info.inputs)
                            ).rstrip(), "", "",
             f"class {cls}(nn.Module):", f'    """{info.graph_name} as torch layers."""', "",
             "    def __init__(self) -> None:", "        super().__init__()"]
    for layer in info.layers:
        lines.append(f"        _put(self, {layer.path!r}, {_layer_source(layer.cls, layer.kwargs)})")
    for t in info.tensors:
        empty = f"torch.empty({t.shape!r}, dtype={t.dtype})"
        param = module.get_parameter(t.path) if t.parameter else None
        obj = (f"nn.Parameter({empty}, requires_grad={param.requires_grad})" if param is not None
               else empty)
        lines.append(f"        _put(self, {t.path!r}, {obj})")
    # fx frees each tensor after its last use (";  x = None"); eager torch does that itself
    body = [_FREE.sub("", ln) for ln in module.code.strip("\n").splitlines()]
    lines.append("")
    lines.extend(("    " + ln).rstrip() for ln in body)
    source = "\n".join(lines).rstrip() + "\n" + _FOOTER.format(cls=cls)
    return source


def save_py(module: fx.GraphModule, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``path`` (.py) and its weights ``<stem>.pt`` beside it; return both paths."""
    path = Path(path)
    if path.suffix != ".py":
        raise ReconstructError(f"{path}: --save_py needs a .py file name")
    if not path.stem.isidentifier():
        raise ReconstructError(f"{path}: the file name must be a Python module name "
                               "(letters, digits, underscores)")
    weights = path.with_suffix(".pt")
    source = python_source(module, weights.name, path.stem)
    compile(source, str(path), "exec")  # never write a file that does not parse
    with atomic_write(weights) as f:
        torch.save(module.state_dict(), f)
    with atomic_write(path, "w") as f:
        f.write(source)
    return path, weights
