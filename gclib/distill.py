"""Intermediate-feature distillation (notebook 02): GAN Compression's unified objective for a small student.

    L_G = l_gan * GAN(D, G_s(A)) + l_recon * |G_s(A) - target|_1 + l_distill * sum_i MSE(M_i(S_i), T_i)

``S_i`` and ``T_i`` are the student's and teacher's residual-trunk features at the paper's four points (after the
last downsampling, after blocks 3, 6, 9), ``M_i`` a learned 1x1 conv from student to teacher width. The target is the
real image B for a paired task and the teacher's output G_t(A) for an unpaired one: with the teacher as pseudo ground
truth, unpaired learning becomes paired learning, which is how the paper unifies pix2pix and CycleGAN compression.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import GANLoss
from .train import Trainer, TrainConfig, set_requires_grad


class FeatureTaps:
    """Keeps the outputs of ``net.model[i]`` for each ``i`` in ``indices`` during a forward pass.

    Use as a context manager, or call :meth:`remove`; ``taps.features`` lists the tensors in ``indices`` order."""

    def __init__(self, net: nn.Module, indices: list[int]):
        self.indices = list(indices)
        self._out: dict[int, torch.Tensor] = {}
        self._handles = [net.model[i].register_forward_hook(self._keeper(i)) for i in self.indices]

    def _keeper(self, i: int):
        def hook(module, inputs, output):
            self._out[i] = output
        return hook

    @property
    def features(self) -> list[torch.Tensor]:
        return [self._out[i] for i in self.indices]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def trunk_channels(net: nn.Module) -> int:
    """Width of the residual trunk (the distilled features): the output channels of ``model[7]``."""
    return net.model[7].out_channels


def build_mappings(student: nn.Module, teacher: nn.Module, n_points: int = 4) -> nn.ModuleList:
    """One learned 1x1 conv per distillation point, student trunk width -> teacher trunk width."""
    return nn.ModuleList(nn.Conv2d(trunk_channels(student), trunk_channels(teacher), 1) for _ in range(n_points))


def distill_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                 mappings: nn.ModuleList) -> torch.Tensor:
    """sum_i MSE(M_i(S_i), T_i); each S_i (B, C_s, H/4, W/4), T_i (B, C_t, H/4, W/4)."""
    return sum(nn.functional.mse_loss(m(s), t) for m, s, t in zip(mappings, student_feats, teacher_feats))


@dataclass
class DistillConfig(TrainConfig):
    lambda_distill: float = 1.0
    recon_target: str = "real"          # "real" (paired) or "teacher" (the teacher's output as pseudo ground truth)
    conditional_d: bool = True          # D sees (A, output) for paired tasks, the output alone for unpaired ones


def distill_config(base: TrainConfig, paired: bool, variant: str) -> DistillConfig:
    """The paper's settings for the three variants of notebook 02's experiment.

    - ``alone``:    no teacher at all, the plain pix2pix loss (paired). Unpaired students train alone with CycleGAN.
    - ``output``:   the teacher's output as the L1 target, no intermediate features.
    - ``features``: the paper's full recipe, with intermediate features.
    Paired: hinge GAN, l_recon 100, l_distill 1. Unpaired: LSGAN, l_recon 10, l_distill 0.01, D unconditional."""
    if variant not in ("alone", "output", "features"):
        raise ValueError(f"unknown distillation variant {variant!r}; choose 'alone', 'output' or 'features'")
    fields = {k: getattr(base, k) for k in TrainConfig.__dataclass_fields__}
    fields.update(gan_mode="hinge" if paired else "lsgan", lambda_recon=100.0 if paired else 10.0,
                  conditional_d=paired)
    if variant == "alone":
        fields.update(lambda_distill=0.0, recon_target="real")
    elif variant == "output":
        fields.update(lambda_distill=0.0, recon_target="teacher")
    else:
        fields.update(lambda_distill=1.0 if paired else 0.01, recon_target="real" if paired else "teacher")
    return DistillConfig(**fields)


class TeacherCache:
    """The frozen teacher's outputs and distilled features for every training image, flipped and not.

    The teacher never changes during distillation, so on a fixed in-memory training set its forward passes can be done
    once instead of at every step (on the laptop preset this halves the cost of a distillation step). Memory: for
    each image and flip, the output (3, H, W) plus four (C_t, H/4, W/4) feature maps, kept in float16."""

    def __init__(self, teacher: nn.Module, images: torch.Tensor, batch_size: int = 32, progress: bool = True):
        from tqdm.auto import tqdm
        device = next(teacher.parameters()).device
        self.outputs: list[torch.Tensor] = []          # [flip] -> (N, 3, H, W)
        self.features: list[list[torch.Tensor]] = []  # [flip][point] -> (N, C_t, H/4, W/4)
        for flip in (False, True):
            outs, feats = [], []
            for i in tqdm(range(0, len(images), batch_size), desc=f"teacher cache (flip={flip})",
                          disable=not progress):
                x = images[i:i + batch_size].to(device)
                x = x.flip(-1) if flip else x
                with torch.no_grad(), FeatureTaps(teacher, teacher.distill_indices) as taps:
                    outs.append(teacher(x).cpu())
                feats.append([f.half().cpu() for f in taps.features])
            self.outputs.append(torch.cat(outs))
            self.features.append([torch.cat([f[p] for f in feats]) for p in range(len(feats[0]))])

    def lookup(self, index: torch.Tensor, flipped: torch.Tensor, device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's output and features for training images ``index`` with their flips."""
        pick = lambda per_flip: torch.where(flipped.view(-1, *[1] * (per_flip[0].dim() - 1)),
                                            per_flip[1][index], per_flip[0][index])
        out = pick(self.outputs)
        feats = [pick([self.features[0][p], self.features[1][p]]).float() for p in range(len(self.features[0]))]
        return out.to(device), [f.to(device) for f in feats]


class DistillTrainer(Trainer):
    """Trains a student generator ``G`` (and the mapping convs ``maps``) against a frozen ``teacher``.

    nets: ``{'G': student, 'D': discriminator, 'maps': mappings}``. The teacher is not part of the checkpoint."""

    def __init__(self, nets: dict[str, nn.Module], teacher: nn.Module, cfg: DistillConfig, ckpt_path, device="cpu",
                 hparams: dict | None = None, paired: bool = True, cache: TeacherCache | None = None):
        self.paired = paired
        super().__init__(nets, cfg, ckpt_path, device, hparams)
        self.teacher = teacher.to(self.device).eval()
        set_requires_grad([self.teacher], False)
        self.uses_teacher = cfg.recon_target == "teacher" or cfg.lambda_distill > 0
        self.cache = cache  # precomputed teacher outputs for in-memory training data (see TeacherCache)

    def build_optimizers(self):
        betas = (self.cfg.beta1, 0.999)
        g_params = list(self.nets["G"].parameters()) + list(self.nets["maps"].parameters())
        return {"G": torch.optim.Adam(g_params, lr=self.cfg.lr, betas=betas),
                "D": torch.optim.Adam(self.nets["D"].parameters(), lr=self.cfg.lr, betas=betas)}

    @property
    def generator(self) -> nn.Module:
        return self.nets["G"]

    def _d_input(self, real_a: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([real_a, image], 1) if self.cfg.conditional_d else image

    def train_step(self, batch, g):
        G, D, maps = self.nets["G"], self.nets["D"], self.nets["maps"]
        cfg, gan = self.cfg, GANLoss(self.cfg.gan_mode)
        real_a = batch["A"]
        distill = cfg.lambda_distill > 0
        if self.uses_teacher and self.cache is not None and "index" in batch:
            teacher_out, teacher_feats = self.cache.lookup(batch["index"], batch["flip_a"], self.device)
        elif self.uses_teacher:
            with torch.no_grad(), FeatureTaps(self.teacher, self.teacher.distill_indices) as t_taps:
                teacher_out = self.teacher(real_a)
            teacher_feats = t_taps.features
        with FeatureTaps(G, G.distill_indices) as s_taps:
            fake = G(real_a)
        target = batch["B"] if cfg.recon_target == "real" else teacher_out
        # D judges real images of domain B (paired: with their input) against the student's outputs.
        real_for_d = batch["B"]

        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d = 0.5 * (gan(D(self._d_input(real_a, fake.detach())), False) +
                        gan(D(self._d_input(real_a, real_for_d)), True))
        loss_d.backward()
        self.optimizers["D"].step()

        set_requires_grad([D], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_gan = gan(D(self._d_input(real_a, fake)), True, for_discriminator=False)
        # l_recon * |G_s(A) - target|_1
        loss_recon = nn.functional.l1_loss(fake, target)
        # l_distill * sum_i MSE(M_i(S_i), T_i)
        loss_distill = distill_loss(s_taps.features, teacher_feats, maps) if distill else fake.new_zeros(())
        loss_g = loss_gan + cfg.lambda_recon * loss_recon + cfg.lambda_distill * loss_distill
        loss_g.backward()
        self.optimizers["G"].step()
        return {"G_gan": loss_gan.item(), "G_recon": loss_recon.item(), "distill": loss_distill.item(),
                "D": loss_d.item()}
