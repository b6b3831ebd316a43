"""The SPADE (GauGAN) family behind the :class:`~gclib.families.base.Family` contract.

Config ``c0_..._c7`` = ``[fc, head_0, G_middle_0, G_middle_1, up_0, up_1, up_2, up_3]`` (see
:mod:`gclib.families.spade.networks`). Official choice sets (GAN Compression's ``channels-48`` for cityscapes): entries
0-4 from {32, 40, 48}, 5-7 from {24, 32, 40, 48}; the wider ``channels-64`` set adds 64. Structural settings
(``arch``): ``label_nc``, the label map's channels (cityscapes: 35 classes + 1 instance-edge channel = 36), and
``n_up``, the x2 upsamplings (SPADE's ``num_upsampling_layers``: 'normal' 5, 'more' 6). The official cityscapes
GauGAN runs 'more': ``G_middle_1`` is upsampled too, so ``head_0`` and ``G_middle_0`` work at a quarter of the area
they have with 'normal'. At 256x512 (torchprofile and the closed form below agree):

==============================================  ========  ========
model                                           G MACs    M params
==============================================  ========  ========
teacher, ngf 64, 36 label channels, 'more'      281.41    93.05
released ``32_32_32_48_32_24_24_32``, 'more'    31.21     20.2
teacher, ngf 64, 35 label channels, 'normal'    292.21    93.02
==============================================  ========  ========

The paper's 281 G and 31.3 G are the first two rows; its COCO-Stuff GauGAN ('normal', 184 label channels, 256x256)
counts 191.21 G, as the official code's.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ...nn.elastic import slice_state_dict, strongest_channels
from ..base import Family, image_hw
from .networks import (BLOCK_MULT, BLOCKS, CITYSCAPES_UPSAMPLINGS, NORMAL_UPSAMPLINGS, MobileSPADEGenerator,
                       SPADEGenerator,
                       SuperMobileSPADEGenerator, config_widths, recalibrate,
                       upsampled_blocks)

CITYSCAPES_CHOICES = ((32, 40, 48),) * 5 + ((24, 32, 40, 48),) * 3   # official 'channels-48'
CITYSCAPES_LABEL_NC = 36                                              # 35 classes + the instance-edge map


def block_inputs(w: dict[str, int]) -> dict[str, int]:
    """The width entering each block of a mobile config: the stream (``fc``) up to up_0, then the previous block's."""
    return {name: w["fc"] if i <= BLOCKS.index("up_0") else w[BLOCKS[i - 1]] for i, name in enumerate(BLOCKS)}


def generator_macs(fc: int, blocks: dict[str, tuple[int, int, int, int]], image_size, label_nc: int, n_up: int,
                   separable: bool) -> int:
    """MACs of a SPADE generator as torchprofile counts them, from ``fc``'s width and each block's
    ``(fin, fmid, fout, hidden)``: every conv ``P C_out C_in/groups k^2`` (P output pixels), every element-wise
    product ``BN(x) * (1 + gamma)`` and every leaky ReLU one per output value; norms without parameters, additions
    and nearest upsampling nothing."""
    h, wd = image_hw(image_size)
    ups = upsampled_blocks(n_up)
    rows, cols = h >> n_up, wd >> n_up
    macs = rows * cols * fc * label_nc * 9                                         # fc 3x3 on the shrunk label map

    def spade(p: int, channels: int, hidden: int) -> int:                          # shared conv, gamma, beta, product
        heads = hidden * 9 + hidden * channels if separable else hidden * channels * 9
        return p * (hidden * label_nc * 9 + 2 * heads + channels)

    for name in BLOCKS:
        if name in ups:
            rows, cols = rows * 2, cols * 2
        p, (fin, fmid, fout, hidden) = rows * cols, blocks[name]
        macs += spade(p, fin, hidden) + p * fin + p * fmid * fin * 9               # norm_0, lrelu, conv_0 3x3
        macs += spade(p, fmid, hidden) + p * fmid + p * fout * fmid * 9            # norm_1, lrelu, conv_1 3x3
        if BLOCK_MULT[name] < 16:                                                  # the up blocks' learned shortcut
            macs += spade(p, fin, hidden) + p * fout * fin                         # norm_s, conv_s 1x1
    final = blocks["up_3"][2]
    return macs + rows * cols * (final + 3 * final * 9)                            # lrelu, conv_img 3x3


class SpadeFamily(Family):
    name = "spade"
    entries = ("fc",) + BLOCKS
    default_choices = CITYSCAPES_CHOICES

    def arch(self, preset) -> dict:
        """``label_nc``: ``preset.spade.label_nc``, or the embedded facades' label classes; ``n_up``:
        ``preset.spade.n_up``, or SPADE's 'normal' 5 capped so the latent grid keeps at least 4x4 cells."""
        from ...data import LABELS
        n_up = preset.spade.n_up or max(0, min(NORMAL_UPSAMPLINGS, int(math.log2(preset.data.image_size)) - 2))
        return {"label_nc": preset.spade.label_nc or len(LABELS), "n_up": n_up}

    def config_macs(self, config, image_size, label_nc: int = CITYSCAPES_LABEL_NC,
                    n_up: int = CITYSCAPES_UPSAMPLINGS) -> int:
        """Closed-form MACs of the mobile sub-network ``config`` (see :func:`generator_macs`)."""
        w = config_widths(self.parse(config))
        inputs = block_inputs(w)
        blocks = {}
        for name in BLOCKS:
            fin, fmid = inputs[name], w[name]
            blocks[name] = (fin, fmid, fmid if BLOCK_MULT[name] < 16 else fin, w[f"{name}.hidden"])
        return generator_macs(w["fc"], blocks, image_size, label_nc, n_up, separable=True)

    def teacher_macs(self, ngf: int, image_size, label_nc: int = CITYSCAPES_LABEL_NC,
                     n_up: int = CITYSCAPES_UPSAMPLINGS) -> int:
        """Closed-form MACs of the dense teacher of width ``ngf``."""
        blocks, fin = {}, 16 * ngf
        for name in BLOCKS:
            fout = BLOCK_MULT[name] * ngf
            blocks[name], fin = (fin, min(fin, fout), fout, 2 * ngf), fout
        return generator_macs(16 * ngf, blocks, image_size, label_nc, n_up, separable=False)

    def teacher(self, ngf: int = 64, label_nc: int = CITYSCAPES_LABEL_NC,
                n_up: int = CITYSCAPES_UPSAMPLINGS) -> SPADEGenerator:
        return SPADEGenerator(ngf, label_nc, n_up)

    def student(self, config, label_nc: int = CITYSCAPES_LABEL_NC, n_up: int = CITYSCAPES_UPSAMPLINGS):
        return MobileSPADEGenerator(config, label_nc, n_up)

    def supernet(self, max_width: int, label_nc: int = CITYSCAPES_LABEL_NC, n_up: int = CITYSCAPES_UPSAMPLINGS):
        return SuperMobileSPADEGenerator(max_width, label_nc, n_up)

    def extract(self, supernet: SuperMobileSPADEGenerator, config=None) -> MobileSPADEGenerator:
        """The supernet's tensors (BatchNorm statistics included) cut to the sub-network's shapes. Re-calibrate the
        statistics for this sub-network before scoring it (:func:`~gclib.families.spade.networks.recalibrate`)."""
        sub = MobileSPADEGenerator(config if config is not None else supernet.config, **supernet.arch)
        sub.load_state_dict(slice_state_dict(supernet.state_dict(), sub.state_dict()))
        return sub.to(next(supernet.parameters()).device)

    def example_inputs(self, batch: int, image_size, label_nc: int = CITYSCAPES_LABEL_NC,
                       **_) -> tuple[torch.Tensor]:
        """One-hot label maps of random blobs: (B, label_nc, H, W)."""
        h, w = image_hw(image_size)
        coarse = torch.randint(label_nc, (batch, 1, max(1, h // 8), max(1, w // 8))).float()
        labels = nn.functional.interpolate(coarse, size=(h, w), mode="nearest").long()[:, 0]
        return (nn.functional.one_hot(labels, label_nc).permute(0, 3, 1, 2).float(),)

    def task_data(self, data, preset):
        """The task with A as one-hot label maps of ``arch(preset)['label_nc']`` channels (the embedded facades)."""
        from ...data import label_map_task
        return label_map_task(data, self.arch(preset)["label_nc"])

    def calibrate(self, net, inputs: torch.Tensor, batch_size: int = 32):
        """Re-compute every BatchNorm's statistics of ``net`` at its active config over the label maps ``inputs``
        (N, L, H, W), in batches (:func:`~gclib.families.spade.networks.recalibrate`; the official search uses 512
        training images)."""
        return recalibrate(net, inputs.split(batch_size))

    def distill_points(self, net) -> list[str]:
        return net.distill_points

    def distill_widths(self, net) -> list[int]:
        return [net.get_submodule(p).conv_1.out_channels for p in net.distill_points]

    @torch.no_grad()
    def init_from_teacher(self, student, teacher, by_importance: bool = False) -> list[torch.Tensor]:
        """L1-norm channel selection from the dense teacher. The residual stream (fc's output, kept by head_0 ..
        G_middle_1) keeps fc's strongest filters; each block's middle width its conv_0's strongest, each up block's
        output its conv_1's; every SPADE keeps the shared conv's strongest hidden filters and the BatchNorm
        statistics of the channels it normalises. SPADE's gamma/beta convs (dense in the teacher, separable in the
        student) keep their init. Returns the teacher channels behind each distillation point."""
        def top(weight: torch.Tensor, k: int) -> torch.Tensor:               # (out, in, kh, kw): strongest k outputs
            return strongest_channels(weight.abs().sum((1, 2, 3)), k, by_importance)

        def copy_conv(s: nn.Conv2d, t: nn.Conv2d, out: torch.Tensor, inp: torch.Tensor | None) -> None:
            w = t.weight[out] if inp is None else t.weight[out][:, inp]
            s.weight.copy_(w)
            if s.bias is not None:
                s.bias.copy_(t.bias[out])

        def copy_spade(s, t, channels: torch.Tensor) -> None:
            hidden = top(t.mlp_shared[0].weight, s.mlp_shared[0].out_channels)
            copy_conv(s.mlp_shared[0], t.mlp_shared[0], hidden, None)
            s.param_free_norm.running_mean.copy_(t.param_free_norm.running_mean[channels])
            s.param_free_norm.running_var.copy_(t.param_free_norm.running_var[channels])

        stream = top(teacher.fc.weight, student.fc.out_channels)
        copy_conv(student.fc, teacher.fc, stream, None)
        kept = {}
        for name in BLOCKS:
            s, t = student.get_submodule(name), teacher.get_submodule(name)
            mid = top(t.conv_0.weight[:, stream], s.conv_0.out_channels)
            out = top(t.conv_1.weight[:, mid], s.conv_1.out_channels) if s.learned_shortcut else stream
            copy_spade(s.norm_0, t.norm_0, stream)
            copy_conv(s.conv_0, t.conv_0, mid, stream)
            copy_spade(s.norm_1, t.norm_1, mid)
            copy_conv(s.conv_1, t.conv_1, out, mid)
            if s.learned_shortcut:
                copy_spade(s.norm_s, t.norm_s, stream)
                copy_conv(s.conv_s, t.conv_s, out, stream)
            stream = kept[name] = out
        copy_conv(student.conv_img, teacher.conv_img, torch.arange(3), stream)
        return [kept[p] for p in student.distill_points]


SPADE_FAMILY = SpadeFamily()
