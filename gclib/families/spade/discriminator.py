"""GauGAN's discriminator and losses: a multi-scale PatchGAN that sees (label map, image), the hinge GAN loss and
feature matching.

- **Multi-scale**: ``num_d`` PatchGANs, the k-th on the input average-pooled k times (x1/2 each): the full-size one
  judges texture, the half-size one layout.
- Each PatchGAN has ``n_layers`` 4x4 convs (stride 2, the last stride 1) with spectral norm and InstanceNorm, then a
  4x4 conv to one logit per patch; it returns *every* layer's output, because the generator is also trained to match
  the discriminator's features of real images (feature matching, pix2pixHD).
- **Hinge loss** (Lim & Ye 2017): the discriminator pushes real logits above 1 and fake ones below -1,
  ``L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(s)))]``; the generator raises fake logits, ``L_G = -E[D(G(s))]``.
- **Feature matching**: ``L_FM = sum_d 1/num_d sum_l |D_l(G(s)) - D_l(x)|_1`` (mean absolute difference per layer,
  real features fixed), weighted x10 in GauGAN.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ...nn.gan import instance_norm


class PatchDiscriminator(nn.Module):
    """``n_layers`` spectral-norm 4x4 convs (each but the first followed by InstanceNorm), then a 4x4 conv to logits.
    ``forward`` returns the output of every stage, the logits last."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        stages = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))]
        width = ndf
        for n in range(1, n_layers):
            prev, width = width, min(width * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            stages.append(nn.Sequential(spectral_norm(nn.Conv2d(prev, width, 4, stride=stride, padding=2, bias=False)),
                                        instance_norm(width), nn.LeakyReLU(0.2)))
        stages.append(nn.Sequential(nn.Conv2d(width, 1, 4, stride=1, padding=2)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the (label map, image) pair at full, half, ... size. Returns one feature list each."""

    def __init__(self, label_nc: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2, image_nc: int = 3):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(label_nc + image_nc, ndf, n_layers) for _ in range(num_d))

    def forward(self, seg: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([seg, image], dim=1)                    # (B, label_nc + 3, H, W)
        outputs = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(d(x))
        return outputs


def hinge_d_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(s)))], averaged over the scales (logits are each list's last)."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)


def hinge_g_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """-E[D(G(s))], averaged over the scales."""
    return sum(-f[-1].mean() for f in fake) / len(fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """sum over scales (1/num_d) and stages but the logits of |D_l(fake) - D_l(real)|_1, real features held fixed."""
    total = sum(F.l1_loss(f, r.detach()) for rs, fs in zip(real, fake) for r, f in zip(rs[:-1], fs[:-1]))
    return total / len(real)
