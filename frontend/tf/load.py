"""Every TensorFlow source as one frozen graph: a GraphDef, its constants, inputs and outputs.

- A **Keras model** (object, ``.keras`` or ``.h5`` file) is traced into a concrete function
  with a static input shape, and frozen by reading each captured variable's value: its
  ``ReadVariableOp`` then reads a constant. This is what ``convert_variables_to_constants_v2``
  does, minus its grappler round trip, which takes 12 s of the 15 s it needs for Keras'
  ResNet-50 (fc's freezing: 0.3 s after the 3 s trace). A graph that calls functions (none
  of the Keras applications does) is frozen by ``convert_variables_to_constants_v2``, which
  inlines them.
- A **SavedModel** directory: its ``serving_default`` signature, frozen by
  ``convert_variables_to_constants_v2`` (a loaded signature calls the saved function).
- A **frozen GraphDef** ``.pb`` (TF1's deployment format) is read as it is; its inputs are
  its Placeholders and, unless named, its outputs the tensors no node reads.

Keras files are loaded with ``safe_mode=True``: a Lambda layer's code is never run, and a
custom layer is refused with Keras' message naming its class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fc._tf import import_tf
from fc.errors import FcError, ImportError_
from fc.limits import Budget, nbytes_of
from fc.spelling import input_shape_hint

__all__ = ["FrozenModel", "load_source", "freeze_keras", "tensor_name"]

InputShapes = Mapping[str, Sequence[int]] | Sequence[int] | None


def tensor_name(name: str) -> str:
    """``"node"`` -> ``"node:0"`` (a GraphDef input or fetch may omit the output index)."""
    return name if ":" in name else f"{name}:0"


@dataclass
class FrozenModel:
    """A GraphDef whose variables are constants, ready for the op table."""

    graph_def: Any
    #: graph input: Placeholder node name -> (IR input name, static shape, numpy dtype name)
    inputs: dict[str, tuple[str, tuple[int, ...], str]]
    #: output tensor names (``"node:0"``) -> IR output names, in order
    outputs: dict[str, str]
    #: Placeholder node name -> value, for placeholders that stand for captured variables
    captured: dict[str, np.ndarray] = field(default_factory=dict)
    #: Placeholder node name -> the variable's own name (Keras' ``"conv1/kernel"``)
    weight_names: dict[str, str] = field(default_factory=dict)
    source: str = "<tf graph>"
    name: str = "tf"
    #: seconds spent tracing and freezing (TensorFlow's time, not fc's)
    seconds: float = 0.0


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _static_shape(name: str, shape: Sequence[int | None], override: Sequence[int] | None,
                  where: str) -> tuple[int, ...]:
    """A static input shape: the override, else the declared one with an unknown batch = 1;
    any other unknown dim needs an override."""
    if override is not None:
        override = tuple(int(d) for d in override)
        if len(override) != len(shape) or any(d <= 0 for d in override):
            raise ImportError_(f"{where}: input {name!r} is {len(shape)}-D {list(shape)}; the "
                               f"shape given, {list(override)}, does not fit it")
        if any(s is not None and s != d for s, d in zip(shape[1:], override[1:])):
            raise ImportError_(f"{where}: input {name!r} is declared {list(shape)}; the shape "
                               f"given, {list(override)}, differs beyond the batch dim")
        return override
    late = [i for i, d in enumerate(shape) if (d is None or d < 0) and i != 0]
    if late:
        dims = [1 if i == 0 and (d is None or d < 0) else ("H" if d is None or d < 0 else d)
                for i, d in enumerate(shape)]
        raise ImportError_(f"{where}: input {name!r} has unknown dim(s) {late} in "
                           f"{['?' if d is None or d < 0 else d for d in shape]}; pass "
                           f"{input_shape_hint(name, dims)}")
    return tuple(1 if d is None or d < 0 else int(d) for d in shape)


def _overrides(names: list[str], given: InputShapes, where: str) -> dict[str, Sequence[int]]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        if len(names) != 1:
            raise ImportError_(f"{where}: a bare input shape needs a one-input model; the inputs "
                               f"are {names}")
        return {names[0]: tuple(given)}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ImportError_(f"{where}: input shapes name {unknown}, which are not model inputs "
                           f"{names}")
    return dict(given)


# -- Keras ---------------------------------------------------------------------------------
def freeze_keras(model: Any, *, input_shapes: InputShapes = None, source: str = "",
                 name: str | None = None) -> FrozenModel:
    """Trace a Keras model at a static input shape and freeze it."""
    import time

    tf = import_tf()
    start = time.perf_counter()
    source = source or f"<Keras model {getattr(model, 'name', '?')!r}>"
    inputs = list(model.inputs)
    in_names = [t.name.split(":")[0] for t in inputs]
    given = _overrides(in_names, input_shapes, source)
    specs = []
    for t, n in zip(inputs, in_names):
        shape = _static_shape(n, list(t.shape), given.get(n), source)
        specs.append(tf.TensorSpec(shape, tf.as_dtype(t.dtype), name=n))

    def call(*xs: Any) -> Any:
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    try:
        concrete = tf.function(call, autograph=False).get_concrete_function(*specs)
    except Exception as e:  # a layer that cannot be traced at this shape
        raise ImportError_(f"{source}: Keras could not trace the model at input shape(s) "
                           f"{[list(s.shape) for s in specs]} ({_first_line(e)})") from None
    out_names = list(getattr(model, "output_names", None) or
                     [t.name.split(":")[0] for t in model.outputs])
    frozen = _freeze_concrete(concrete, in_names, out_names, source, name or model.name)
    frozen.seconds = time.perf_counter() - start
    return frozen


_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def inline_calls(graph_def: Any, source: str) -> Any:
    """``graph_def`` with every function call replaced by the function's body (Keras wraps
    a grouped convolution in an XLA-compiled function that TF's own inliner leaves alone).
    A call ``c`` becomes the body's nodes, named ``c/<node>``, its arguments Identities of the
    call's inputs, and an ``IdentityN`` named ``c`` of the returned tensors, so readers of
    ``c:i`` need no rewiring."""
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    tf = import_tf()
    library = {f.signature.name: f for f in graph_def.library.function}
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    pending = list(graph_def.node)
    depth = 0
    while pending:
        depth += 1
        if depth > 32:
            raise ImportError_(f"{source}: function calls nested deeper than 32")
        again = []
        for node in pending:
            fn = library.get(node.attr["f"].func.name) if node.op in _CALLS else None
            if node.op in _CALLS and fn is None:
                raise ImportError_(f"{source}: node {node.name!r} calls function "
                                   f"{node.attr['f'].func.name!r}, which the graph does not define")
            if fn is None:
                out.node.add().CopyFrom(node)
                continue
            body, names = function_def_to_graph_def(fn)
            data = [i for i in node.input if not i.startswith("^")]
            args = {a.name: data[k] for k, a in enumerate(fn.signature.input_arg)}
            for n in body.node:
                new = tf.compat.v1.NodeDef()
                new.CopyFrom(n)
                new.name = f"{node.name}/{n.name}"
                if n.name in args:  # an argument: the call's input
                    new.op = "Identity"
                    new.ClearField("attr")
                    new.attr["T"].type = n.attr["dtype"].type
                    del new.input[:]
                    new.input.append(args[n.name])
                else:
                    del new.input[:]
                    new.input.extend(("^" if i.startswith("^") else "") + f"{node.name}/"
                                     + i.lstrip("^") for i in n.input)
                again.append(new)
            ret = tf.compat.v1.NodeDef(name=node.name, op="IdentityN")
            ret.input.extend(f"{node.name}/{names[fn.ret[a.name]]}" for a in
                             fn.signature.output_arg)
            ret.attr["T"].list.type.extend(a.type for a in fn.signature.output_arg)
            again.append(ret)
        pending = again if any(n.op in _CALLS for n in again) else []
        if not pending:
            for n in again:
                out.node.add().CopyFrom(n)
    return out


def _freeze_concrete(concrete: Any, in_names: list[str], out_names: list[str], source: str,
                     name: str) -> FrozenModel:
    tf = import_tf()
    graph_def = concrete.graph.as_graph_def()
    if graph_def.library.function:
        graph_def = inline_calls(graph_def, source)
    captured: dict[str, np.ndarray] = {}
    weight_names: dict[str, str] = {}
    for external, internal in concrete.graph.captures:
        value = _captured_value(tf, external)
        if value is None:
            raise ImportError_(f"{source}: the traced graph captures {internal.name!r}, which "
                               "is neither a variable nor a constant")
        captured[internal.op.name] = value
        if id(external) in _VARIABLES:
            weight_names[internal.op.name] = _VARIABLES[id(external)][1]
    inputs = {t.op.name: (n, tuple(int(d) for d in t.shape), np.dtype(t.dtype.as_numpy_dtype).name)
              for t, n in zip(concrete.inputs[:len(in_names)], in_names)}
    outputs = {t.name: n for t, n in zip(concrete.outputs, _unique(out_names, len(concrete.outputs)))}
    return FrozenModel(graph_def, inputs, outputs, captured, weight_names, source, name)


def _captured_value(tf: Any, external: Any) -> np.ndarray | None:
    """The value behind a captured tensor: a variable's (through its handle) or a constant."""
    if external.dtype == tf.resource:
        found = _VARIABLES.get(id(external))
        return None if found is None else np.asarray(found[0].numpy())
    try:
        return np.asarray(external.numpy())
    except Exception:
        return None


# resource handle id -> (variable, its name), filled while freezing (a handle does not know
# its variable)
_VARIABLES: dict[int, tuple[Any, str]] = {}


def _unique(names: list[str], n: int) -> list[str]:
    names = (names + [f"output_{i}" for i in range(len(names), n)])[:n]
    seen: dict[str, int] = {}
    out = []
    for s in names:
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.append(s if k == 0 else f"{s}_{k}")
    return out


def _convert_v2(concrete: Any, in_names: list[str], out_names: list[str], source: str,
                name: str) -> FrozenModel:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        frozen = convert_variables_to_constants_v2(concrete)
    except Exception as e:
        raise ImportError_(f"{source}: TensorFlow cannot freeze the model ({_first_line(e)})") \
            from None
    inputs = {}
    for t, n in zip(frozen.inputs, in_names):
        shape = tuple(-1 if d is None else int(d) for d in t.shape)
        inputs[t.op.name] = (n, shape, np.dtype(t.dtype.as_numpy_dtype).name)
    outputs = {t.name: n for t, n in zip(frozen.outputs, _unique(out_names, len(frozen.outputs)))}
    return FrozenModel(frozen.graph.as_graph_def(), inputs, outputs, source=source, name=name)


# -- files ---------------------------------------------------------------------------------
def load_source(model: Any, *, input_shapes: InputShapes = None, outputs: Sequence[str] | None = None
                ) -> FrozenModel:
    """A Keras model object, a ``.keras``/``.h5`` file, a SavedModel directory or a frozen
    ``.pb`` as a :class:`FrozenModel`; the static input shapes are resolved here."""
    if not isinstance(model, str | os.PathLike):
        if hasattr(model, "inputs") and hasattr(model, "outputs") and callable(model):
            return _with_variables(model, lambda: freeze_keras(model, input_shapes=input_shapes))
        raise ImportError_(f"import_tf: expected a Keras model or a path, got "
                           f"{type(model).__name__}")
    path = Path(os.fspath(model))
    if path.is_dir():
        return _saved_model(path, input_shapes)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return _keras_file(path, input_shapes)
    if suffix == ".pb":
        return _graph_def_file(path, input_shapes, outputs)
    raise ImportError_(f"{path}: not a TensorFlow model (expected a .keras/.h5 file, a "
                       "SavedModel directory or a frozen GraphDef .pb)")


def _with_variables(model: Any, freeze: Any) -> FrozenModel:
    """Run ``freeze`` with the model's variables findable by handle."""
    handles = {id(tv.handle): (tv, name) for tv, name in _model_variables(model)}
    _VARIABLES.update(handles)
    try:
        return freeze()
    finally:
        for k in handles:
            _VARIABLES.pop(k, None)


def _model_variables(model: Any) -> list[tuple[Any, str]]:
    """The model's ``tf.Variable``s and their names (a Keras 3 variable holds one as
    ``.value`` and names it by its ``path``, ``"conv1/kernel"``)."""
    out = []
    for v in getattr(model, "variables", ()):
        tv = getattr(v, "value", v)
        if getattr(tv, "handle", None) is not None:
            name = getattr(v, "path", None) or tv.name.split(":")[0]
            out.append((tv, name))
    return out


def _keras_file(path: Path, input_shapes: InputShapes) -> FrozenModel:
    import_tf()
    import keras

    _judge_keras_archive(path)  # first: reading even the config can hang libhdf5
    custom = _custom_classes(path)
    if custom:
        raise ImportError_(f"{path}: Keras cannot load it: it uses custom class(es) "
                           f"{', '.join(custom)}, which are not part of Keras (fc loads Keras "
                           "files without running code from them)")
    with _weights_judged(keras, path) as judged:
        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as e:
            if judged.error is not None:  # Keras may wrap it in its own exception
                raise judged.error from None
            raise ImportError_(f"{path}: Keras cannot load it ({_first_line(e)})") from None
    return _with_variables(model, lambda: freeze_keras(model, input_shapes=input_shapes,
                                                       source=str(path), name=path.stem))


def _judge_keras_archive(path: Path) -> None:
    """A ``.keras`` zip's members judged by the sizes its directory declares, before Keras
    inflates them, and its weights file by the tensors it declares; an ``.h5`` file by its
    size (read whole by h5py's cache at worst) and by every dataset and attribute it declares
    (:mod:`fc.frontend.tf.declared`)."""
    import zipfile

    from fc.frontend.tf.declared import judge_h5, judge_npz, member_file

    budget = Budget(str(path))
    if path.suffix.lower() != ".keras":
        budget.add(path.stat().st_size, "the file", one_tensor=False)
        judge_h5(str(path), path)  # its datasets as declared, before h5py reads them
        return
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:  # a member holds many tensors (its datasets judged below)
                budget.add(info.file_size, f"member {info.filename!r}", one_tensor=False)
            names = {i.filename for i in infos}
            # the weights file's datasets as declared (a small member can declare gigabytes)
            for name, judge in (("model.weights.h5", judge_h5), ("model.weights.npz", judge_npz)):
                if name in names:
                    with member_file(path, zf, name) as f:
                        judge(f"{path}: {name}", f)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError):
        return  # Keras' own error says it is not an archive


class _Judged:
    error: FcError | None = None


@contextmanager
def _weights_judged(keras: Any, path: Path) -> Iterator[_Judged]:
    """Keras builds every layer from the file's config and allocates its weights at the
    declared sizes *before* reading the weights file: a 2 KB config with
    ``Dense(units=10**9)`` asks for gigabytes. Keras has no hook for that, so while fc loads
    a Keras file, ``Layer.add_weight`` judges each weight with ``fc.limits`` first (restored
    afterwards; a Keras file loads in one thread)."""
    from keras.src.layers.layer import Layer

    real = Layer.add_weight
    judged, budget = _Judged(), Budget(str(path))

    def add_weight(self: Any, *args: Any, **kwargs: Any) -> Any:
        shape = kwargs.get("shape", args[0] if args else None) or ()
        dtype = kwargs.get("dtype") or getattr(self, "variable_dtype", None) or "float32"
        try:
            dims = [int(d) for d in shape]
            np_dtype = np.dtype(keras.backend.standardize_dtype(dtype))
        except (TypeError, ValueError, OverflowError):
            dims = []  # not a plain shape: Keras says what is wrong with it
        if dims and all(d >= 0 for d in dims):
            what = (f"{path}: layer {getattr(self, 'name', '?')!r}: weight {kwargs.get('name')!r} "
                    f"({np_dtype.name}{dims})")
            try:
                budget.add(nbytes_of(dims, np_dtype), what)
            except FcError as e:
                judged.error = judged.error or e
                raise
        return real(self, *args, **kwargs)

    Layer.add_weight = add_weight
    try:
        yield judged
    finally:
        Layer.add_weight = real


def _custom_classes(path: Path) -> list[str]:
    """Classes a Keras file's config names from outside Keras (``"Doubler (module
    '__main__')"``), read from the config only: a ``.keras`` zip's ``config.json`` or an
    ``.h5`` file's ``model_config`` attribute."""
    import json
    import zipfile

    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as zf:
                config = json.loads(zf.read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            config = json.loads(raw) if raw is not None else {}
    except Exception:
        return []  # not readable as such: Keras' own error will say why
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            module = obj.get("module")
            if "class_name" in obj and isinstance(module, str) and not module.startswith("keras"):
                label = f"{obj['class_name']} (module {module!r})"
                if label not in found:
                    found.append(label)
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(config)
    return found


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """TF's loader logs a traceback through absl when fingerprint.pb is corrupt, and loads
    on (found by fc.fuzz): fc's output stays fc's while TF loads."""
    import logging

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _saved_model(path: Path, input_shapes: InputShapes) -> FrozenModel:
    tf = import_tf()
    if not (path / "saved_model.pb").is_file():
        raise ImportError_(f"{path}: a directory without saved_model.pb is not a SavedModel")
    from fc.frontend.tf.declared import judge_saved_model

    judge_saved_model(path)  # every declared tensor against fc.limits, before TF loads it
    try:
        with _quiet_absl():
            loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise ImportError_(f"{path}: TensorFlow cannot load the SavedModel ({_first_line(e)})") \
            from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if "serving_default" not in signatures:
        raise ImportError_(f"{path}: the SavedModel has no 'serving_default' signature "
                           f"(it has {sorted(signatures) or 'none'})")
    fn = signatures["serving_default"]
    args, kwargs = fn.structured_input_signature
    specs = [*args, *[kwargs[k] for k in sorted(kwargs)]]
    in_names = [s.name for s in specs]
    given = _overrides(in_names, input_shapes, str(path))
    for s in specs:  # resolved here so that errors name the signature's inputs
        _static_shape(s.name, [None if d is None else d for d in s.shape], given.get(s.name),
                      str(path))
    outs = fn.structured_outputs
    out_names = sorted(outs) if isinstance(outs, Mapping) else [f"output_{i}" for i in
                                                                  range(len(fn.outputs))]
    frozen = _convert_v2(fn, in_names, out_names, str(path), path.name)
    frozen.inputs = {k: (n, _static_shape(n, [None if d < 0 else d for d in shape],
                                          given.get(n), str(path)), dt)
                     for k, (n, shape, dt) in frozen.inputs.items()}
    return frozen


def _graph_def_file(path: Path, input_shapes: InputShapes, outputs: Sequence[str] | None
                    ) -> FrozenModel:
    tf = import_tf()
    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(path.read_bytes())
    except Exception as e:
        raise ImportError_(f"{path}: not a frozen GraphDef ({_first_line(e)})") from None
    if not gd.node or not all(n.op for n in gd.node):
        raise ImportError_(f"{path}: not a frozen GraphDef (no nodes with an op); a SavedModel "
                           "is imported from its directory")
    placeholders = [n for n in gd.node if n.op == "Placeholder"]
    names = [n.name for n in placeholders]
    given = _overrides(names, input_shapes, str(path))
    inputs = {}
    for n in placeholders:
        shape_attr = n.attr["shape"].shape
        if shape_attr.unknown_rank:
            if n.name not in given:
                raise ImportError_(f"{path}: input {n.name!r} has no known rank; pass "
                                   f"{input_shape_hint(n.name)}")
            shape: list[int | None] = [None] * len(given[n.name])
        else:
            shape = [None if d.size < 0 else d.size for d in shape_attr.dim]
        try:
            dtype = np.dtype(tf.dtypes.as_dtype(n.attr["dtype"].type).as_numpy_dtype).name
        except (TypeError, ValueError, KeyError):  # found by fc.fuzz: dtype 0, 99, resource
            raise ImportError_(f"{path}: input {n.name!r} has TF element type "
                               f"{n.attr['dtype'].type}, which has no numpy dtype") from None
        inputs[n.name] = (n.name, _static_shape(n.name, shape, given.get(n.name), str(path)), dtype)
    if outputs:
        fetches = [tensor_name(o) for o in outputs]
        known = {n.name for n in gd.node}
        missing = [o for o in fetches if o.split(":")[0] not in known]
        if missing:
            raise ImportError_(f"{path}: output(s) {missing} are not nodes of the graph")
    else:
        fetches = _sinks(gd)
    return FrozenModel(gd, inputs, {f: f.split(":")[0] if f.endswith(":0") else f.replace(":", "_")
                                    for f in fetches}, source=str(path), name=path.stem)


_NOT_OUTPUTS = frozenset({"NoOp", "Const", "Placeholder", "Assert", "SaveV2", "RestoreV2"})


def _sinks(gd: Any) -> list[str]:
    """The first output of every node no other node reads (the graph's natural outputs)."""
    read = {i.lstrip("^").split(":")[0] for n in gd.node for i in n.input}
    return [f"{n.name}:0" for n in gd.node if n.name not in read and n.op not in _NOT_OUTPUTS]
