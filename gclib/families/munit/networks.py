"""The MUNIT family's networks (Huang et al. 2018; compressed by Fast GAN Compression): the teacher, the mobile
student and the once-for-all supernet.

MUNIT splits an image into a **content code** (a feature map: what is where) and a **style code** (8 numbers: how it
looks), and draws an image from any content and any style. One input therefore has many right answers: the style
code selects one. ::

    style encoder   image -> 7x7 d -> 4x4/2 2d -> 4x4/2 4d -> 4x4/2 4d -> 4x4/2 4d -> global mean -> 1x1 -> s (8)
    content encoder image -> 7x7 d (IN) -> 4x4/2 2d (IN) -> 4x4/2 4d (IN) -> 4 residual blocks (IN)   -> c (4d, H/4)
    decoder         c -> 4 residual blocks (AdaIN) -> [x2, 5x5 (LayerNorm)] x2 -> 7x7 -> tanh         -> image
    MLP             s -> 256 -> 256 -> the AdaIN scales and shifts of the decoder's residual blocks

AdaIN normalises each channel of each image, then scales and shifts it by numbers the MLP computed from the style:
``AdaIN(x, s) = sigma(s) * (x - mu(x)) / std(x) + mu(s)``.

The mobile student (the paper's) keeps the encoders' convs and the output conv dense, and makes the residual blocks'
convs and the upsampling convs **separable** (depthwise k x k -> InstanceNorm -> pointwise 1x1). Its 10-entry config
sets (``c0 .. c9``; ``d`` = the teacher's 64 at full width)::

    c0 style encoder base (c0, 2 c0, 4 c0)  | c1 content stem | c2 first down (x2) | c3 second down (x4: the content
    code's width, which the decoder keeps) | c4, c5 content residual middles (x4, each shared by two blocks)
    | c6, c7 AdaIN residual middles (x4, each shared by two blocks) | c8, c9 upsampling convs (x2, x1)

Sizes at edges2shoes' 256x256, with the style encoder (``tests/test_munit_networks.py``): the teacher has 15.0 M
parameters and 77.30 G MACs as today's torchprofile counts them, the released ``16_16_16_24_56_16_40_40_32_24``
1.10 M and 2.610 G. The paper's 77.3 G and 2.63 G also count one MAC per value an InstanceNorm without parameters
writes (77.31 G, 2.6295 G), which the profiler release the paper used did and today's does not.

The supernet's AdaINs take the first k of the scales and shifts its MLP computes at full width; an extracted
sub-network's MLP keeps those rows only (:func:`adain_rows`). AdaIN's parameters are set as attributes before each
decoder pass, which ``torch.export`` warns about and handles.

Parameter names follow the official generators (``enc_style.model.0.conv.weight``, ``dec.model.0.model.1...``),
so official checkpoints map onto these modules.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...nn.elastic import make_elastic, set_active_widths
from ..base import encode, parse_widths, parse_within

STYLE_DIM = 8          # the style code's length
MLP_DIM = 256          # the AdaIN MLP's hidden width
N_DOWN, N_RES = 2, 4   # content downsamplings, residual blocks in the content encoder and in the decoder
ENTRIES = ("style", "stem", "down_1", "down_2", "content_res_0", "content_res_1", "adain_res_0", "adain_res_1",
           "up_1", "up_2")


class LayerNorm(nn.Module):
    """MUNIT's LayerNorm: each image normalised over all its values (C, H, W) with the unbiased std, then a
    per-channel scale ``gamma`` and shift ``beta``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(channels).uniform_())
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean, std = flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)
        c = x.shape[1]                             # a supernet's sub-network uses the first c scales and shifts
        return (x - mean) / (std + self.eps) * self.gamma[:c].view(1, -1, 1, 1) + self.beta[:c].view(1, -1, 1, 1)


class AdaptiveInstanceNorm2d(nn.Module):
    """InstanceNorm whose per-image scale and shift (``weight``, ``bias``: (B, C)) are set before each forward by
    the generator, from the style code (:meth:`MUNITGenerator.decode`)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = channels, eps
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None or self.bias is None:
            raise RuntimeError("AdaIN needs its style: call the generator (or decode), not the decoder alone")
        c = x.shape[1]
        normalised = F.instance_norm(x, eps=self.eps)
        return normalised * self.weight[:, :c, None, None] + self.bias[:, :c, None, None]


class SeparableConv2d(nn.Module):
    """depthwise k x k -> InstanceNorm -> pointwise 1x1 (the mobile convs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, stride, groups=in_channels),
            nn.InstanceNorm2d(in_channels), nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


NORMS = {"none": lambda c: None, "in": lambda c: nn.InstanceNorm2d(c), "ln": LayerNorm,
         "adain": AdaptiveInstanceNorm2d}


class Conv2dBlock(nn.Module):
    """reflection pad -> conv (dense or separable) -> norm -> activation."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, norm: str = "none",
                 activation: str = "relu", separable: bool = False):
        super().__init__()
        self.pad = nn.ReflectionPad2d(padding)
        self.conv = (SeparableConv2d(cin, cout, kernel_size, stride) if separable
                     else nn.Conv2d(cin, cout, kernel_size, stride))
        self.norm = NORMS[norm](cout)
        self.activation = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": None}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class ResBlock(nn.Module):
    """x + conv3x3(act(norm(conv3x3(x)))) with a middle width ``mid`` (the teacher's: ``dim``)."""

    def __init__(self, dim: int, mid: int, norm: str, separable: bool = False):
        super().__init__()
        self.model = nn.Sequential(Conv2dBlock(dim, mid, 3, 1, 1, norm, "relu", separable),
                                   Conv2dBlock(mid, dim, 3, 1, 1, norm, "none", separable))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class ResBlocks(nn.Module):
    def __init__(self, dim: int, mids: Sequence[int], norm: str, separable: bool = False):
        super().__init__()
        self.model = nn.Sequential(*(ResBlock(dim, m, norm, separable) for m in mids))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class StyleEncoder(nn.Module):
    """image (B, 3, H, W) -> style code (B, 8, 1, 1): no normalisation (it would erase the style)."""

    def __init__(self, dim: int, input_nc: int = 3, style_dim: int = STYLE_DIM, n_down: int = 4):
        super().__init__()
        layers = [Conv2dBlock(input_nc, dim, 7, 1, 3)]
        for i in range(n_down):
            out = dim * 2 if i < 2 else dim
            layers.append(Conv2dBlock(dim, out, 4, 2, 1))
            dim = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ContentEncoder(nn.Module):
    """image -> content code (B, widths[-1], H/4, W/4): a 7x7 stem, two stride-2 convs, residual blocks."""

    def __init__(self, widths: Sequence[int], res_mids: Sequence[int], input_nc: int = 3, separable: bool = False):
        super().__init__()
        layers = [Conv2dBlock(input_nc, widths[0], 7, 1, 3, "in")]
        layers += [Conv2dBlock(cin, cout, 4, 2, 1, "in") for cin, cout in zip(widths[:-1], widths[1:])]
        layers.append(ResBlocks(widths[-1], res_mids, "in", separable))
        self.model = nn.Sequential(*layers)
        self.output_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """content code -> image: AdaIN residual blocks, then x2 nearest + 5x5 conv + LayerNorm per upsampling, a 7x7
    conv and tanh."""

    def __init__(self, dim: int, res_mids: Sequence[int], up_widths: Sequence[int], output_nc: int = 3,
                 separable: bool = False):
        super().__init__()
        layers: list[nn.Module] = [ResBlocks(dim, res_mids, "adain", separable)]
        for width in up_widths:
            layers += [nn.Upsample(scale_factor=2), Conv2dBlock(dim, width, 5, 1, 2, "ln", "relu", separable)]
            dim = width
        layers.append(Conv2dBlock(dim, output_nc, 7, 1, 3, "none", "tanh"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MLP(nn.Module):
    """style (B, 8[, 1, 1]) -> 256 -> 256 -> every AdaIN's (shift, scale), ReLU between."""

    def __init__(self, out_features: int, in_features: int = STYLE_DIM, dim: int = MLP_DIM):
        super().__init__()
        self.model = nn.Sequential(_Linear(in_features, dim, True), _Linear(dim, dim, True),
                                   _Linear(dim, out_features, False))

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        return self.model(style.flatten(1))


class _Linear(nn.Module):
    """Linear (+ ReLU), named as the official LinearBlock (``fc``)."""

    def __init__(self, cin: int, cout: int, relu: bool):
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return F.relu(x) if self.relu else x


class MUNITGenerator(nn.Module):
    """``forward(images, style=None)``: the content of ``images`` drawn in ``style`` (B, 8) or, without one, in the
    images' own style (the style encoder's reading). ``encode`` and ``decode`` expose the two codes."""

    def __init__(self, style_width: int, content: Sequence[int], content_mids: Sequence[int],
                 adain_mids: Sequence[int], ups: Sequence[int], input_nc: int = 3, separable: bool = False):
        super().__init__()
        self.arch = {"input_nc": input_nc}             # the structure besides the widths (the family contract)
        self.enc_style = StyleEncoder(style_width, input_nc)    # its first conv's width; the code stays 8 long
        self.enc_content = ContentEncoder(content, content_mids, input_nc, separable)
        self.dec = Decoder(content[-1], adain_mids, ups, input_nc, separable)
        self.adain = [m for m in self.dec.modules() if isinstance(m, AdaptiveInstanceNorm2d)]
        self.mlp = MLP(sum(2 * m.num_features for m in self.adain))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content code (B, C, H/4, W/4), style code (B, 8, 1, 1))."""
        return self.enc_content(images), self.enc_style(images)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style)                      # (B, sum 2 C_i): per AdaIN, C shifts then C scales
        for m in self.adain:
            c = m.num_features
            m.bias, m.weight = params[:, :c], params[:, c:2 * c]
            params = params[:, 2 * c:]
        return self.dec(content)

    def forward(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if style is None:
            content, style = self.encode(images)
        else:
            content = self.enc_content(images)
        return self.decode(content, style)


def translator(G_A: MUNITGenerator, G_B: MUNITGenerator) -> MUNITGenerator:
    """MUNIT's A -> B translation as one generator: G_A's content encoder with G_B's style encoder, MLP and decoder
    (the two auto-encoders share the content space). The modules are shared, not copied: its ``state_dict`` is the
    translator's weights, and it follows G_A and G_B while they train."""
    net = copy.copy(G_B)                     # a shallow copy: G_B's modules, in a module dict of its own
    net._modules = dict(G_B._modules)
    net._modules["enc_content"] = G_A.enc_content
    return net


def teacher_widths(ngf: int) -> dict:
    """The teacher's widths in :func:`config_widths`' form."""
    return {"style": ngf, "stem": ngf, "down_1": 2 * ngf, "down_2": 4 * ngf, "content_res": [4 * ngf] * N_RES,
            "adain_res": [4 * ngf] * N_RES, "ups": (2 * ngf, ngf)}


def _build(w: dict, input_nc: int, separable: bool) -> dict:
    """MUNITGenerator's arguments from a widths dict."""
    return {"style_width": w["style"], "content": (w["stem"], w["down_1"], w["down_2"]),
            "content_mids": w["content_res"],
            "adain_mids": w["adain_res"], "ups": w["ups"], "input_nc": input_nc, "separable": separable}


def teacher(ngf: int = 64, input_nc: int = 3) -> MUNITGenerator:
    """MUNIT's generator (edges2shoes: ngf 64, 15.0 M parameters)."""
    return MUNITGenerator(**_build(teacher_widths(ngf), input_nc, separable=False))


def config_widths(config: str | Sequence[int]) -> dict[str, int]:
    """The widths a 10-entry config sets (see the module docstring)."""
    c = parse_widths(config, len(ENTRIES), "munit")
    return {"style": c[0], "stem": c[1], "down_1": 2 * c[2], "down_2": 4 * c[3],
            "content_res": [4 * c[4], 4 * c[4], 4 * c[5], 4 * c[5]],
            "adain_res": [4 * c[6], 4 * c[6], 4 * c[7], 4 * c[7]], "ups": (2 * c[8], c[9])}


def width_slots(w: dict) -> dict[str, int]:
    """Module name -> output width of every conv a config controls (for a separable conv, its pointwise conv; the
    depthwise one follows its input). The style encoder's last conv (8 outputs), the output conv (3) and the MLP
    keep their widths."""
    slots = {f"enc_style.model.{i}.conv": width for i, width in
             enumerate((w["style"], 2 * w["style"], 4 * w["style"], 4 * w["style"], 4 * w["style"]))}
    code = w["down_2"]                                   # the content code's width, kept through the decoder
    slots.update({"enc_content.model.0.conv": w["stem"], "enc_content.model.1.conv": w["down_1"],
                  "enc_content.model.2.conv": code})
    for part, mids in (("enc_content.model.3", w["content_res"]), ("dec.model.0", w["adain_res"])):
        for i, mid in enumerate(mids):
            slots[f"{part}.model.{i}.model.0.conv.conv.2"] = mid
            slots[f"{part}.model.{i}.model.1.conv.conv.2"] = code
    slots["dec.model.2.conv.conv.2"], slots["dec.model.4.conv.conv.2"] = w["ups"]
    return slots


def student(config: str | Sequence[int], input_nc: int = 3) -> MUNITGenerator:
    """The mobile MUNIT of ``config`` (separable residual and upsampling convs)."""
    net = MUNITGenerator(**_build(config_widths(config), input_nc, separable=True))
    net.config = encode(parse_widths(config, len(ENTRIES), "munit"))
    return net


class SuperMobileMUNITGenerator(MUNITGenerator):
    """The once-for-all supernet: the mobile MUNIT with every entry ``max_width``, its convs and norms elastic.
    ``set_config(config)`` activates a sub-network: each controlled conv uses its first k filters, each AdaIN the
    first k of the scales and shifts the MLP computes for it (the MLP always computes them all)."""

    def __init__(self, max_width: int = 64, input_nc: int = 3):
        super().__init__(**_build(config_widths([max_width] * len(ENTRIES)), input_nc, separable=True))
        make_elastic(self)
        self.max_width = max_width
        self.set_config(encode([max_width] * len(ENTRIES)))

    def set_config(self, config: str | Sequence[int]) -> "SuperMobileMUNITGenerator":
        values = parse_within(config, len(ENTRIES), "munit", self.max_width)
        set_active_widths(self, width_slots(config_widths(values)))
        self.config = encode(values)
        return self


def adain_rows(full: Sequence[int], active: Sequence[int]) -> torch.Tensor:
    """The rows of the MLP's last layer a sub-network keeps: for each AdaIN (full width C, active c, in order), the
    first c of its C shifts and the first c of its C scales."""
    rows, offset = [], 0
    for c_full, c in zip(full, active):
        rows += [torch.arange(offset, offset + c), torch.arange(offset + c_full, offset + c_full + c)]
        offset += 2 * c_full
    return torch.cat(rows)
