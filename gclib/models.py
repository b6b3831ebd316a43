"""Generators, discriminator and GAN losses (notebook 01).

The teacher is the pix2pix/CycleGAN ``ResnetGenerator`` laid out exactly as in the official code: one
``nn.Sequential`` called ``model`` whose indices match, so official checkpoints load with ``load_state_dict``.

Index map of ``ResnetGenerator(ngf=64, n_blocks=9).model`` (the four distillation points are starred)::

    0 pad   1 conv7x7 3->ngf   2 norm  3 relu
    4 conv3x3 s2 ngf->2ngf     5 norm  6 relu          # H   -> H/2
    7 conv3x3 s2 2ngf->4ngf    8 norm  9 relu *        # H/2 -> H/4
    10..18 ResnetBlock(4ngf)   (12*, 15*, 18* = after blocks 3, 6, 9)
    19 convT 4ngf->2ngf        20 norm 21 relu         # H/4 -> H/2
    22 convT 2ngf->ngf         23 norm 24 relu         # H/2 -> H
    25 pad   26 conv7x7 ngf->3 27 tanh
"""
from __future__ import annotations

import torch
from torch import nn


def norm_layer(channels: int) -> nn.Module:
    """The paper's norm for the ResNet generators: InstanceNorm without affine parameters.

    Non-affine means a sub-network that keeps the first k channels needs no re-calibration (notebook 03)."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def distill_points(n_blocks: int) -> list[int]:
    """Indices in ``model`` of the paper's four distillation points: after the last downsampling ReLU (9) and after
    residual blocks 3, 6 and 9 (12, 15, 18); with fewer blocks, after each third of them. Shared by the teacher and
    the mobile generators, whose ``model`` indices match."""
    first_block = 10
    return [first_block - 1] + [first_block - 1 + round(n_blocks * k / 3) for k in (1, 2, 3)]


class ResnetBlock(nn.Module):
    """x + F(x), with F = pad-conv3x3-norm-relu-pad-conv3x3-norm. Key names follow the official ``conv_block``."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm_layer(dim),
                                   nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The teacher generator of pix2pix / CycleGAN (Johnson et al. 2016 layout).

    With ``ngf=64, n_blocks=9`` at 256x256 it costs 56.80 G MACs and holds 11.38 M parameters (GUIDE section 1).
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.0):
        super().__init__()
        self.ngf, self.n_blocks = ngf, n_blocks
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), norm_layer(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):  # two stride-2 downsamplings: ngf -> 2ngf -> 4ngf
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                       norm_layer(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):  # two stride-2 upsamplings: 4ngf -> 2ngf -> ngf
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True), norm_layer(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def distill_indices(self) -> list[int]:
        return distill_points(self.n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with ``n_layers=3`` each output logit sees a 70x70 patch of the input.

    ``input_nc`` is 6 for a conditional (pix2pix) discriminator that sees (input, output) stacked, 3 otherwise.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # n_layers stride-2 convs in all, then one stride-1 conv
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True),
                       norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H/8 - 2, W/8 - 2) patch logits
        return self.model(x)


class GANLoss(nn.Module):
    """The three GAN objectives of the paper's code base.

    - ``lsgan``:   D minimises (D(x) - 1)^2 + D(G(z))^2; G minimises (D(G(z)) - 1)^2    (CycleGAN)
    - ``vanilla``: binary cross-entropy on logits                                     (original pix2pix)
    - ``hinge``:   D minimises relu(1 - D(x)) + relu(1 + D(G(z))); G minimises -D(G(z))  (GAN Compression pix2pix)
    """

    modes = ("lsgan", "vanilla", "hinge")

    def __init__(self, mode: str = "lsgan"):
        super().__init__()
        if mode not in self.modes:
            raise ValueError(f"GAN loss {mode!r} is unknown; choose one of {self.modes}")
        self.mode = mode

    def forward(self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if self.mode == "lsgan":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return nn.functional.mse_loss(logits, target)
        if self.mode == "vanilla":
            target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
            return nn.functional.binary_cross_entropy_with_logits(logits, target)
        # hinge
        if not for_discriminator:
            return -logits.mean()
        sign = -1.0 if target_is_real else 1.0
        return torch.relu(1.0 + sign * logits).mean()


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix's 'normal' init: conv weights ~ N(0, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net
