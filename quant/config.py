"""The quantization config: YAML in the seed's shape, every key validated, documented defaults.

```
MODEL:      graph, params                       the fused IR (params default: beside graph)
QUAN:
  strategy:  null | minmax | scale_shift | symmetry_max | symmetry_max_t | scale_shift_t
  qconfig:
    weight_quan:    perchannel (default) | perlayer
    table:          calibration table JSON (default: <graph dir>/calibration.json; the text
                    form is written beside it as .txt)
    image_path:     folder of calibration images (JPEG/PNG)
    method:         max (default) | percentile | entropy | mse
    percentile:     99.99        num_bins: 2048     quantized_bins: 255 (entropy)
    bits:           8 (2..16; weight_bits / act_bits override it for one side)
    pow2:           ceil (default) | mse   (scale_shift's power-of-two rule for weights)
    unsigned:       false  (true: ReLU/ReLU6 outputs in [0, 2^b - 1], zero point 0)
    batch_size:     16           num_images: all
    layers:         {node name: float | {bits: 16}}   mixed precision (or the path of a YAML
                    file holding that mapping, as ``fcc quant sensitivity`` writes it)
    allow_float:    false  (the _t strategies: run ops outside the integer set in float)
    rounding:       gemmlowp (default) | single   (symmetry_max_t's requantization: TFLite's
                    default two roundings, or TFLITE_SINGLE_ROUNDING's one; fc.np_ops.integer)
PREPROCESS:         (no keys: resize to the model input's HxW, its channel count, [0, 1])
    resize: [H, W] or S (shorter side)    crop: [H, W] or S (centre)
    scale: 1/255   mean: 0   std: 1        value = (pixel * scale - mean) / std
    channel_order: RGB | BGR
EVALUATION:
    input_images, label_file, image_file, input_node, output_node, batch_size (16), top_k (5)
SAVE_PATH:          the quantized frozen .pb
OUTPUT_DIR:         reports (default: <graph dir>/quant)
```

Relative paths resolve against the config file's folder. ``input_node``/``output_node``
accept the seed's ``'name:index'`` form and plain IR tensor names. A mistake is one
``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fc.errors import FcError

__all__ = ["ConfigError", "QuantConfig", "load_config", "KEYS", "resolve_tensor"]


class ConfigError(FcError):
    """A config file that cannot be used as it is."""


# key path -> (types, default, kind); kind: "file"/"dir" must exist when given, "out" is an
# output path, None a plain value. A default of REQUIRED_LATER is checked by the command
# that needs the key.
_NUM = (int, float)
KEYS: dict[str, tuple[tuple[type, ...], Any, str | None]] = {
    "MODEL.graph": ((str,), None, "file"),
    "MODEL.params": ((str,), None, "file"),
    "QUAN.strategy": ((str, type(None)), "symmetry_max", None),
    "QUAN.qconfig.weight_quan": ((str,), "perchannel", None),
    "QUAN.qconfig.table": ((str,), None, "out"),
    "QUAN.qconfig.image_path": ((str,), None, "dir"),
    "QUAN.qconfig.method": ((str,), "max", None),
    "QUAN.qconfig.percentile": (_NUM, 99.99, None),
    "QUAN.qconfig.num_bins": ((int,), 2048, None),
    "QUAN.qconfig.quantized_bins": ((int,), 255, None),
    "QUAN.qconfig.bits": ((int,), 8, None),
    "QUAN.qconfig.weight_bits": ((int, type(None)), None, None),
    "QUAN.qconfig.act_bits": ((int, type(None)), None, None),
    "QUAN.qconfig.pow2": ((str,), "ceil", None),
    "QUAN.qconfig.unsigned": ((bool,), False, None),
    "QUAN.qconfig.batch_size": ((int,), 16, None),
    "QUAN.qconfig.num_images": ((int, type(None)), None, None),
    "QUAN.qconfig.layers": ((dict, str, type(None)), None, "file"),
    "QUAN.qconfig.allow_float": ((bool,), False, None),
    "QUAN.qconfig.rounding": ((str,), "gemmlowp", None),
    "PREPROCESS.resize": ((int, list, type(None)), None, None),
    "PREPROCESS.crop": ((int, list, type(None)), None, None),
    "PREPROCESS.scale": (_NUM, 1 / 255, None),
    "PREPROCESS.mean": ((int, float, list), 0.0, None),
    "PREPROCESS.std": ((int, float, list), 1.0, None),
    "PREPROCESS.channel_order": ((str,), "RGB", None),
    "EVALUATION.input_images": ((str,), None, "dir"),
    "EVALUATION.label_file": ((str,), None, "file"),
    "EVALUATION.image_file": ((str,), None, "file"),
    "EVALUATION.input_node": ((str, int, type(None)), None, None),
    "EVALUATION.output_node": ((str, int, type(None)), None, None),
    "EVALUATION.batch_size": ((int,), 16, None),
    "EVALUATION.top_k": ((int,), 5, None),
    "SAVE_PATH": ((str, type(None)), None, "out"),
    "OUTPUT_DIR": ((str, type(None)), None, "out"),
}
_SECTIONS = {k.rsplit(".", 1)[0] for k in KEYS if "." in k} | {"QUAN"}
_CHOICES = {
    "QUAN.qconfig.weight_quan": ("perchannel", "perlayer"),
    "QUAN.qconfig.method": ("max", "percentile", "entropy", "mse"),
    "QUAN.qconfig.pow2": ("ceil", "mse"),
    "QUAN.qconfig.rounding": ("gemmlowp", "single"),
    "PREPROCESS.channel_order": ("RGB", "BGR"),
}


@dataclass
class QuantConfig:
    """Validated values by dotted key (``cfg["QUAN.qconfig.bits"]``) plus where they came from."""

    path: Path
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def require(self, key: str) -> Any:
        """A key the running command needs."""
        v = self.values.get(key)
        if v is None:
            raise ConfigError(f"{self.path}: {key} is required for this command")
        return v

    @property
    def graph_path(self) -> Path:
        return Path(self.require("MODEL.graph"))

    @property
    def params_path(self) -> Path:
        p = self.values["MODEL.params"]
        if p:
            return Path(p)
        g = str(self.graph_path)
        if not g.endswith("_graph.json"):
            raise ConfigError(f"{self.path}: MODEL.params is needed ({g} is not *_graph.json)")
        return Path(g[: -len("_graph.json")] + "_params.npz")

    @property
    def table_path(self) -> Path:
        return Path(self.values["QUAN.qconfig.table"] or self.graph_path.parent / "calibration.json")

    @property
    def output_dir(self) -> Path:
        return Path(self.values["OUTPUT_DIR"] or self.graph_path.parent / "quant")

    @property
    def strategy(self) -> str:
        s = self.values["QUAN.strategy"]
        return "null" if s is None else s

    @property
    def weight_bits(self) -> int:
        return self.values["QUAN.qconfig.weight_bits"] or self.values["QUAN.qconfig.bits"]

    @property
    def act_bits(self) -> int:
        return self.values["QUAN.qconfig.act_bits"] or self.values["QUAN.qconfig.bits"]

    def layer_settings(self, graph: Any = None) -> dict[str, Any]:
        """``qconfig.layers`` as ``LayerSetting`` by node name; with ``graph``, every name must
        be one of its nodes."""
        from fc.quant.plan import LayerSetting

        layers, where = self._layers()
        out = {}
        names = None if graph is None else {n.name for n in graph}
        for name, v in layers.items():
            key = f"{where}: QUAN.qconfig.layers.{_shown(name)}"
            if names is not None and str(name) not in names:
                raise ConfigError(f"{key}: no node of that name in graph {graph.name!r}")
            if v == "float":
                out[str(name)] = LayerSetting(float=True)
            elif isinstance(v, dict) and set(v) <= {"bits"} and isinstance(v.get("bits"), int) \
                    and not isinstance(v["bits"], bool) and 2 <= v["bits"] <= 16:
                out[str(name)] = LayerSetting(weight_bits=v["bits"], act_bits=v["bits"])
            else:
                raise ConfigError(f"{key}: expected 'float' or {{bits: 2..16}}, got {v!r}")
        return out

    def _layers(self) -> tuple[dict[Any, Any], str]:
        """The mapping and where it came from (the config, or the layers file it names)."""
        v = self.values["QUAN.qconfig.layers"]
        if not isinstance(v, str):
            return v or {}, str(self.path)
        import yaml

        from fc.yamlio import safe_load

        where = f"{self.path}: QUAN.qconfig.layers file {v}"
        try:
            doc = safe_load(Path(v).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{where}: cannot read ({e})") from None
        except yaml.YAMLError as e:
            problem = " ".join(str(getattr(e, "problem", None) or e).split())
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
        if doc is None:
            return {}, v
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{where}: expected a mapping of node name to float or "
                              f"{{bits: N}}, got {type(doc).__name__}")
        return dict(doc), v

    def strategy_object(self) -> Any:
        from fc.quant.strategies import get_strategy

        try:
            return get_strategy(self.strategy, pow2=self.values["QUAN.qconfig.pow2"],
                                unsigned=self.values["QUAN.qconfig.unsigned"])
        except FcError as e:
            raise ConfigError(f"{self.path}: QUAN.strategy: {e}") from None


def _shown(name: Any) -> str:
    """A key as a message shows it: as written if printable, else quoted with escapes (found
    by fc.fuzz: a key holding a newline or a lone surrogate made the error two lines, or
    unprintable on stderr)."""
    text = str(name)
    return text if text.isprintable() else ascii(text)


def _flatten(doc: Mapping[str, Any], path: Path, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if key in KEYS:
            out[key] = v
        elif key in _SECTIONS:
            if v is None:
                continue
            if not isinstance(v, Mapping):
                raise ConfigError(f"{path}: {key} must be a mapping, got {type(v).__name__}")
            out.update(_flatten(v, path, key + "."))
        else:
            near = sorted(x for x in KEYS if x.startswith(prefix))
            raise ConfigError(f"{path}: unknown key {_shown(key)} (known here: "
                              f"{', '.join(x[len(prefix):] for x in near)})")
    return out


def _type_name(types: Sequence[type]) -> str:
    return "/".join("null" if t is type(None) else t.__name__ for t in types)


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
                ) -> QuantConfig:
    """Read, validate and complete a config; ``overrides`` (dotted keys, from the command
    line) win over the file, and their relative paths are relative to the current directory."""
    import yaml

    from fc.yamlio import safe_load

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    try:
        doc = safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(doc).__name__}")
    flat = _flatten(doc, path)
    base = path.resolve().parent
    resolved_from: dict[str, Path] = {k: base for k in flat}
    for k, v in (overrides or {}).items():
        if k not in KEYS:
            raise ConfigError(f"override {_shown(k)}: unknown key (known: {', '.join(KEYS)})")
        if v is not None:
            flat[k] = v
            resolved_from[k] = Path.cwd()
    values: dict[str, Any] = {}
    for key, (types, default, kind) in KEYS.items():
        v = flat.get(key, default)
        if key in flat:
            if isinstance(v, bool) and bool not in types or not isinstance(v, types):
                raise ConfigError(f"{path}: {key}: expected {_type_name(types)}, got "
                                  f"{type(v).__name__} {v!r}")
            if key in _CHOICES and v not in _CHOICES[key]:
                raise ConfigError(f"{path}: {key}: {v!r} is not one of {', '.join(_CHOICES[key])}")
            if kind and isinstance(v, str):
                p = Path(os.path.expanduser(v))
                v = str(p if p.is_absolute() else (resolved_from[key] / p))
                if kind == "file" and not Path(v).is_file():
                    raise ConfigError(f"{path}: {key}: file not found: {_shown(v)}")
                if kind == "dir" and not Path(v).is_dir():
                    raise ConfigError(f"{path}: {key}: folder not found: {_shown(v)}")
        values[key] = v
    cfg = QuantConfig(path, values)
    _check_values(cfg)
    return cfg


def _check_values(cfg: QuantConfig) -> None:
    v, p = cfg.values, cfg.path
    for key in ("QUAN.qconfig.bits", "QUAN.qconfig.weight_bits", "QUAN.qconfig.act_bits"):
        if v[key] is not None and not 2 <= v[key] <= 16:
            raise ConfigError(f"{p}: {key}: {v[key]} is not in 2..16")
    for key in ("QUAN.qconfig.batch_size", "EVALUATION.batch_size", "EVALUATION.top_k",
                "QUAN.qconfig.num_bins", "QUAN.qconfig.quantized_bins"):
        if v[key] < 1:
            raise ConfigError(f"{p}: {key}: must be positive, got {v[key]}")
    if v["QUAN.qconfig.num_bins"] % 2:
        raise ConfigError(f"{p}: QUAN.qconfig.num_bins: must be even, got {v['QUAN.qconfig.num_bins']}")
    if not 0 < v["QUAN.qconfig.percentile"] <= 100:
        raise ConfigError(f"{p}: QUAN.qconfig.percentile: must be in (0, 100]")
    if v["QUAN.qconfig.num_images"] is not None and v["QUAN.qconfig.num_images"] < 1:
        raise ConfigError(f"{p}: QUAN.qconfig.num_images: must be positive")
    for key in ("PREPROCESS.resize", "PREPROCESS.crop"):
        s = v[key]
        if isinstance(s, list) and not (len(s) == 2 and all(isinstance(d, int) and d > 0 for d in s)) \
                or isinstance(s, int) and s <= 0:
            raise ConfigError(f"{p}: {key}: expected a positive size or [H, W], got {s!r}")
    for key in ("PREPROCESS.mean", "PREPROCESS.std"):
        s = v[key]
        if isinstance(s, list) and not all(isinstance(d, int | float) for d in s):
            raise ConfigError(f"{p}: {key}: expected numbers, got {s!r}")
    std = v["PREPROCESS.std"]
    if any(x == 0 for x in (std if isinstance(std, list) else [std])):
        raise ConfigError(f"{p}: PREPROCESS.std: must not be 0")
    cfg.strategy_object()
    cfg.layer_settings()


def resolve_tensor(graph: Any, ref: str | int | None, *, what: str, default: str) -> str:
    """A tensor name from the seed's ``'name:index'`` form (node ``name``'s output ``index``,
    or tensor ``name`` for index 0), a plain tensor name, or None (``default``)."""
    if ref is None:
        return default
    ref = str(ref)
    names = {v.name for v in graph.inputs} | {v.name for n in graph for v in n.outputs}
    if ref in names:
        return ref
    base, sep, idx = ref.rpartition(":")
    if sep and idx.isdigit():
        for node in graph:
            if node.name == base and int(idx) < len(node.outputs):
                return node.outputs[int(idx)].name
        if int(idx) == 0 and base in names:
            return base
    raise ConfigError(f"{what} {ref!r}: no such tensor or node output in graph {graph.name!r}")
