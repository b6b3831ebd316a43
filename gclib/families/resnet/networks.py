"""The ResNet family's networks: the pix2pix/CycleGAN teacher, the mobile student and the once-for-all supernet.

Teacher ``ResnetGenerator`` (Johnson et al. 2016; the paper's teacher with ngf 64 and 9 blocks: 56.80 G MACs and
11.38 M parameters at 256x256). Its layers sit in one ``nn.Sequential`` called ``model`` in the official order, so
official checkpoints load. Index map with 9 blocks (the four distillation points starred)::

    0 pad   1 conv7x7 3->ngf   2 norm  3 relu
    4 conv3x3 s2 ngf->2ngf     5 norm  6 relu          # H   -> H/2
    7 conv3x3 s2 2ngf->4ngf    8 norm  9 relu *        # H/2 -> H/4
    10..18 ResnetBlock(4ngf)   (12*, 15*, 18* = after blocks 3, 6, 9)
    19 convT 4ngf->2ngf        20 norm 21 relu         # H/4 -> H/2
    22 convT 2ngf->ngf         23 norm 24 relu         # H/2 -> H
    25 pad   26 conv7x7 ngf->3 27 tanh

Checkpoint layouts. GAN Compression's residual blocks always hold a Dropout slot, so a block's second conv is
``conv_block.6``; pytorch-CycleGAN-and-pix2pix without dropout has no slot and puts it at ``conv_block.5``. Our blocks
keep the slot (GAN Compression's layout) and :meth:`_BlockLayout` renames ``.5`` keys on load, so both kinds of
official checkpoints load with ``load_state_dict(strict=True)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...nn.elastic import make_elastic, set_active_widths
from ..base import encode, parse_widths, parse_within
from ...nn.gan import instance_norm

FIRST_BLOCK = 10  # index in ``model`` of the first residual block


def config_widths(values: Sequence[int]) -> dict[str, int]:
    """The layer widths an 8-entry config ``c0_..._c7`` sets::

        stem c0 | down 2*c1 | down 4*c2 = residual trunk of all blocks
        | block inner width 4*c3 (first third of the blocks), 4*c4 (second), 4*c5 (last) | up 2*c6 | up c7 | -> RGB
    """
    c = list(values)
    return {"stem": c[0], "down1": 2 * c[1], "trunk": 4 * c[2], "inner1": 4 * c[3], "inner2": 4 * c[4],
            "inner3": 4 * c[5], "up1": 2 * c[6], "up2": c[7]}


def inner_key(block: int, n_blocks: int) -> str:
    """Which inner width (``inner1..3``) residual block ``block`` (0-based) uses: one per third of the blocks."""
    return f"inner{min(2, block * 3 // n_blocks) + 1}"


class _BlockLayout(nn.Module):
    """Loads both official residual-block layouts: keys ``conv_block.5.*`` (no dropout slot) become ``.6.*``."""

    def __init__(self):
        super().__init__()
        self._register_load_state_dict_pre_hook(self._accept_layout_without_dropout_slot)

    @staticmethod
    def _accept_layout_without_dropout_slot(state_dict, prefix, *args):
        old = prefix + "conv_block.5."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "conv_block.6." + key[len(old):]] = state_dict.pop(key)


class ResnetBlock(_BlockLayout):
    """x + F(x), with F = pad-conv3x3-norm-relu-dropout-pad-conv3x3-norm (the official ``conv_block``)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), instance_norm(dim), nn.ReLU(True), nn.Dropout(dropout),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), instance_norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (one filter per channel) -> norm -> pointwise 1x1. Costs C*9 + C*C_out MACs per pixel instead
    of C*C_out*9 for a dense 3x3."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels),
            instance_norm(in_channels),
            nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MobileResnetBlock(_BlockLayout):
    """x + F(x) with F = pad-sep(dim->inner)-norm-relu-dropout-pad-sep(inner->dim)-norm."""

    def __init__(self, dim: int, inner: int, dropout: float = 0.0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), SeparableConv2d(dim, inner), instance_norm(inner), nn.ReLU(True),
            nn.Dropout(dropout), nn.ReflectionPad2d(1), SeparableConv2d(inner, dim), instance_norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _Generator(nn.Module):
    """What the family's generators share: the input clamp, the distillation points, clear load errors."""

    n_blocks: int
    model: nn.Sequential

    @property
    def arch(self) -> dict:
        return {"n_blocks": self.n_blocks}

    @property
    def distill_points(self) -> list[str]:
        """After the last down-sampling ReLU and after each third of the blocks (``model.9/12/15/18`` with 9)."""
        last = FIRST_BLOCK - 1
        return [f"model.{last}"] + [f"model.{last + round(self.n_blocks * k / 3)}" for k in (1, 2, 3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W) in [-1, 1]
        return self.model(x.clamp(-1, 1))  # like the official generators: inputs outside [-1, 1] are clipped

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as e:
            details = " ".join(str(e).split())[:400]
            found, own = describe_state_dict(state_dict), describe_state_dict(self.state_dict())
            if found == own:     # same kind, stem and blocks: the difference is inside, say where
                raise RuntimeError(f"this state dict has the shape of {self.describe()} ({found}) but not all of its "
                                   f"tensors: {details}. A checkpoint of another code base may name or size a layer "
                                   f"differently (e.g. a ResnetBlock without its dropout slot puts the second conv "
                                   f"at conv_block.5, not .6)") from None
            raise RuntimeError(f"this state dict does not fit {self.describe()} ({own}): it holds {found}. Build "
                               f"that architecture to load it (details: {details})") from None

    def describe(self) -> str:
        raise NotImplementedError


class ResnetGenerator(_Generator):
    """The teacher generator of pix2pix / CycleGAN."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.0):
        super().__init__()
        self.ngf, self.n_blocks = ngf, n_blocks
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), instance_norm(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):  # two stride-2 downsamplings: ngf -> 2ngf -> 4ngf
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       instance_norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):  # two stride-2 upsamplings: 4ngf -> 2ngf -> ngf
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       instance_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def describe(self) -> str:
        return f"the teacher ResnetGenerator(ngf={self.ngf}, n_blocks={self.n_blocks})"


class MobileResnetGenerator(_Generator):
    """The teacher's stem, down- and up-sampling, with separable convs in the residual blocks, at the widths of an
    8-entry config (``64_64_64_64_64_64_64_64`` is the mobile student with ngf 64: 18.31 G MACs at 256x256).

    ``width_slots`` names, for every conv whose output width the config sets, which width it takes: the supernet
    sets its elastic convs from it, and nothing else needs to know the layer indices."""

    def __init__(self, config: str | Sequence[int], n_blocks: int = 9, input_nc: int = 3, output_nc: int = 3):
        super().__init__()
        values = parse_widths(config, 8, "resnet")
        self.config, self.n_blocks = encode(values), n_blocks
        w = config_widths(values)
        self.width_slots: dict[str, str] = {}
        layers: list[nn.Module] = []

        def add(*modules: nn.Module, width: str | None = None) -> None:
            if width is not None:  # the first module added is the conv whose output width is ``width``
                self.width_slots[f"model.{len(layers)}"] = width
            layers.extend(modules)

        add(nn.ReflectionPad2d(3))
        add(nn.Conv2d(input_nc, w["stem"], 7), instance_norm(w["stem"]), nn.ReLU(True), width="stem")
        add(nn.Conv2d(w["stem"], w["down1"], 3, stride=2, padding=1), instance_norm(w["down1"]), nn.ReLU(True),
            width="down1")
        add(nn.Conv2d(w["down1"], w["trunk"], 3, stride=2, padding=1), instance_norm(w["trunk"]), nn.ReLU(True),
            width="trunk")
        for i in range(n_blocks):
            inner = inner_key(i, n_blocks)
            self.width_slots[f"model.{len(layers)}.conv_block.1.conv.2"] = inner      # pointwise: trunk -> inner
            self.width_slots[f"model.{len(layers)}.conv_block.6.conv.2"] = "trunk"    # pointwise: inner -> trunk
            add(MobileResnetBlock(w["trunk"], w[inner]))
        add(nn.ConvTranspose2d(w["trunk"], w["up1"], 3, stride=2, padding=1, output_padding=1),
            instance_norm(w["up1"]), nn.ReLU(True), width="up1")
        add(nn.ConvTranspose2d(w["up1"], w["up2"], 3, stride=2, padding=1, output_padding=1),
            instance_norm(w["up2"]), nn.ReLU(True), width="up2")
        add(nn.ReflectionPad2d(3), nn.Conv2d(w["up2"], output_nc, 7), nn.Tanh())
        self.model = nn.Sequential(*layers)

    def describe(self) -> str:
        return f"the mobile generator {self.config} ({self.n_blocks} blocks)"


class SuperMobileResnetGenerator(MobileResnetGenerator):
    """The widest mobile generator (every entry ``max_width``), able to run as any sub-network of the config space.

    ``set_config('32_24_48_...')`` (8 entries, each at most ``max_width``) sets the active widths of the next forward
    passes. Parameter names are the mobile generator's, so a sub-network is a slice of this state_dict."""

    def __init__(self, max_width: int = 64, n_blocks: int = 9):
        super().__init__([max_width] * 8, n_blocks)
        self.max_width = max_width
        make_elastic(self)
        self.set_config([max_width] * 8)

    def set_config(self, config: str | Sequence[int]) -> "SuperMobileResnetGenerator":
        values = parse_within(config, 8, "resnet", self.max_width)
        self.config = encode(values)
        w = config_widths(values)
        set_active_widths(self, {name: w[key] for name, key in self.width_slots.items()})
        return self

    def describe(self) -> str:
        return f"the supernet of max width {self.max_width} ({self.n_blocks} blocks)"


def describe_state_dict(state: dict) -> str:
    """What architecture a state dict of this family holds, read from its keys and shapes."""
    keys = list(state)
    stem = state.get("model.1.weight")
    if stem is None:
        return f"no ResNet-family generator (its first keys are {keys[:3]})"
    blocks = {k.split(".")[1] for k in keys if ".conv_block." in k}
    separable = any(".conv_block.1.conv.0." in k for k in keys)
    kind = "a mobile (separable) generator" if separable else "a dense teacher generator"
    return f"{kind} with stem width {stem.shape[0]} and {len(blocks)} residual blocks"
