"""The once-for-all supernet (notebook 03): one set of weights, every sub-network of the config space.

A :class:`SuperMobileResnetGenerator` is a mobile generator at the widest width whose convolutions are *elastic*:
before a forward pass, :meth:`SuperMobileResnetGenerator.set_config` gives each conv an active output width, and the
conv uses only the **first k** filters (and the first channels of each filter that its input has)::

    Conv2d:           weight[:out, :in]      (out, in, k, k)
    depthwise Conv2d: weight[:in]            (in, 1, k, k), groups = in
    ConvTranspose2d:  weight[:in, :out]      (in, out, k, k)

Norms are non-affine InstanceNorms, so they need no per-width statistics. Because the super layers keep the plain
layers' parameter names and shapes, a sub-network's state_dict is the supernet's sliced to the sub-network's shapes
(:func:`extract_subnet`), and its output equals the supernet's under that config.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .distill import DistillTrainer, build_mappings
from .mobile import MobileResnetBlock, MobileResnetGenerator, config_widths, encode_config, parse_config


class ElasticConv2d(nn.Conv2d):
    """A Conv2d that uses its first ``active_out`` filters and the first ``x.shape[1]`` input channels."""

    active_out: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        if self.groups == 1:
            out = self.active_out or self.out_channels
            weight, groups = self.weight[:out, :c_in], 1
        else:  # depthwise: one filter per input channel, as many outputs as inputs
            out, weight, groups = c_in, self.weight[:c_in], c_in
        bias = self.bias[:out] if self.bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class ElasticConvTranspose2d(nn.ConvTranspose2d):
    """A ConvTranspose2d on the first ``x.shape[1]`` inputs producing its first ``active_out`` outputs."""

    active_out: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out or self.out_channels
        bias = self.bias[:out] if self.bias is not None else None
        return F.conv_transpose2d(x, self.weight[:x.shape[1], :out], bias, self.stride, self.padding,
                                  self.output_padding, 1, self.dilation)


class ElasticInstanceNorm2d(nn.InstanceNorm2d):
    """The non-affine InstanceNorm at whatever width arrives (the plain one warns when it differs from its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=self.eps)


def _make_elastic(module: nn.Module) -> None:
    """Turn every (transposed) conv of ``module`` into its elastic twin in place: same parameters, same names."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = ElasticConv2d
        elif type(m) is nn.ConvTranspose2d:
            m.__class__ = ElasticConvTranspose2d
        elif type(m) is nn.InstanceNorm2d and not m.affine and not m.track_running_stats:
            m.__class__ = ElasticInstanceNorm2d


class SuperMobileResnetGenerator(MobileResnetGenerator):
    """The widest mobile generator (every width ``ngf``), able to run as any sub-network of the config space.

    ``set_config('32_24_48_...')`` (8 entries, each at most ``ngf``) sets the active widths of the next forward passes.
    The ``model`` indices are the mobile generator's, so the distillation taps are the same."""

    def __init__(self, ngf: int = 64, n_blocks: int = 9):
        super().__init__(ngf=ngf, n_blocks=n_blocks)
        self.max_width = ngf
        _make_elastic(self)
        self.set_config([ngf] * 8)

    def set_config(self, config: str | list[int]) -> "SuperMobileResnetGenerator":
        values = parse_config(config)
        too_wide = [v for v in values if v > self.max_width]
        if too_wide:
            raise ValueError(f"config {encode_config(values)} asks for widths {too_wide} but this supernet is "
                             f"{self.max_width} wide; every entry must be at most {self.max_width}")
        self.config = encode_config(values)
        w = config_widths(values)
        m = self.model
        m[1].active_out, m[4].active_out, m[7].active_out = w["stem"], w["down1"], w["trunk"]
        inners = [w["inner1"], w["inner2"], w["inner3"]]
        blocks = [b for b in m if isinstance(b, MobileResnetBlock)]
        for i, block in enumerate(blocks):
            block.conv_block[1].conv[2].active_out = inners[min(2, i * 3 // len(blocks))]  # pointwise: trunk -> inner
            block.conv_block[5].conv[2].active_out = w["trunk"]                             # pointwise: inner -> trunk
        ups = [layer for layer in m if isinstance(layer, nn.ConvTranspose2d)]
        ups[0].active_out, ups[1].active_out = w["up1"], w["up2"]
        return self


def extract_subnet(supernet: SuperMobileResnetGenerator, config: str | list[int] | None = None) -> MobileResnetGenerator:
    """A standalone :class:`MobileResnetGenerator` of ``config`` (default: the supernet's active one) holding the
    supernet's shared weights: every tensor is the supernet's sliced to the sub-network's shape (first k along each
    dimension). The result computes exactly what the supernet computes under that config."""
    config = encode_config(parse_config(config)) if config is not None else supernet.config
    sub = MobileResnetGenerator(config=config, n_blocks=supernet.n_blocks)
    shared = supernet.state_dict()
    sliced = {k: shared[k][tuple(slice(0, n) for n in v.shape)].clone() for k, v in sub.state_dict().items()}
    sub.load_state_dict(sliced)
    return sub.to(next(supernet.parameters()).device)


# ----------------------------------------------------------------------------------------------------------------
# Once-for-all training
# ----------------------------------------------------------------------------------------------------------------
def elastic_mappings(student: SuperMobileResnetGenerator, teacher: nn.Module) -> nn.ModuleList:
    """The distillation mappings of :mod:`gclib.distill` made elastic: each 1x1 conv takes the first ``C_s`` input
    channels of its weight, ``C_s`` being the sampled trunk width, and always produces the teacher's width."""
    maps = build_mappings(student, teacher)
    _make_elastic(maps)
    return maps


def sample_config(choices: tuple[int, ...], g: torch.Generator) -> str:
    """Each of the 8 widths drawn uniformly and independently from ``choices`` (Fast GAN Compression's sampler)."""
    picks = torch.randint(len(choices), (8,), generator=g)
    return encode_config([choices[int(i)] for i in picks])


class SupernetTrainer(DistillTrainer):
    """Once-for-all training: every step samples a sub-network (:func:`sample_config`, from the step's own random
    stream, so resuming is exact), then takes one distillation step of it against the teacher. A sub-network uses the
    first-k slices of the shared weights, so every step also trains the channels all narrower networks share.

    nets: ``{'G': SuperMobileResnetGenerator, 'D': discriminator, 'maps': elastic_mappings(G, teacher)}``."""

    def __init__(self, *args, choices: tuple[int, ...], **kwargs):
        self.choices = tuple(choices)
        super().__init__(*args, **kwargs)

    def train_step(self, batch, g):
        self.nets["G"].set_config(sample_config(self.choices, g))
        return super().train_step(batch, g)


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------
def export_subnet(G: MobileResnetGenerator, folder, name: str, image_size: int, extra: dict | None = None) -> dict:
    """Write a standalone sub-network: ``name.pt`` (state_dict), ``name.json`` (config, n_blocks, MACs and
    ``extra``) and ``name.ts`` (TorchScript, loadable without gclib). Returns the paths."""
    import io
    import warnings
    from pathlib import Path

    from .checkpoint import atomic_write_bytes, atomic_write_json, save_checkpoint
    from .metrics import count_macs
    folder = Path(folder)
    G = G.eval()
    meta = {"config": G.config, "n_blocks": G.n_blocks, "image_size": image_size,
            "GMACs": count_macs(G, image_size) / 1e9, **(extra or {})}
    paths = {"weights": folder / f"{name}.pt", "meta": folder / f"{name}.json", "torchscript": folder / f"{name}.ts"}
    save_checkpoint(paths["weights"], {"G": G.state_dict()})
    atomic_write_json(paths["meta"], meta)
    example = torch.zeros(1, 3, image_size, image_size, device=next(G.parameters()).device)
    with warnings.catch_warnings(), torch.no_grad():  # TorchScript is deprecated upstream but still the portable format
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(G, example)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    atomic_write_bytes(paths["torchscript"], buffer.getvalue())
    return paths


def load_exported(folder, name: str, device="cpu") -> MobileResnetGenerator:
    """The sub-network written by :func:`export_subnet`, rebuilt from its config and weights (``weights_only``)."""
    import json
    from pathlib import Path

    from .checkpoint import load_checkpoint
    meta = json.loads((Path(folder) / f"{name}.json").read_text())
    G = MobileResnetGenerator(config=meta["config"], n_blocks=meta["n_blocks"])
    G.load_state_dict(load_checkpoint(Path(folder) / f"{name}.pt", device)["G"])
    return G.to(device).eval()
