"""The discriminator, GAN losses and weight init that every generator family shares (notebook 01)."""
from __future__ import annotations

import torch
from torch import nn

from ..presets import D_NORMS
from .elastic import strongest_channels


def instance_norm(channels: int) -> nn.Module:
    """InstanceNorm without affine parameters or running statistics: the norm of the ResNet generators and the
    PatchGAN. Non-affine means a sub-network that keeps the first k channels needs no re-calibration (notebook 03)."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: with ``n_layers=3`` each output logit sees a 70x70 patch of the input.

    ``input_nc`` is 6 for a conditional (pix2pix) discriminator that sees (input, output) stacked, 3 otherwise.
    Key names match the official pix2pix / GAN Compression discriminator, so their checkpoints load.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"discriminator norm {norm!r} is unknown; choose {' or '.join(map(repr, D_NORMS))}")
        # "none" keeps an nn.Identity in each norm's slot, so the keys of both variants are the same
        self.input_nc, self.n_layers, self.norm = input_nc, n_layers, norm
        make_norm = instance_norm if norm == "instance" else (lambda channels: nn.Identity())
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # n_layers stride-2 convs in all, then one stride-1 conv
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True),
                       make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1, H/8 - 2, W/8 - 2) patch logits
        return self.model(x)

    def with_width(self, ndf: int) -> "NLayerDiscriminator":
        """A new PatchGAN like this one (inputs, depth, normalisation), ``ndf`` wide, with PyTorch's default init."""
        return NLayerDiscriminator(self.input_nc, ndf, self.n_layers, self.norm)


@torch.no_grad()
def narrow_discriminator(narrow: NLayerDiscriminator, wide: NLayerDiscriminator) -> NLayerDiscriminator:
    """Start a narrower PatchGAN from a trained wider one, as the student generator starts from the teacher: in every
    conv but the last, keep the output channels whose filters have the largest L1 norm ``sum |W[c]|`` (in their
    order), inputs following the previous layer's choice; the last conv keeps its one logit. Its normalisation has no
    parameters (instance norm without affine, or none), so the copied convs are all there is. Returns ``narrow``."""
    convs = [(n, w) for n, w in zip(narrow.model, wide.model) if isinstance(w, nn.Conv2d)]
    if len(convs) != sum(isinstance(m, nn.Conv2d) for m in narrow.model) or \
            convs[0][0].in_channels != convs[0][1].in_channels:
        raise ValueError("narrow_discriminator needs two PatchGANs of the same depth and input channels")
    kept = torch.arange(convs[0][1].in_channels)                  # the input images' channels
    for i, (n, w) in enumerate(convs):
        if n.out_channels > w.out_channels:
            raise ValueError(f"the narrow discriminator's conv {i} has {n.out_channels} channels, more than the "
                             f"{w.out_channels} of the one it starts from")
        weight = w.weight[:, kept]                                 # (out, in kept, 4, 4)
        out = (torch.arange(n.out_channels) if i == len(convs) - 1
               else strongest_channels(weight.abs().sum((1, 2, 3)), n.out_channels))
        n.weight.copy_(weight[out])
        n.bias.copy_(w.bias[out])
        kept = out
    return narrow


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


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)
