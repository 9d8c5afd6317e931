"""ResNet-V1b (GluonCV's ``ResNetV1b``), defined by fc so that GluonCV is not needed.

Architecture
------------
ResNet-V1b differs from the original ResNet-V1 (``mxnet.gluon.model_zoo.vision``'s
``resnet*_v1``) only in the bottleneck: the stride sits on the 3x3 convolution
(``conv1`` 1x1/1, ``conv2`` 3x3/s, ``conv3`` 1x1/1) instead of on the first 1x1.  The stem is
7x7/2 conv (no bias) + BN + relu + 3x3/2 max-pool; the projection shortcut ("downsample") is
a 1x1/s conv (no bias) + BN; the head is global average pool + flatten + ``Dense(1000)``.
ResNet-18/34 use the two-3x3 basic block (stride on the first 3x3).

Parameter names (identical to GluonCV, so GluonCV weight files load by name)
---------------------------------------------------------------------------
The blocks are built with the same attributes, the same child order and the same gluon
name scopes as GluonCV, which gives two identical naming schemes:

* **Prefixed names** (``net.collect_params()``, and the ``arg:``/``aux:`` keys of an
  exported ``PREFIX-0000.params``).  The network prefix is ``resnetv1b_``; its own layers
  are auto-numbered by type inside it (``conv0`` stem conv, ``batchnorm0`` stem BN,
  ``dense0`` classifier).  Stage *k* is a ``HybridSequential`` with prefix ``layers{k}_``;
  the residual blocks do *not* open a name scope of their own, so all convolutions and
  BNs of a stage are numbered consecutively inside ``layers{k}_`` (a bottleneck uses three
  of each: block *i*'s ``conv1``/``conv2``/``conv3`` are ``conv{3i}``/``conv{3i+1}``/
  ``conv{3i+2}``).  The projection shortcut of stage *k* is created in the network's scope
  with prefix ``down{k}_`` and holds ``conv0`` + ``batchnorm0``.  Examples for
  ``resnet50_v1b``::

      resnetv1b_conv0_weight                  stem 7x7 conv        (64, 3, 7, 7)
      resnetv1b_batchnorm0_gamma              stem BN
      resnetv1b_layers1_conv0_weight          layer1 block0 conv1  (64, 64, 1, 1)
      resnetv1b_layers1_conv1_weight          layer1 block0 conv2  (64, 64, 3, 3)
      resnetv1b_layers1_batchnorm2_running_var  layer1 block0 bn3
      resnetv1b_down2_conv0_weight            layer2 shortcut conv (512, 256, 1, 1)
      resnetv1b_layers4_conv8_weight          layer4 block2 conv3  (2048, 512, 1, 1)
      resnetv1b_dense0_weight                 classifier           (1000, 2048)

* **Structural names** (``Block.save_parameters``/``load_parameters``, the format of
  GluonCV's released ``.params`` files): the attribute path, e.g. ``conv1.weight``,
  ``bn1.gamma``, ``layer1.0.conv1.weight``, ``layer1.0.bn3.running_var``,
  ``layer2.0.downsample.0.weight`` (shortcut conv), ``layer2.0.downsample.1.gamma``
  (shortcut BN), ``fc.weight``, ``fc.bias``.

mxnet is imported lazily: :func:`build` creates the classes on first use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fc.frontend.mxnet._mx import import_mxnet

__all__ = ["DEPTHS", "PREFIX", "build"]

#: net prefix, as in GluonCV's ``resnet*_v1b`` constructors
PREFIX = "resnetv1b_"

#: depth -> (block kind, blocks per stage)
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_STAGE_WIDTHS = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)


@lru_cache(maxsize=1)
def _classes() -> dict[str, Any]:
    """Define the gluon block classes (needs mxnet, hence not at module level)."""
    mx = import_mxnet()
    nn = mx.gluon.nn
    HybridBlock = mx.gluon.HybridBlock

    def conv(out_ch: int, in_ch: int, k: int, s: int = 1) -> Any:
        return nn.Conv2D(out_ch, k, strides=s, padding=k // 2, use_bias=False, in_channels=in_ch)

    class BasicBlockV1b(HybridBlock):
        """3x3/s conv-BN-relu, 3x3 conv-BN, + shortcut, relu."""

        expansion = 1

        def __init__(self, in_ch: int, planes: int, strides: int, downsample: Any = None):
            # No name_scope of its own: children are numbered in the enclosing stage's scope.
            super().__init__()
            self.conv1 = conv(planes, in_ch, 3, strides)
            self.bn1 = nn.BatchNorm(in_channels=planes)
            self.relu1 = nn.Activation("relu")
            self.conv2 = conv(planes, planes, 3)
            self.bn2 = nn.BatchNorm(in_channels=planes)
            self.relu2 = nn.Activation("relu")
            self.downsample = downsample

        def hybrid_forward(self, F, x):
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            shortcut = x if self.downsample is None else self.downsample(x)
            return self.relu2(y + shortcut)

    class BottleneckV1b(HybridBlock):
        """1x1 conv-BN-relu, 3x3/s conv-BN-relu, 1x1 conv-BN, + shortcut, relu."""

        expansion = 4

        def __init__(self, in_ch: int, planes: int, strides: int, downsample: Any = None):
            super().__init__()
            self.conv1 = conv(planes, in_ch, 1)
            self.bn1 = nn.BatchNorm(in_channels=planes)
            self.relu1 = nn.Activation("relu")
            self.conv2 = conv(planes, planes, 3, strides)
            self.bn2 = nn.BatchNorm(in_channels=planes)
            self.relu2 = nn.Activation("relu")
            self.conv3 = conv(planes * 4, planes, 1)
            self.bn3 = nn.BatchNorm(in_channels=planes * 4)
            self.relu3 = nn.Activation("relu")
            self.downsample = downsample

        def hybrid_forward(self, F, x):
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.relu2(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            shortcut = x if self.downsample is None else self.downsample(x)
            return self.relu3(y + shortcut)

    class ResNetV1b(HybridBlock):
        """Stem, four stages of residual blocks, global-avg-pool classifier."""

        def __init__(self, block: type, layers: tuple[int, ...], classes: int = 1000):
            super().__init__(prefix=PREFIX)
            in_ch = 64
            with self.name_scope():
                self.conv1 = conv(64, 3, 7, 2)
                self.bn1 = nn.BatchNorm(in_channels=64)
                self.relu = nn.Activation("relu")
                self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
                for k, (n, width, stride) in enumerate(zip(layers, _STAGE_WIDTHS, _STAGE_STRIDES), start=1):
                    stage, in_ch = self._stage(k, block, in_ch, width, n, stride)
                    setattr(self, f"layer{k}", stage)
                self.avgpool = nn.GlobalAvgPool2D()
                self.flat = nn.Flatten()
                self.fc = nn.Dense(classes, in_units=in_ch)

        @staticmethod
        def _stage(k: int, block: type, in_ch: int, planes: int, n: int, stride: int):
            out_ch = planes * block.expansion
            downsample = None
            if stride != 1 or in_ch != out_ch:
                # Created in the network's scope, before the stage: prefix resnetv1b_down{k}_.
                downsample = nn.HybridSequential(prefix=f"down{k}_")
                with downsample.name_scope():
                    downsample.add(conv(out_ch, in_ch, 1, stride))
                    downsample.add(nn.BatchNorm(in_channels=out_ch))
            stage = nn.HybridSequential(prefix=f"layers{k}_")
            with stage.name_scope():
                stage.add(block(in_ch, planes, stride, downsample))
                for _ in range(1, n):
                    stage.add(block(out_ch, planes, 1))
            return stage, out_ch

        def hybrid_forward(self, F, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.flat(self.avgpool(x)))

    return {"basic": BasicBlockV1b, "bottleneck": BottleneckV1b, "net": ResNetV1b}


def build(depth: int, classes: int = 1000) -> Any:
    """Return an uninitialized ``ResNetV1b`` gluon block of the given depth (18 ... 152)."""
    kind, layers = DEPTHS[depth]
    cls = _classes()
    return cls["net"](cls[kind], layers, classes)
