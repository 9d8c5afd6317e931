"""The per-layer pruning ratio file (YAML), read by ``fcc compress prune --config`` and
written by ``fcc compress sensitivity --max-drop``::

    criterion: fpgm          # l1 | l2 | fpgm (optional; the command line's wins)
    default: 0.0             # ratio of the layers not listed (optional)
    prune_ratios:            # layer -> ratio in [0, 1): a node name, its weight's name
      conv1: 0.5             # (conv1.weight), the module owning it (conv1), or a source
      layer1.0.conv2: 0.3    # framework's node name
    exclude: [fc]            # layers never pruned (optional)
    skip_first: false        # leave the first layer alone (optional)

``prune_ratios`` is the key the seed tools' YAML files use, so theirs read as they are.
Read with ``yaml.safe_load``; every mistake is one line naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fc.errors import FcError
from fc.ir.serialize import atomic_write

__all__ = ["PruneConfig", "load_prune_config", "save_prune_config"]

_KEYS = ("criterion", "default", "prune_ratios", "exclude", "skip_first")


@dataclass
class PruneConfig:
    prune_ratios: dict[str, float] = field(default_factory=dict)
    criterion: str | None = None
    default: float = 0.0
    exclude: list[str] = field(default_factory=list)
    skip_first: bool = False


def _ratio(path: Path, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v < 1.0:
        raise FcError(f"{path}: {key}: ratio must be a number in [0, 1), got {v!r}")
    return float(v)


def load_prune_config(path: str | os.PathLike) -> PruneConfig:
    import yaml

    from fc.yamlio import safe_load

    path = Path(path)
    try:
        doc = safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FcError(f"{path}: pruning config not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FcError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise FcError(f"{path}: expected a mapping with {list(_KEYS)}, got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise FcError(f"{path}: unknown key(s) {unknown}; known: {list(_KEYS)}")
    ratios = doc.get("prune_ratios") or {}
    if not isinstance(ratios, dict):
        raise FcError(f"{path}: prune_ratios must map layer names to ratios")
    cfg = PruneConfig({str(k): _ratio(path, f"prune_ratios.{k}", v) for k, v in ratios.items()})
    if "criterion" in doc:
        if not isinstance(doc["criterion"], str):
            raise FcError(f"{path}: criterion must be a string, got {doc['criterion']!r}")
        cfg.criterion = doc["criterion"]
    if "default" in doc:
        cfg.default = _ratio(path, "default", doc["default"])
    exclude = doc.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise FcError(f"{path}: exclude must be a list of layer names")
    cfg.exclude = exclude
    if not isinstance(doc.get("skip_first", False), bool):
        raise FcError(f"{path}: skip_first must be true or false")
    cfg.skip_first = doc.get("skip_first", False)
    return cfg


def save_prune_config(cfg: PruneConfig, path: str | os.PathLike, header: str = "") -> None:
    """Write ``cfg`` (atomically), with ``header`` as comment lines on top."""
    import yaml

    doc: dict[str, Any] = {}
    if cfg.criterion:
        doc["criterion"] = cfg.criterion
    if cfg.default:
        doc["default"] = cfg.default
    doc["prune_ratios"] = {k: float(v) for k, v in cfg.prune_ratios.items()}
    if cfg.exclude:
        doc["exclude"] = list(cfg.exclude)
    if cfg.skip_first:
        doc["skip_first"] = True
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    with atomic_write(path, "w") as f:
        f.write(comment + yaml.safe_dump(doc, sort_keys=False))
