"""The SPADE (GauGAN) family's networks: the teacher, the mobile student and the once-for-all supernet.

GauGAN (Park et al. 2019) turns a one-hot semantic label map into an image. It has no encoder: a 3x3 conv ``fc`` reads
the label map shrunk to a small latent grid, and seven SPADE residual blocks upsample it back::

    label map (B, L, H, W) --nearest--> (B, L, H/2^u, W/2^u) --fc 3x3--> 16 nf
    head_0   16nf -> 16nf                       (latent size)
    G_middle_0, G_middle_1  16nf -> 16nf
    up_0     16nf -> 8nf,  up_1 8nf -> 4nf,  up_2 4nf -> 2nf,  up_3 2nf -> nf  (x2 upsampling before each)
    leaky ReLU -> conv_img 3x3 -> tanh

With the paper's ``u = 5`` upsamplings the first x2 comes after ``head_0``; fewer upsamplings (``n_up``, for small
images: at 32x32 five would leave a 1x1 grid) drop the earliest ones, so ``up_3`` always works at full size.

A SPADE residual block (``fin -> fout``, ``fmid = min(fin, fout)``)::

    x_s = x                                   if fin == fout, else conv_s 1x1(SPADE_s(x, seg))  (learned shortcut)
    dx  = conv_0 3x3(lrelu(SPADE_0(x, seg)))      fin  -> fmid
    dx  = conv_1 3x3(lrelu(SPADE_1(dx, seg)))     fmid -> fout
    out = x_s + dx

and SPADE normalises without parameters, then modulates with a scale and shift *predicted from the label map*::

    SPADE(x, seg) = BN(x) * (1 + gamma(seg)) + beta(seg),     BN: BatchNorm2d without affine parameters
    shared = ReLU(conv3x3(seg resized to x)) (hidden channels);  gamma, beta = conv3x3(shared) -> channels of x

The norm is a **BatchNorm**: its running statistics are the mean and variance of each channel over the training
images. A sub-network of the supernet sees other statistics than the full network (fewer channels feed each channel),
so each sub-network's statistics are re-computed on training images before it is scored (:func:`recalibrate`).
InstanceNorm families (ResNet) normalise per image and need nothing of the kind.

Mobile student (the paper's): the block convs stay dense 3x3; only SPADE's gamma/beta convs become separable
(depthwise 3x3 -> InstanceNorm -> pointwise 1x1). Its 8-entry config ``c0_..._c7`` sets (see :func:`config_widths`)::

    fc out 16 c0 = the residual stream through G_middle_1 | head_0, G_middle_0, G_middle_1 inner 16 c1, 16 c2, 16 c3
    | up_0 8 c4 | up_1 4 c5 | up_2 2 c6 | up_3 c7           and every SPADE of block k has 2 c_k hidden channels.

Parameter names follow the official GAN Compression generators (``fc``, ``head_0.norm_0.mlp_shared.0``, ...).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...nn.elastic import make_elastic, set_active_widths
from ...nn.gan import instance_norm
from ..base import encode, parse_widths, parse_within

BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
# each block's output width as a multiple of nf (teacher) or of its config entry (mobile)
BLOCK_MULT = {"head_0": 16, "G_middle_0": 16, "G_middle_1": 16, "up_0": 8, "up_1": 4, "up_2": 2, "up_3": 1}
NORMAL_UPSAMPLINGS = 5   # SPADE's 'normal' (COCO-Stuff, ADE20K): the latent grid is 1/32 of the image
CITYSCAPES_UPSAMPLINGS = 6   # official 'more' (the cityscapes GauGAN the paper compresses): 1/64


def config_widths(values: Sequence[int]) -> dict[str, int]:
    """The widths an 8-entry config sets: ``fc`` (the residual stream of head_0 .. G_middle_1), the inner width of
    each block (``<block>``; for up_0..up_3 also their output width) and the SPADE hidden width of each block."""
    c = list(values)
    widths = {"fc": 16 * c[0]}
    for i, block in enumerate(BLOCKS):
        widths[block] = BLOCK_MULT[block] * c[i + 1]
        widths[f"{block}.hidden"] = 2 * c[i + 1]
    return widths


def upsampled_blocks(n_up: int) -> set[str]:
    """The blocks whose input is upsampled x2 first. SPADE's ``num_upsampling_layers``: 'normal', five (G_middle_0
    and up_0..up_3: COCO-Stuff, ADE20K); 'more', six (G_middle_1 too: the official cityscapes GauGAN)."""
    order = ("up_3", "up_2", "up_1", "up_0", "G_middle_0", "G_middle_1")
    if not 0 <= n_up <= len(order):
        raise ValueError(f"n_up = {n_up} upsamplings: a SPADE generator has between 0 and {len(order)}")
    return set(order[:n_up])


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 -> InstanceNorm -> pointwise 1x1 (GAN Compression's mobile SPADE gamma/beta convs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels),
            instance_norm(in_channels),
            nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SPADE(nn.Module):
    """BN(x) * (1 + gamma(seg)) + beta(seg). ``separable``: the mobile gamma/beta convs."""

    def __init__(self, channels: int, label_nc: int, hidden: int, separable: bool = False):
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        make = SeparableConv2d if separable else (lambda i, o: nn.Conv2d(i, o, 3, padding=1))
        self.mlp_gamma, self.mlp_beta = make(hidden, channels), make(hidden, channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # x (B, C, h, w), seg (B, L, H, W)
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))   # (B, hidden, h, w)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """``fin -> fout`` with a middle width ``fmid`` (teacher: min(fin, fout)); a learned 1x1 shortcut when the
    block changes width (``shortcut``)."""

    def __init__(self, fin: int, fmid: int, fout: int, label_nc: int, hidden: int, shortcut: bool,
                 separable: bool = False):
        super().__init__()
        self.learned_shortcut = shortcut
        self.conv_0 = nn.Conv2d(fin, fmid, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmid, fout, 3, padding=1)
        if shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden, separable)
        self.norm_0 = SPADE(fin, label_nc, hidden, separable)
        self.norm_1 = SPADE(fmid, label_nc, hidden, separable)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class _Generator(nn.Module):
    """What the family's generators share: the forward pass, the distillation points, the structural settings."""

    label_nc: int
    n_up: int

    def _build(self, fc: int, blocks: dict[str, tuple[int, int, int, int]], separable: bool) -> None:
        """``blocks``: name -> (fin, fmid, fout, hidden)."""
        self.fc = nn.Conv2d(self.label_nc, fc, 3, padding=1)
        for name, (fin, fmid, fout, hidden) in blocks.items():
            setattr(self, name, SPADEResnetBlock(fin, fmid, fout, self.label_nc, hidden,
                                                 shortcut=BLOCK_MULT[name] < 16, separable=separable))
        self.conv_img = nn.Conv2d(blocks["up_3"][2], 3, 3, padding=1)
        self._upsampled = upsampled_blocks(self.n_up)

    @property
    def arch(self) -> dict:
        return {"label_nc": self.label_nc, "n_up": self.n_up}

    @property
    def distill_points(self) -> list[str]:
        """The paper's: the outputs of head_0, G_middle_1 and up_1."""
        return ["head_0", "G_middle_1", "up_1"]

    def forward(self, seg: torch.Tensor) -> torch.Tensor:  # (B, label_nc, H, W) one-hot -> (B, 3, H, W) in [-1, 1]
        h, w = seg.shape[2] >> self.n_up, seg.shape[3] >> self.n_up
        if h < 1 or w < 1:
            raise ValueError(f"a {seg.shape[2]}x{seg.shape[3]} label map is too small for {self.n_up} upsamplings "
                             f"(the latent grid would be empty); use images of at least {2 ** self.n_up} pixels")
        x = self.fc(F.interpolate(seg, size=(h, w), mode="nearest"))
        for name in BLOCKS:
            if name in self._upsampled:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, name)(x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class SPADEGenerator(_Generator):
    """The teacher: dense SPADE blocks of widths ``16 nf .. nf``, SPADE hidden width ``2 nf`` (the paper's: nf 64,
    93.0 M parameters; cityscapes label maps have 35 classes + the instance-edge channel; MACs in ``family.py``)."""

    def __init__(self, ngf: int = 64, label_nc: int = 36, n_up: int = CITYSCAPES_UPSAMPLINGS):
        super().__init__()
        self.ngf, self.label_nc, self.n_up = ngf, label_nc, n_up
        blocks, fin = {}, 16 * ngf
        for name in BLOCKS:
            fout = BLOCK_MULT[name] * ngf
            blocks[name] = (fin, min(fin, fout), fout, 2 * ngf)
            fin = fout
        self._build(16 * ngf, blocks, separable=False)

    def describe(self) -> str:
        return f"the SPADE teacher (ngf {self.ngf}, {self.label_nc} label channels)"


class MobileSPADEGenerator(_Generator):
    """The mobile student at the widths of an 8-entry config (see the module's docstring). ``width_slots`` names,
    for every conv whose output width the config sets, which width it takes (the supernet reads it)."""

    def __init__(self, config: str | Sequence[int], label_nc: int = 36, n_up: int = CITYSCAPES_UPSAMPLINGS):
        super().__init__()
        values = parse_widths(config, 8, "spade")
        self.config, self.label_nc, self.n_up = encode(values), label_nc, n_up
        w = config_widths(values)
        blocks = {}
        self.width_slots: dict[str, str] = {"fc": "fc"}
        stream_slot = "fc"                            # the width slot of the tensor entering the block
        for name in BLOCKS:
            shortcut = BLOCK_MULT[name] < 16
            out_slot = name if shortcut else stream_slot  # blocks without a shortcut add back onto the stream
            blocks[name] = (w[stream_slot], w[name], w[out_slot], w[f"{name}.hidden"])
            self.width_slots.update({f"{name}.conv_0": name, f"{name}.conv_1": out_slot})
            if shortcut:
                self.width_slots[f"{name}.conv_s"] = name
            modulated = {"norm_0": stream_slot, "norm_1": name, **({"norm_s": stream_slot} if shortcut else {})}
            for norm, slot in modulated.items():
                self.width_slots[f"{name}.{norm}.mlp_shared.0"] = f"{name}.hidden"
                for head in ("mlp_gamma", "mlp_beta"):           # pointwise conv -> the width SPADE modulates
                    self.width_slots[f"{name}.{norm}.{head}.conv.2"] = slot
            stream_slot = out_slot
        self._build(w["fc"], blocks, separable=True)

    def describe(self) -> str:
        return f"the mobile SPADE generator {self.config} ({self.label_nc} label channels)"


class SuperMobileSPADEGenerator(MobileSPADEGenerator):
    """The widest mobile generator (every entry ``max_width``), able to run as any sub-network: ``set_config``
    sets the active widths of the next forward passes. Its BatchNorms use the first k running statistics, so a
    sub-network's statistics live inside the supernet's; :func:`recalibrate` re-computes them per sub-network."""

    def __init__(self, max_width: int = 64, label_nc: int = 36, n_up: int = CITYSCAPES_UPSAMPLINGS):
        super().__init__([max_width] * 8, label_nc, n_up)
        self.max_width = max_width
        make_elastic(self)
        for m in self.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__ = ElasticBatchNorm2d
        self.set_config([max_width] * 8)

    def set_config(self, config: str | Sequence[int]) -> "SuperMobileSPADEGenerator":
        values = parse_within(config, 8, "spade", self.max_width)
        self.config = encode(values)
        w = config_widths(values)
        set_active_widths(self, {name: w[key] for name, key in self.width_slots.items()})
        return self

    def describe(self) -> str:
        return f"the SPADE supernet of max width {self.max_width} ({self.label_nc} label channels)"


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm at whatever width arrives, using (and in training updating) its first ``C`` running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
        weight = self.weight[:c] if self.weight is not None else None
        bias = self.bias[:c] if self.bias is not None else None
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias,   # views: updated in place
                            self.training, momentum, self.eps)


@torch.no_grad()
def recalibrate(net: nn.Module, label_maps, max_batches: int | None = None) -> nn.Module:
    """Re-compute every BatchNorm's running statistics of ``net`` (a student, or a supernet at its active config)
    as the exact average over ``label_maps`` (an iterable of (B, L, H, W) batches): reset, forward in train mode
    with a cumulative average (``momentum=None``), back to eval. Returns ``net``, in eval mode."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for i, seg in enumerate(label_maps):
        if max_batches is not None and i >= max_batches:
            break
        net(seg.to(next(net.parameters()).device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return net.eval()
