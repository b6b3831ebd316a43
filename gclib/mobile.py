"""The mobile generator and the paper's 8-entry channel configuration (used from notebook 02 on).

A config ``c0_c1_c2_c3_c4_c5_c6_c7`` sets the widths (GUIDE section 1)::

    stem c0 | down 2*c1 | down 4*c2 = residual trunk of all 9 blocks
    | block inner width 4*c3 (blocks 1-3), 4*c4 (4-6), 4*c5 (7-9) | up 2*c6 | up c7 | 7x7 -> 3

``64_64_64_64_64_64_64_64`` is the mobile student with ngf 64 (18.31 G MACs at 256x256).
"""
from __future__ import annotations

import torch
from torch import nn

from .models import distill_points, norm_layer

CONFIG_LEN = 8
FAST_CYCLEGAN_CHOICES = (64, 48, 32, 24, 16)              # 5^8 = 390,625 configs
FAST_PIX2PIX_CHOICES = (64, 56, 48, 40, 32, 24, 16)       # 7^8 = 5,764,801 configs


def parse_config(config: str | list[int] | tuple[int, ...], choices: tuple[int, ...] | None = None) -> list[int]:
    """'16_16_24_16_32_64_16_24' -> [16, 16, 24, 16, 32, 64, 16, 24], with an error that says what is allowed."""
    if isinstance(config, str):
        parts = config.strip().split("_")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"config {config!r} must be {CONFIG_LEN} integers joined by '_', "
                             f"e.g. '32_32_32_32_32_32_32_32'") from None
    else:
        values = [int(v) for v in config]
    if len(values) != CONFIG_LEN:
        raise ValueError(f"config {config!r} has {len(values)} entries; it needs {CONFIG_LEN} "
                         f"(c0_c1_c2_c3_c4_c5_c6_c7)")
    if choices is not None:
        bad = [(i, v) for i, v in enumerate(values) if v not in choices]
        if bad:
            where = ", ".join(f"c{i}={v}" for i, v in bad)
            raise ValueError(f"config {config!r}: {where} not in the allowed widths {sorted(choices)}")
    elif any(v < 1 for v in values):
        raise ValueError(f"config {config!r}: every width must be a positive integer")
    return values


def encode_config(values: list[int]) -> str:
    return "_".join(str(v) for v in values)


def config_widths(values: list[int]) -> dict[str, int]:
    """The layer widths a config sets (the multipliers of GUIDE section 1)."""
    c = values
    return {"stem": c[0], "down1": 2 * c[1], "trunk": 4 * c[2], "inner1": 4 * c[3], "inner2": 4 * c[4],
            "inner3": 4 * c[5], "up1": 2 * c[6], "up2": c[7]}


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (one filter per channel) -> norm -> pointwise 1x1. Costs C*9 + C*C_out MACs per pixel instead
    of C*C_out*9 for a dense 3x3."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=True),
            norm_layer(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MobileResnetBlock(nn.Module):
    """x + F(x) with F = pad-sep(dim->inner)-norm-relu-pad-sep(inner->dim)-norm."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), SeparableConv2d(dim, inner), norm_layer(inner), nn.ReLU(True),
            nn.ReflectionPad2d(1), SeparableConv2d(inner, dim), norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class MobileResnetGenerator(nn.Module):
    """The teacher's stem, down- and up-sampling, with separable convs in the residual blocks.

    Built either from ``ngf`` (every width as the teacher's) or from an 8-entry ``config``. The ``model`` indices
    match the teacher's, so the distillation points are the same (``9, 12, 15, 18`` for 9 blocks)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 config: str | list[int] | None = None):
        super().__init__()
        values = parse_config(config) if config is not None else [ngf] * CONFIG_LEN
        self.config = encode_config(values)
        w = config_widths(values)
        self.n_blocks = n_blocks
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, w["stem"], 7), norm_layer(w["stem"]),
                                   nn.ReLU(True),
                                   nn.Conv2d(w["stem"], w["down1"], 3, stride=2, padding=1), norm_layer(w["down1"]),
                                   nn.ReLU(True),
                                   nn.Conv2d(w["down1"], w["trunk"], 3, stride=2, padding=1), norm_layer(w["trunk"]),
                                   nn.ReLU(True)]
        inners = [w["inner1"], w["inner2"], w["inner3"]]
        layers += [MobileResnetBlock(w["trunk"], inners[min(2, i * 3 // n_blocks)]) for i in range(n_blocks)]
        layers += [nn.ConvTranspose2d(w["trunk"], w["up1"], 3, stride=2, padding=1, output_padding=1),
                   norm_layer(w["up1"]), nn.ReLU(True),
                   nn.ConvTranspose2d(w["up1"], w["up2"], 3, stride=2, padding=1, output_padding=1),
                   norm_layer(w["up2"]), nn.ReLU(True),
                   nn.ReflectionPad2d(3), nn.Conv2d(w["up2"], output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def distill_indices(self) -> list[int]:
        return distill_points(self.n_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
