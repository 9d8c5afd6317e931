"""Data-movement ONNX ops. What ONNX passes as constant tensor inputs (Reshape shape, Slice
starts/ends/axes/steps, Pad pads/value, Resize scales/sizes, Split sizes, Squeeze/Unsqueeze
axes) becomes an fc attribute; older opsets had the same values as attributes already.

Batch convention (``fc.ir.schemas.tensor``): a Reshape target whose dim 0 equals the input's
dim 0 is written as 0 ("copy"), so a graph imported at batch 1 also runs at batch 8; Resize
never resizes dim 0.
"""

from __future__ import annotations

import math

import numpy as np

from fc.frontend.onnx.context import ConvertContext
from fc.frontend.onnx.registry import converter
from fc.ir.core import Value

__all__: list[str] = []


@converter("Reshape", since=5)
def reshape(ctx: ConvertContext) -> Value:
    x = ctx.value(0)
    target = list(ctx.const_ints(1, "shape"))
    allowzero = ctx.attrs.int("allowzero", 0)
    if not allowzero and target and x.shape and target[0] == x.shape[0]:
        target[0] = 0  # the batch dim: copy it, whatever the batch size
    return ctx.add_node("Reshape", [x], {"shape": tuple(target), "allowzero": allowzero}).output


@converter("Transpose", since=1)
def transpose(ctx: ConvertContext) -> Value:
    return ctx.add_node("Transpose", [ctx.value(0)], {"perm": ctx.attrs.ints("perm", ())}).output


@converter("Concat", since=4)
def concat(ctx: ConvertContext) -> Value:
    inputs = [ctx.value(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    return ctx.add_node("Concat", inputs, {"axis": ctx.attrs.int("axis")}).output


@converter("Split", since=2)
def split(ctx: ConvertContext) -> list[Value]:
    """Sizes from the ``split`` attribute (before opset 13) or input (from 13); absent, an
    equal split into the number of outputs (opset 18's num_outputs: the last piece smaller)."""
    shape = ctx.shape(0)
    axis = ctx.attrs.int("axis", 0)
    if not -len(shape) <= axis < len(shape):
        raise ctx.error(f"axis={axis} out of range for rank {len(shape)}")
    dim = shape[axis]
    if ctx.opset >= 13:
        sizes = ctx.const_ints_or_none(1, "split")
    else:
        sizes = ctx.attrs.ints("split", None)
    n = ctx.num_outputs
    if sizes is None:
        if ctx.attrs.has("num_outputs"):
            n = ctx.attrs.int("num_outputs")
            if n < 1:
                raise ctx.error(f"num_outputs={n} must be positive")
            chunk = math.ceil(dim / n)
            sizes = (chunk,) * (n - 1) + (dim - chunk * (n - 1),)
        elif dim % n:
            raise ctx.error(f"cannot split dim {dim} of axis {axis} into {n} equal parts")
        else:
            sizes = (dim // n,) * n
    if len(sizes) != n:
        raise ctx.error(f"split {list(sizes)} has {len(sizes)} sizes for {n} outputs")
    return ctx.add_node("Split", [ctx.value(0)], {"axis": axis, "split": sizes},
                        num_outputs=n).outputs


def _axes(ctx: ConvertContext, input_since: int) -> tuple[int, ...]:
    """Squeeze/Unsqueeze axes: attribute before opset 13, (constant) input from it."""
    if ctx.opset >= input_since:
        return ctx.const_ints_or_none(1, "axes") or ()
    return ctx.attrs.ints("axes", ())


@converter("Squeeze", since=1)
def squeeze(ctx: ConvertContext) -> Value:
    return ctx.add_node("Squeeze", [ctx.value(0)], {"axes": _axes(ctx, 13)}).output


@converter("Unsqueeze", since=1)
def unsqueeze(ctx: ConvertContext) -> Value:
    axes = _axes(ctx, 13)
    if not axes:
        raise ctx.error("Unsqueeze needs axes")
    return ctx.add_node("Unsqueeze", [ctx.value(0)], {"axes": axes}).output


@converter("Slice", since=1)
def slice_(ctx: ConvertContext) -> Value:
    """starts/ends/axes as attributes before opset 10, then (constant) inputs with steps."""
    if ctx.opset >= 10:
        starts, ends = ctx.const_ints(1, "starts"), ctx.const_ints(2, "ends")
        axes, steps = ctx.const_ints_or_none(3, "axes"), ctx.const_ints_or_none(4, "steps")
    else:
        a = ctx.attrs
        starts, ends, axes, steps = a.ints("starts"), a.ints("ends"), a.ints("axes", None), None
    axes = tuple(range(len(starts))) if axes is None else axes
    steps = (1,) * len(starts) if steps is None else steps
    return ctx.add_node("Slice", [ctx.value(0)], {"starts": starts, "ends": ends, "axes": axes,
                                                  "steps": steps}).output


_PAD_MODES = ("constant", "reflect", "edge")


def _pad_check(ctx: ConvertContext) -> str | None:
    mode = ctx.attrs.str("mode", "constant")
    return None if mode in _PAD_MODES else f"mode={mode}"


@converter("Pad", since=2, check=_pad_check)
def pad(ctx: ConvertContext) -> Value:
    """pads/value: attributes before opset 11, (constant) inputs from 11; axes from 18."""
    rank = ctx.rank(0)
    mode = ctx.attrs.str("mode", "constant")
    if ctx.opset >= 11:
        pads = ctx.const_ints(1, "pads")
        value_arr = ctx.const_or_none(2, "constant_value")
        value = 0.0 if value_arr is None or value_arr.size == 0 else float(value_arr.reshape(-1)[0])
        axes_given = ctx.const_ints_or_none(3, "axes") if ctx.opset >= 18 else None
        if axes_given is not None:
            axes = [a % rank for a in axes_given]
            if len(pads) != 2 * len(axes):
                raise ctx.error(f"pads {list(pads)} needs {2 * len(axes)} values for axes {axes}")
            full = [0] * (2 * rank)
            for j, a in enumerate(axes):
                full[a], full[a + rank] = pads[j], pads[j + len(axes)]
            pads = tuple(full)
    else:
        pads = ctx.attrs.ints("pads")
        value = ctx.attrs.float("value", 0.0)
    return ctx.add_node("Pad", [ctx.value(0)], {"pads": pads, "mode": mode,
                                                "value": float(value)}).output


def _resize(ctx: ConvertContext, scales: tuple[float, ...] | None,
            sizes: tuple[int, ...] | None, attrs: dict[str, object]) -> Value:
    """Emit fc Resize with full-rank ``scales`` (from sizes when the model gave sizes)."""
    shape = ctx.shape(0)
    rank = len(shape)
    if sizes:
        if len(sizes) != rank:
            raise ctx.error(f"sizes {list(sizes)} needs {rank} values")
        if sizes[0] != shape[0]:
            raise ctx.error(f"sizes {list(sizes)} resize the batch dim {shape[0]}")
        # the scale onnxruntime derives (in float32) drives the coordinate transform
        scales = tuple(float(np.float32(s) / np.float32(d)) for s, d in zip(sizes, shape))
    elif scales is None or len(scales) != rank:
        raise ctx.error(f"scales {None if scales is None else list(scales)} needs {rank} values")
    if scales[0] != 1.0:
        raise ctx.error(f"scales {list(scales)} resize the batch dim")
    mode = attrs.get("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    attrs = {**attrs, "mode": mode, "scales": scales, "sizes": tuple(sizes or ())}
    return ctx.add_node("Resize", [ctx.value(0)], attrs).output


def _legacy_nearest_mode(scales: tuple[float, ...]) -> str:
    """onnxruntime's Upsample/Resize-10 nearest rounding: floor when upsampling, ceil when
    downsampling (its "simple" mode)."""
    return "ceil" if any(s < 1 for s in scales) else "floor"


@converter("Upsample", since=7, until=9)
def upsample(ctx: ConvertContext) -> Value:
    scales = (ctx.attrs.floats("scales") if ctx.opset < 9
              else ctx.const_floats(1, "scales"))
    mode = ctx.attrs.str("mode", "nearest")
    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        attrs["nearest_mode"] = _legacy_nearest_mode(scales)
    return _resize(ctx, scales, None, attrs)


@converter("Resize", since=10, until=10)
def resize_10(ctx: ConvertContext) -> Value:
    scales = ctx.const_floats(1, "scales")
    mode = ctx.attrs.str("mode", "nearest")
    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        attrs["nearest_mode"] = _legacy_nearest_mode(scales)
    return _resize(ctx, scales, None, attrs)


def _resize_check(ctx: ConvertContext) -> str | None:
    a = ctx.attrs
    ctm = a.str("coordinate_transformation_mode", "half_pixel")
    if ctm == "tf_crop_and_resize":
        return f"coordinate_transformation_mode={ctm}"
    for name in ("exclude_outside", "antialias"):
        if a.int(name, 0):
            return f"{name}={a.int(name)}"
    policy = a.str("keep_aspect_ratio_policy", "stretch")
    return None if policy == "stretch" else f"keep_aspect_ratio_policy={policy}"


@converter("Resize", since=11, check=_resize_check)
def resize(ctx: ConvertContext) -> Value:
    rank = ctx.rank(0)
    ctm = ctx.attrs.str("coordinate_transformation_mode", "half_pixel")
    scales = (ctx.const_floats(2, "scales") if ctx.has_input(2) else None) or None
    sizes = ctx.const_ints_or_none(3, "sizes") or None
    axes = ctx.attrs.ints("axes", None)
    if axes is not None:  # opset 18: scales/sizes only for these axes
        axes = tuple(a % rank for a in axes)
        shape = ctx.shape(0)
        if scales is not None:
            full_s = [1.0] * rank
            for a, s in zip(axes, scales):
                full_s[a] = s
            scales = tuple(full_s)
        if sizes is not None:
            full = list(shape)
            for a, s in zip(axes, sizes):
                full[a] = s
            sizes = tuple(full)
    attrs = {"mode": ctx.attrs.str("mode", "nearest"), "coordinate_transformation_mode": ctm,
             "nearest_mode": ctx.attrs.str("nearest_mode", "round_prefer_floor"),
             "cubic_coeff_a": ctx.attrs.float("cubic_coeff_a", -0.75)}
    return _resize(ctx, scales, sizes, attrs)


@converter("DepthToSpace", since=1)
def depth_to_space(ctx: ConvertContext) -> Value:
    return ctx.add_node("DepthToSpace", [ctx.value(0)], {
        "blocksize": ctx.attrs.int("blocksize"), "mode": ctx.attrs.str("mode", "DCR")}).output


@converter("SpaceToDepth", since=1)
def space_to_depth(ctx: ConvertContext) -> Value:
    return ctx.add_node("SpaceToDepth", [ctx.value(0)], {"blocksize": ctx.attrs.int("blocksize")}
                        ).output


@converter("Gather", since=1)
def gather(ctx: ConvertContext) -> Value:
    ctx.const(1, "indices")  # fc's Gather takes constant indices (kept as a tensor input)
    return ctx.add_node("Gather", [ctx.value(0), ctx.value(1)], {"axis": ctx.attrs.int("axis", 0)}
                        ).output
