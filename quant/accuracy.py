"""Accuracy over a labelled image list: the dataset, batched evaluation of one configuration,
top-k.

The list (``EVALUATION.image_file``) has one ``relative/path label`` per line (ImageNet val
style), the label a class index or a name/synset of ``label_file`` (one per line, the line
number being the class index); paths are relative to ``input_images``. Blank lines and ``#``
comments are ignored. A malformed line, a missing image or an unknown label is one
``DatasetError`` naming ``file:line``; with ``skip_missing`` such lines are dropped and
counted (``Dataset.skipped``).

``evaluate(graph, cfg, strategy, weight_quan, dataset)`` runs one configuration (the float
graph for ``strategy=None``, the quantized IR in simulation, or in integers for the ``_t``
strategies) over the dataset in batches and returns an ``Accuracy``: top-1/top-k, and the
top-1 agreement with the float predictions when given (``float_top1``). Preprocessing is the
calibration's (``fc.quant.images.Preprocess``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc.errors import FcError
from fc.ir.core import Graph

__all__ = ["DatasetError", "Dataset", "read_dataset", "dataset_for", "Accuracy", "evaluate",
           "predict", "runner_for", "topk", "FLOAT"]

#: the name of the float (unquantized) configuration
FLOAT = "float"


class DatasetError(FcError):
    """A labelled list that cannot be used as it is (one line naming file:line)."""


@dataclass(frozen=True)
class Dataset:
    """Labelled images: ``files[i]`` has class ``labels[i]`` (an index into ``classes``)."""

    files: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...] = ()
    skipped: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.files)

    def shard(self, index: int, count: int) -> Dataset:
        """The ``index``-th of ``count`` contiguous parts (for independent tasks)."""
        n = len(self.files)
        a, b = n * index // count, n * (index + 1) // count
        return Dataset(self.files[a:b], self.labels[a:b], self.classes, 0, self.source)

    def subset(self, limit: int | None) -> Dataset:
        if not limit or limit >= len(self):
            return self
        return Dataset(self.files[:limit], self.labels[:limit], self.classes, self.skipped,
                       self.source)

    def fingerprint_parts(self) -> list[Any]:
        out = []
        for p, y in zip(self.files, self.labels.tolist()):
            st = p.stat()
            out.append([str(p), int(y), st.st_size, st.st_mtime_ns])
        return out


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read {what} ({e})") from None


_INDEX = re.compile(r"-?[0-9]{1,18}")


def read_dataset(image_file: str | os.PathLike, root: str | os.PathLike,
                 label_file: str | os.PathLike | None = None, *, skip_missing: bool = False,
                 num_classes: int | None = None) -> Dataset:
    """Read a labelled list (see the module docstring). ``label_file`` gives the class names
    (a label may then be a name); ``num_classes`` bounds numeric labels when given."""
    image_file, root = Path(image_file), Path(root)
    classes: tuple[str, ...] = ()
    if label_file is not None:
        lf = Path(label_file)
        names = []
        for i, line in enumerate(_read_lines(lf, "label file"), 1):
            text = line.strip()
            if not text:
                raise DatasetError(f"{lf}:{i}: empty class name (one name or synset per line)")
            # "n01440764 tench, Tinca tinca": the first word is the synset
            names.append(text.split()[0] if text.split()[0].startswith("n") and
                         text.split()[0][1:].isdigit() else text)
        if not names:
            raise DatasetError(f"{lf}: no classes")
        classes = tuple(names)
    index = {c: i for i, c in enumerate(classes)}
    bound = len(classes) if classes else num_classes
    files: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for i, line in enumerate(_read_lines(image_file, "image list"), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{image_file}:{i}"
        parts = text.rsplit(None, 1)
        problem = None
        label = -1
        if len(parts) != 2:
            problem = f"{where}: expected 'relative/path label', got {text!r}"
        else:
            rel, lab = parts
            if _INDEX.fullmatch(lab):  # ASCII digits only ("\u00b2".isdigit() is True)
                label = int(lab)
                if label < 0 or (bound is not None and label >= bound):
                    problem = f"{where}: label {label} is not a class index (0..{(bound or 1) - 1})"
            elif lab in index:
                label = index[lab]
            else:
                problem = (f"{where}: unknown label {lab!r}" +
                           (f" (not in {label_file})" if label_file else " (no label_file)"))
            path = root / rel
            if problem is None and "\0" in rel:
                problem = f"{where}: the path holds a NUL character"
            elif problem is None and not path.is_file():
                problem = f"{where}: image not found: {path}"
        if problem is not None:
            if skip_missing:
                skipped += 1
                continue
            raise DatasetError(problem)
        files.append(path)
        labels.append(label)
    if not files:
        raise DatasetError(f"{image_file}: no usable images" +
                           (f" ({skipped} skipped)" if skipped else ""))
    return Dataset(tuple(files), np.asarray(labels, np.int64), classes, skipped, str(image_file))


def dataset_for(cfg: Any, *, skip_missing: bool = False, num_classes: int | None = None
                ) -> Dataset:
    """The config's labelled list (``EVALUATION.image_file`` under ``input_images``)."""
    ev = "EVALUATION."
    return read_dataset(cfg.require(ev + "image_file"), cfg.require(ev + "input_images"),
                        cfg[ev + "label_file"], skip_missing=skip_missing,
                        num_classes=num_classes)


def topk(logits: np.ndarray, k: int) -> np.ndarray:
    """(N, k) class indices, best first (ties: the lower index first, as argmax)."""
    x = np.asarray(logits).reshape(len(logits), -1)
    k = min(k, x.shape[1])
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


@dataclass
class Accuracy:
    """One configuration's figures on a dataset."""

    name: str
    images: int
    correct1: int
    correctk: int
    k: int = 5
    agree: int | None = None       # top-1 equal to the float run's
    seconds: float = 0.0
    predictions: np.ndarray | None = field(default=None, repr=False)  # (N, k)

    @property
    def top1(self) -> float:
        return self.correct1 / self.images if self.images else 0.0

    @property
    def top5(self) -> float:
        return self.correctk / self.images if self.images else 0.0

    @property
    def agreement(self) -> float | None:
        return None if self.agree is None or not self.images else self.agree / self.images

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def merge(self, other: Accuracy) -> Accuracy:
        """Two shards' figures as one (predictions concatenated in order)."""
        preds = None
        if self.predictions is not None and other.predictions is not None:
            preds = np.concatenate([self.predictions, other.predictions])
        agree = None if self.agree is None or other.agree is None else self.agree + other.agree
        return Accuracy(self.name, self.images + other.images, self.correct1 + other.correct1,
                        self.correctk + other.correctk, self.k, agree,
                        self.seconds + other.seconds, preds)


def runner_for(graph: Graph, spec: Any = None, *, allow_float: bool = False,
               rounding: str = "gemmlowp"
               ) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """feeds -> outputs for the float graph (``spec`` None or the null strategy), the
    quantized IR in simulation, or (``_t`` strategies) in integers (``rounding``: the
    requantization's, ``fc.np_ops.integer.requantize``)."""
    from fc.np_ops import Interpreter

    if spec is None or not spec.strategy.quantizes:
        return Interpreter(graph).run
    from fc.quant.quantize import quantized_graph

    qg = quantized_graph(graph, spec)
    if spec.strategy.integer:
        from fc.quant.integer_run import IntegerInterpreter

        return IntegerInterpreter(qg, pow2=spec.strategy.name.startswith("scale_shift"),
                                  allow_float=allow_float, rounding=rounding).run
    from fc.quant.simulate import SimInterpreter

    return SimInterpreter(qg).run


def _batches(dataset: Dataset, pre: Any, batch_size: int, desc: str, progress: bool
             ) -> Iterator[tuple[slice, np.ndarray]]:
    from fc.quant.images import batches

    start = 0
    for chunk, x in batches(dataset.files, pre, batch_size, desc=desc, progress=progress):
        yield slice(start, start + len(chunk)), x
        start += len(chunk)


def predict(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], dataset: Dataset,
            pre: Any, *, input_name: str, output_name: str, batch_size: int = 16, k: int = 5,
            desc: str = "", progress: bool = True) -> tuple[np.ndarray, float]:
    """(N, k) top-k predictions of ``run`` over the dataset and the CPU-clock seconds spent
    (preprocessing included)."""
    out = np.empty((len(dataset), k), np.int64)
    t0 = time.perf_counter()
    for sl, x in _batches(dataset, pre, batch_size, desc, progress):
        y = run({input_name: x})[output_name]
        got = topk(y, k)
        if got.shape[1] < k:  # fewer classes than k: pad with -1 (never a label)
            got = np.pad(got, ((0, 0), (0, k - got.shape[1])), constant_values=-1)
        out[sl] = got
    return out, time.perf_counter() - t0


def score(name: str, preds: np.ndarray, labels: np.ndarray, seconds: float,
          float_top1: np.ndarray | None = None) -> Accuracy:
    labels = np.asarray(labels).reshape(-1)
    c1 = int(np.sum(preds[:, 0] == labels))
    ck = int(np.sum(np.any(preds == labels[:, None], axis=1)))
    agree = None if float_top1 is None else int(np.sum(preds[:, 0] == np.asarray(float_top1)))
    return Accuracy(name, len(labels), c1, ck, preds.shape[1], agree, seconds, preds)


def config_name(strategy: str | None, weight_quan: str | None) -> str:
    if strategy is None:
        return FLOAT
    if strategy == "null":
        return "null"
    return f"{strategy}/{weight_quan}"


def evaluate(graph: Graph, cfg: Any, strategy: str | None, weight_quan: str | None,
             dataset: Dataset, *, table: Any = None, spec: Any = None,
             float_top1: np.ndarray | None = None, layers: dict[str, Any] | None = None,
             progress: bool = True, batch_size: int | None = None) -> Accuracy:
    """Top-1/top-k of one configuration on ``dataset``.

    ``strategy``: None (the float graph) or a strategy name (``null`` runs the float graph
    too); ``weight_quan``: ``perlayer``/``perchannel``. The calibration ``table`` is needed
    for a quantizing strategy unless ``spec`` is given (then ``strategy``/``weight_quan``
    only name the row). ``layers``: mixed-precision settings (``QUAN.qconfig.layers`` form,
    as ``fc.quant.plan.LayerSetting``s), default the config's. ``float_top1``: the float
    run's top-1 (``Accuracy.predictions[:, 0]`` of the float evaluation) for the agreement
    figure.
    """
    from fc.quant import pipeline

    k = int(cfg["EVALUATION.top_k"])
    bs = int(batch_size or cfg["EVALUATION.batch_size"])
    if spec is None and strategy not in (None, "null"):
        if table is None:
            raise FcError(f"evaluate {strategy}: a calibration table is needed")
        from fc.quant.strategies import get_strategy

        strat = get_strategy(strategy, pow2=cfg["QUAN.qconfig.pow2"],
                             unsigned=cfg["QUAN.qconfig.unsigned"])
        spec = pipeline.spec_for(cfg, graph, table, strat,
                                 per_channel=(weight_quan or cfg["QUAN.qconfig.weight_quan"])
                                 == "perchannel", layers=layers)
    run = runner_for(graph, spec, allow_float=cfg["QUAN.qconfig.allow_float"],
                     rounding=cfg["QUAN.qconfig.rounding"])
    name = config_name(strategy if spec is None or strategy is not None else spec.strategy.name,
                       weight_quan)
    preds, seconds = predict(run, dataset, pipeline.preprocess_for(cfg, graph),
                             input_name=pipeline.input_tensor(cfg, graph),
                             output_name=pipeline.output_tensor(cfg, graph), batch_size=bs, k=k,
                             desc=name, progress=progress)
    return score(name, preds, dataset.labels, seconds, float_top1)


def check_classes(dataset: Dataset, graph: Graph, cfg: Any) -> None:
    """Refuse a list whose labels exceed the model's number of outputs."""
    from fc.quant import pipeline

    out = pipeline.output_tensor(cfg, graph)
    shape: Sequence[int] | None = None
    for v in graph.outputs:
        if v.name == out:
            shape = v.shape
    if shape is None:
        return
    n = int(np.prod([d for d in shape[1:] if isinstance(d, int)])) if len(shape) > 1 else 0
    if n and len(dataset) and int(dataset.labels.max()) >= n:
        i = int(np.argmax(dataset.labels >= n))
        raise DatasetError(f"{dataset.source}: label {int(dataset.labels[i])} of "
                           f"{dataset.files[i].name} is not one of the model's {n} classes")
