"""The ResNet family (pix2pix and CycleGAN generators) behind the :class:`~gclib.families.base.Family` contract.

Config ``c0_c1_c2_c3_c4_c5_c6_c7`` (see :func:`~gclib.families.resnet.networks.config_widths`): stem ``c0``,
down-samplings ``2 c1`` and ``4 c2`` (the residual trunk), block inner widths ``4 c3, 4 c4, 4 c5`` (one per third of
the blocks), up-samplings ``2 c6`` and ``c7``. Official choice sets: Fast CycleGAN {16, 24, 32, 48, 64}
(5^8 = 390,625 configs), Fast pix2pix {16, 24, ..., 64} (7^8 = 5,764,801). MACs at 256x256 (torchprofile):

=====================================  ========  ========
model                                  G MACs    M params
=====================================  ========  ========
teacher, ngf 64, 9 blocks              56.80     11.38
mobile ``64_64_64_64_64_64_64_64``     18.31     1.99
mobile ``32_32_32_32_32_32_32_32``     4.93      0.51
Fast horse2zebra ``16_16_24_16_32_64_16_24``   2.62      0.355
Fast edges2shoes ``24_24_40_56_24_56_16_40``   4.83      0.703
=====================================  ========  ========
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...nn.elastic import slice_state_dict, strongest_channels
from ..base import Family, image_hw
from .networks import (MobileResnetGenerator, ResnetGenerator, SuperMobileResnetGenerator, config_widths,
                       inner_key)

FAST_CYCLEGAN_CHOICES = (16, 24, 32, 48, 64)            # 5^8 = 390,625 configs
FAST_PIX2PIX_CHOICES = (16, 24, 32, 40, 48, 56, 64)     # 7^8 = 5,764,801 configs


class ResnetFamily(Family):
    name = "resnet"
    entries = ("stem", "down", "trunk", "inner1", "inner2", "inner3", "up1", "up2")
    default_choices = FAST_CYCLEGAN_CHOICES

    def arch(self, preset) -> dict:
        return {"n_blocks": preset.teacher.n_blocks}

    def config_macs(self, config, image_size: int, n_blocks: int = 9) -> int:
        """Each conv costs ``H_out W_out C_out C_in/groups k^2`` (transposed convs counted on their output), as
        torchprofile counts; norms, activations and padding cost nothing."""
        w = config_widths(self.parse(config))
        full, half, quarter = image_size ** 2, (image_size // 2) ** 2, (image_size // 4) ** 2
        trunk = w["trunk"]
        macs = full * w["stem"] * 3 * 49                                   # 7x7 stem, 3 -> c0
        macs += half * w["down1"] * w["stem"] * 9                          # 3x3 stride 2
        macs += quarter * trunk * w["down1"] * 9                           # 3x3 stride 2 into the trunk
        for i in range(n_blocks):                                          # two separable convs per block
            inner = w[inner_key(i, n_blocks)]
            macs += quarter * (trunk * 9 + inner * trunk)                  # depthwise 3x3 + pointwise trunk -> inner
            macs += quarter * (inner * 9 + trunk * inner)                  # depthwise 3x3 + pointwise inner -> trunk
        macs += half * w["up1"] * trunk * 9                                # transposed 3x3, counted on its output
        macs += full * w["up2"] * w["up1"] * 9
        macs += full * 3 * w["up2"] * 49                                   # 7x7 to RGB
        return macs

    def teacher(self, ngf: int = 64, n_blocks: int = 9) -> ResnetGenerator:
        return ResnetGenerator(ngf=ngf, n_blocks=n_blocks)

    def student(self, config, n_blocks: int = 9) -> MobileResnetGenerator:
        return MobileResnetGenerator(config, n_blocks)

    def supernet(self, max_width: int, n_blocks: int = 9) -> SuperMobileResnetGenerator:
        return SuperMobileResnetGenerator(max_width, n_blocks)

    def extract(self, supernet: SuperMobileResnetGenerator, config=None) -> MobileResnetGenerator:
        """Slicing the supernet's state_dict to the sub-network's shapes (first k along each dimension) gives a
        plain generator that computes exactly what the supernet computes under ``config``."""
        sub = MobileResnetGenerator(config if config is not None else supernet.config, **supernet.arch)
        sub.load_state_dict(slice_state_dict(supernet.state_dict(), sub.state_dict()))
        return sub.to(next(supernet.parameters()).device)

    def example_inputs(self, batch: int, image_size, **_) -> tuple[torch.Tensor]:
        return (torch.rand(batch, 3, *image_hw(image_size)) * 2 - 1,)

    def distill_points(self, net) -> list[str]:
        return net.distill_points

    def distill_widths(self, net) -> list[int]:
        trunk = net.get_submodule("model.7").out_channels               # the residual trunk's width
        return [trunk] * len(net.distill_points)

    @torch.no_grad()
    def init_from_teacher(self, student, teacher, by_importance: bool = False) -> list[torch.Tensor]:
        """L1-norm channel selection from a wider trained generator.

        For every layer the dense teacher and the separable student share (the top-level convs of ``model``: stem,
        down-samplings, up-samplings, output conv), keep the output channels whose filters have the largest L1 norm
        ``sum |W[c]|``; inputs follow the previous layer's choice. The residual blocks (dense in the teacher,
        separable in the student) keep their init. ``by_importance`` puts the strongest channel first: the supernet,
        whose narrower sub-networks use the first k channels, so that they inherit the k strongest. The output conv
        keeps its 3 channels in RGB order (they are colours, not features to rank)."""
        shared = [(s, t) for s, t in zip(student.model, teacher.model) if isinstance(t, (nn.Conv2d, nn.ConvTranspose2d))]
        kept = torch.arange(shared[0][1].in_channels)              # RGB in
        trunk = kept
        for i, (s, t) in enumerate(shared):
            transposed = isinstance(t, nn.ConvTranspose2d)
            w = t.weight[kept] if transposed else t.weight[:, kept]  # (in, out, k, k) or (out, in, k, k)
            if i == len(shared) - 1:                               # the output conv: RGB stays RGB
                out = torch.arange(s.out_channels)
            else:
                norms = w.abs().sum((0, 2, 3)) if transposed else w.abs().sum((1, 2, 3))
                out = strongest_channels(norms, s.out_channels, by_importance)
            s.weight.copy_(w[:, out] if transposed else w[out])
            s.bias.copy_(t.bias[out])
            if not transposed and t.stride == (2, 2):              # the last down-sampling feeds the residual trunk
                trunk = out
            kept = out
        return [trunk] * len(student.distill_points)


RESNET = ResnetFamily()
