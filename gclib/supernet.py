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

import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import atomic_write_bytes, atomic_write_json, load_checkpoint, load_hparams, save_checkpoint
from .distill import (DistillTrainer, build_mappings, distill_config, init_from_teacher,
                      init_mappings_as_selection)
from .metrics import count_macs
from .mobile import MobileResnetBlock, MobileResnetGenerator, config_widths, encode_config, parse_config
from .models import NLayerDiscriminator, init_weights
from .train import preset_train_config


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


def _base_config(preset, steps: int, seed: int, paired: bool):
    """The paper's distillation settings (notebook 02's variant (c)) for ``steps`` steps."""
    return distill_config(preset_train_config(preset, steps, seed), paired, "features")


def uniform_config(width: int) -> str:
    """Every entry the same width: the sub-network a plain "slim every layer alike" compression would pick."""
    return encode_config([width] * 8)


def build_supernet_nets(preset, teacher: nn.Module, paired: bool, teacher_d: dict | None = None) -> dict:
    """The supernet (widest width ``max(preset.supernet_choices)``) started from the teacher's strongest channels,
    **strongest first** so that every narrower sub-network inherits the strongest ones; elastic mappings started as
    that channel selection; D from the teacher's D when ``teacher_d`` is given."""
    width = max(preset.supernet_choices)
    if width > preset.teacher_ngf:
        raise ValueError(f"supernet_choices go up to {width} but the teacher is only ngf {preset.teacher_ngf} wide; "
                         f"the widest sub-network must not be wider than the teacher it starts from")
    G = init_weights(SuperMobileResnetGenerator(ngf=width, n_blocks=preset.teacher_blocks))
    maps = elastic_mappings(G, teacher)
    init_mappings_as_selection(maps, init_from_teacher(G, teacher, by_importance=True))
    D = init_weights(NLayerDiscriminator(6 if paired else 3, preset.ndf))
    if teacher_d is not None:
        D.load_state_dict(teacher_d)
    return {"G": G, "D": D, "maps": maps}


def supernet_path(runs_dir, task: str) -> Path:
    return Path(runs_dir) / f"supernet_{task}.pt"


def load_or_train_supernet(preset, task: str, data: dict, teacher: nn.Module, runs_dir, seed: int = 0,
                           device="cpu", eval_fn=None, cache=None, teacher_d: dict | None = None,
                           progress: bool = True) -> tuple[SuperMobileResnetGenerator, dict]:
    """The once-for-all supernet of ``task``, from ``runs_dir`` if there, else trained now (resumable).

    ``eval_fn(G)`` (FID/KID on the held-out split) is applied every ``eval_every`` steps to the largest and the smallest
    sub-network; the evals hold ``fid@largest``, ``kid@smallest``, ... File ``supernet_{task}.pt`` keeps the supernet,
    its mapping convs and its D (the fine-tuning of notebook 04 starts from all three). Returns ``(G, info)`` with
    ``info['maps']``, ``info['D']``, ``info['history']``, ``info['evals']``, ``info['trained_now']``,
    ``info['hparams']``."""
    paired = data["paired"]
    if not paired:
        raise NotImplementedError("the supernet is trained on paired tasks here (the unpaired one distils the same "
                                  "way with the teacher's output as target; see notebook 02)")
    cfg = _base_config(preset, preset.supernet_steps, seed, paired)
    choices = tuple(sorted(preset.supernet_choices))
    hparams = {"task": task, "seed": seed, "preset": preset.to_dict(), "choices": list(choices),
               "teacher_d": teacher_d is not None, "train": asdict(cfg)}
    final = supernet_path(runs_dir, task)
    with torch.random.fork_rng(devices=[]):  # building a network draws its default init: keep the caller's stream
        G = SuperMobileResnetGenerator(ngf=max(choices), n_blocks=preset.teacher_blocks)
    if final.exists():
        if load_hparams(final) == hparams:
            state = load_checkpoint(final)
            G.load_state_dict(state["G"])
            maps = elastic_mappings(G, teacher)
            maps.load_state_dict(state["maps"])
            return G.to(device).eval(), {"maps": maps, "D": state["D"], "history": state["history"],
                                         "evals": state["evals"], "trained_now": False, "hparams": hparams}
        print(f"{final} was trained with other settings; training a new supernet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = build_supernet_nets(preset, teacher, paired, teacher_d)
    references = {"largest": uniform_config(max(choices)), "smallest": uniform_config(min(choices))}

    def eval_references(sup):
        out, active = {}, sup.config
        for name, config in references.items():
            out.update({f"{k}@{name}": v for k, v in eval_fn(sup.set_config(config)).items()})
        sup.set_config(active)
        return out

    ckpt = final.with_suffix(".train.pt")
    trainer_hparams = {k: v for k, v in hparams.items() if k != "train"}
    trainer = SupernetTrainer(nets, teacher, cfg, ckpt, device, trainer_hparams, paired=paired, cache=cache,
                              choices=choices)
    trainer.set_aside_mismatched_checkpoint()
    trainer.fit(data["train"], eval_references if eval_fn is not None else None, progress=progress)
    G = trainer.nets["G"].set_config(references["largest"])
    state = {"G": G.state_dict(), "maps": trainer.nets["maps"].state_dict(), "D": trainer.nets["D"].state_dict(),
             "history": trainer.history, "evals": trainer.evals}
    save_checkpoint(final, state, hparams)
    return G.eval(), {"maps": trainer.nets["maps"], "D": state["D"], "history": trainer.history,
                      "evals": trainer.evals, "trained_now": True, "hparams": hparams}


def subnet_path(runs_dir, task: str, config: str, start: str) -> Path:
    return Path(runs_dir) / f"subnet_{task}_{config}_{start}.pt"


def load_or_train_subnet(preset, task: str, data: dict, teacher: nn.Module, config: str, runs_dir, steps: int,
                         start: str = "teacher", supernet: tuple | None = None, seed: int = 0, device="cpu",
                         eval_fn=None, cache=None, teacher_d: dict | None = None,
                         progress: bool = True) -> tuple[MobileResnetGenerator, dict]:
    """One sub-network ``config`` trained on its own with the paper's distillation recipe, for ``steps`` steps.

    - ``start="teacher"``: stand-alone training (notebook 03's ranking check): like notebook 02's student (c), it
      starts from the teacher's strongest channels and D, and never sees the supernet.
    - ``start="supernet"``: fine-tuning (notebook 04): weights, mapping convs and D start from the supernet
      (``supernet=(G, info)`` as :func:`load_or_train_supernet` returns them).
    File ``subnet_{task}_{config}_{start}.pt``. Returns ``(G, info)`` like :func:`load_or_train_supernet`."""
    if start not in ("teacher", "supernet"):
        raise ValueError(f"start must be 'teacher' or 'supernet', not {start!r}")
    if start == "supernet" and supernet is None:
        raise ValueError("start='supernet' needs supernet=(G, info) from load_or_train_supernet")
    config = encode_config(parse_config(config))
    paired = data["paired"]
    cfg = _base_config(preset, steps, seed, paired)
    hparams = {"task": task, "config": config, "start": start, "seed": seed, "preset": preset.to_dict(),
               "teacher_d": teacher_d is not None, "train": asdict(cfg),
               "supernet": supernet[1]["hparams"] if start == "supernet" else None}
    final = subnet_path(runs_dir, task, config, start)
    with torch.random.fork_rng(devices=[]):  # building a network draws its default init: keep the caller's stream
        G = MobileResnetGenerator(config=config, n_blocks=preset.teacher_blocks)
    if final.exists():
        if load_hparams(final) == hparams:
            state = load_checkpoint(final)
            G.load_state_dict(state["G"])
            return G.to(device).eval(), {"history": state["history"], "evals": state["evals"],
                                         "trained_now": False, "hparams": hparams}
        print(f"{final} was trained with other settings; training it again")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = init_weights(NLayerDiscriminator(6 if paired else 3, preset.ndf))
        if start == "teacher":
            G = init_weights(G)
            maps = build_mappings(G, teacher)
            init_mappings_as_selection(maps, init_from_teacher(G, teacher))
            if teacher_d is not None:
                D.load_state_dict(teacher_d)
        else:
            sup, info = supernet
            G = extract_subnet(sup, config).cpu()
            maps = build_mappings(G, teacher)
            with torch.no_grad():
                for m, shared in zip(maps, info["maps"]):  # the supernet's mappings sliced to this trunk width
                    m.weight.copy_(shared.weight[:, :m.in_channels])
                    m.bias.copy_(shared.bias)
            D.load_state_dict(info["D"])
    ckpt = final.with_suffix(".train.pt")
    trainer_hparams = {k: v for k, v in hparams.items() if k != "train"}
    trainer = DistillTrainer({"G": G, "D": D, "maps": maps}, teacher, cfg, ckpt, device, trainer_hparams,
                             paired=paired, cache=cache)
    trainer.set_aside_mismatched_checkpoint()
    trainer.fit(data["train"], eval_fn, progress=progress)
    state = {"G": trainer.nets["G"].state_dict(), "history": trainer.history, "evals": trainer.evals}
    save_checkpoint(final, state, hparams)
    return trainer.nets["G"].eval(), {"history": trainer.history, "evals": trainer.evals, "trained_now": True,
                                      "hparams": hparams}


# ----------------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------------
def export_subnet(G: MobileResnetGenerator, folder, name: str, image_size: int, extra: dict | None = None) -> dict:
    """Write a standalone sub-network: ``name.pt`` (state_dict), ``name.json`` (config, n_blocks, MACs and
    ``extra``) and ``name.ts`` (TorchScript, loadable without gclib). Returns the paths."""
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
    meta = json.loads((Path(folder) / f"{name}.json").read_text())
    G = MobileResnetGenerator(config=meta["config"], n_blocks=meta["n_blocks"])
    G.load_state_dict(load_checkpoint(Path(folder) / f"{name}.pt", device)["G"])
    return G.to(device).eval()
