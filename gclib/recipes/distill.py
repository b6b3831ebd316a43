"""Intermediate-feature distillation (notebook 02): GAN Compression's unified objective for a small student.

    L_G = l_gan * GAN(D, G_s(A)) + l_recon * |G_s(A) - target|_1 + l_distill * sum_i MSE(M_i(S_i), T_i)

``S_i`` and ``T_i`` are the student's and teacher's features at the family's distillation points (ResNet: after the
last down-sampling and after each third of the residual blocks), ``M_i`` a learned 1x1 conv from student to teacher
width. The target is the real image B for a paired task and the teacher's output G_t(A) for an unpaired one: with the
teacher as pseudo ground truth, unpaired learning becomes paired learning, which is how the paper unifies pix2pix
and CycleGAN compression. Paired: hinge GAN, l_recon 100, l_distill 1, conditional D. Unpaired: LSGAN, l_recon 10,
l_distill 0.01, D sees the output alone. Adam lr 2e-4, betas (0.5, 0.999), constant then linear decay to 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.gan import GANLoss, set_requires_grad
from ..progress import progress_bar
from .trainer import TrainConfig, Trainer

VARIANTS = ("alone", "init", "output", "features")
TEACHERLESS = ("alone", "init")  # variants whose loss has no teacher term
VARIANT_LABELS = {"alone": "(a) alone", "init": "(a') teacher init only", "output": "(b) output distillation",
                  "features": "(c) feature distillation"}


class FeatureTaps:
    """Keeps the outputs of the modules ``net.get_submodule(name)`` for each name during a forward pass.

    Use as a context manager, or call :meth:`remove`; ``taps.features`` lists the tensors in ``names`` order."""

    def __init__(self, net: nn.Module, names: list[str]):
        self.names = list(names)
        self._out: dict[str, torch.Tensor] = {}
        self._handles = [net.get_submodule(n).register_forward_hook(self._keeper(n)) for n in self.names]

    def _keeper(self, name: str):
        def hook(module, inputs, output):
            self._out[name] = output
        return hook

    @property
    def features(self) -> list[torch.Tensor]:
        return [self._out[n] for n in self.names]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def build_mappings(family, student: nn.Module, teacher: nn.Module) -> nn.ModuleList:
    """One learned 1x1 conv per distillation point, student width -> teacher width."""
    return nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(family.distill_widths(student),
                                                             family.distill_widths(teacher)))


@torch.no_grad()
def init_mappings_as_selection(mappings: nn.ModuleList, selections: list[torch.Tensor]) -> None:
    """Start each mapping conv as the embedding the channel selection implies: student channel j -> teacher channel
    ``selection[j]``, the other teacher channels 0. M_i(S_i) then starts equal to the copied channels."""
    for m, kept in zip(mappings, selections):
        m.weight.zero_()
        m.bias.zero_()
        m.weight[kept, torch.arange(len(kept)), 0, 0] = 1.0


def distill_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                 mappings: nn.ModuleList) -> torch.Tensor:
    """sum_i MSE(M_i(S_i), T_i); each S_i (B, C_s, h, w), T_i (B, C_t, h, w)."""
    return mapped_distill_loss([m(s) for m, s in zip(mappings, student_feats)], teacher_feats)


class MappedStudent(nn.Module):
    """The student and its mapping convs as one module: ``forward(A) -> (G_s(A), [M_i(S_i)])``, the mapped features
    in the teacher's widths. One module, so that under torchrun a single DistributedDataParallel averages the
    gradients of both."""

    def __init__(self, G: nn.Module, maps: nn.ModuleList, points: list[str], map_features: bool = True):
        super().__init__()
        self.G, self.maps, self.points, self.map_features = G, maps, list(points), map_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.map_features:             # a recipe without a distillation term: no taps, no mappings
            return self.G(x), []
        with FeatureTaps(self.G, self.points) as taps:
            out = self.G(x)
        return out, [m(f) for m, f in zip(self.maps, taps.features)]


def mapped_distill_loss(mapped: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
    """sum_i MSE(M_i(S_i), T_i) of features already mapped to the teacher's widths."""
    return sum(nn.functional.mse_loss(m, t) for m, t in zip(mapped, teacher_feats))


@dataclass
class DistillConfig(TrainConfig):
    lambda_distill: float = 1.0
    recon_target: str = "real"          # "real" (paired) or "teacher" (the teacher's output as pseudo ground truth)
    conditional_d: bool = True          # D sees (A, output) for paired tasks, the output alone for unpaired ones


def distill_config(base: TrainConfig, paired: bool, variant: str = "features") -> DistillConfig:
    """The paper's settings for the variants of notebook 02's experiment.

    - ``alone``:    no teacher at all, the plain pix2pix loss (paired). Unpaired students train alone with CycleGAN.
    - ``init``:     as ``alone``, but the student starts from the teacher's strongest channels (ablation).
    - ``output``:   the teacher's output as the L1 target, no intermediate features.
    - ``features``: the paper's full recipe, with intermediate features (also the supernet's and fine-tuning's)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown distillation variant {variant!r}; choose one of {VARIANTS}")
    fields = {k: getattr(base, k) for k in TrainConfig.__dataclass_fields__}
    fields.update(gan_mode="hinge" if paired else "lsgan", lambda_recon=100.0 if paired else 10.0,
                  conditional_d=paired)
    if variant in TEACHERLESS:
        fields.update(lambda_distill=0.0, recon_target="real")
    elif variant == "output":
        fields.update(lambda_distill=0.0, recon_target="teacher")
    else:
        fields.update(lambda_distill=1.0 if paired else 0.01, recon_target="real" if paired else "teacher")
    return DistillConfig(**fields)


class TeacherCache:
    """The frozen teacher's outputs and distilled features for every training image, flipped and not.

    The teacher never changes during distillation, so on an in-memory training set its forward passes can be done
    once instead of at every step (on the laptop preset this halves the cost of a distillation step). Memory: for
    each image and flip, the output (3, H, W) plus the features, kept in float16. Use :meth:`for_split`, which
    returns None for training data read from disk with random crops (the teacher then runs at every step)."""

    def __init__(self, teacher: nn.Module, points: list[str], images: torch.Tensor, batch_size: int = 32,
                 progress: bool = True):
        device = next(teacher.parameters()).device
        self.outputs: list[torch.Tensor] = []          # [flip] -> (N, 3, H, W)
        self.features: list[list[torch.Tensor]] = []  # [flip][point] -> (N, C_t, h, w)
        for flip in (False, True):
            outs, feats = [], []
            for i in progress_bar(range(0, len(images), batch_size), f"teacher cache (flip={flip})",
                                 disable=not progress):
                x = images[i:i + batch_size].to(device)
                x = x.flip(-1) if flip else x
                with torch.no_grad(), FeatureTaps(teacher, points) as taps:
                    outs.append(teacher(x).cpu())
                feats.append([f.half().cpu() for f in taps.features])
            self.outputs.append(torch.cat(outs))
            self.features.append([torch.cat([f[p] for f in feats]) for p in range(len(feats[0]))])

    @classmethod
    def for_split(cls, family, teacher: nn.Module, train, progress: bool = True, max_bytes: int = 2 << 30
                  ) -> "TeacherCache | None":
        """The cache of an in-memory training split, or None (the teacher then runs at every step) for data read
        from disk, for a multimodal family (MUNIT: the teacher's output depends on the style code drawn at each
        step) or when the cache would take more than ``max_bytes`` (e.g. 800 images at 256x256: 13 GB)."""
        if not train.in_memory or family.style_dim:
            return None
        points = family.distill_points(teacher)
        with torch.no_grad(), FeatureTaps(teacher, points) as taps:
            out = teacher(train.A[:1].to(next(teacher.parameters()).device))
        per_image = out.numel() + sum(f.numel() for f in taps.features)
        need = 2 * len(train.A) * per_image * 2            # both flips, float16
        if need > max_bytes:
            if progress:
                print(f"teacher cache skipped: it would take {need / 2**30:.1f} GiB (limit {max_bytes / 2**30:.1f}); "
                      f"the teacher runs at every distillation step instead")
            return None
        return cls(teacher, points, train.A, progress=progress)

    def lookup(self, index: torch.Tensor, flipped: torch.Tensor, device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's output and features for training images ``index`` with their flips."""
        pick = lambda per_flip: torch.where(flipped.view(-1, *[1] * (per_flip[0].dim() - 1)),
                                            per_flip[1][index], per_flip[0][index])
        out = pick(self.outputs)
        feats = [pick([self.features[0][p], self.features[1][p]]).float() for p in range(len(self.features[0]))]
        return out.to(device), [f.to(device) for f in feats]


class DistillTrainer(Trainer):
    """Trains a student generator ``G`` (and the mapping convs ``maps``) against a frozen ``teacher``.

    nets: ``{'G': student, 'D': discriminator, 'maps': mappings}``. The teacher is not part of the checkpoint.
    Like the official distiller, a step computes D's loss and G's loss from the same forward pass, then steps both
    optimisers: G's adversarial term sees the D of before this step."""

    def __init__(self, nets: dict[str, nn.Module], teacher: nn.Module, cfg: DistillConfig, ckpt_path,
                 device="cpu", stage: dict | None = None, family=None, cache: TeacherCache | None = None):
        super().__init__(nets, cfg, ckpt_path, device, stage)
        from ..families import get_family
        self.family = family or get_family()
        self.teacher = teacher.to(self.device).eval()
        set_requires_grad([self.teacher], False)
        self.uses_teacher = cfg.recon_target == "teacher" or cfg.lambda_distill > 0
        self.cache = cache
        self.student = MappedStudent(self.nets["G"], self.nets["maps"], self.family.distill_points(self.nets["G"]),
                                     map_features=cfg.lambda_distill > 0)

    def parallel_modules(self) -> dict[str, nn.Module]:
        return {"student": self.student, "D": self.nets["D"]}

    def unused_parameters(self, name: str) -> bool:
        return name == "student" and self.cfg.lambda_distill == 0   # the mapping convs then get no gradient

    def build_optimizers(self):
        betas = (self.cfg.beta1, 0.999)
        g_params = list(self.nets["G"].parameters()) + list(self.nets["maps"].parameters())
        return {"G": torch.optim.Adam(g_params, lr=self.cfg.lr, betas=betas),
                "D": torch.optim.Adam(self.nets["D"].parameters(), lr=self.cfg.lr, betas=betas)}

    def _d_input(self, real_a: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([real_a, image], 1) if self.cfg.conditional_d else image

    def teacher_signals(self, batch) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        if not self.uses_teacher:
            return None, []
        if self.cache is not None and "index" in batch:
            return self.cache.lookup(batch["index"], batch["flip_a"], self.device)
        with torch.no_grad(), FeatureTaps(self.teacher, self.family.distill_points(self.teacher)) as taps:
            out = self.teacher(batch["A"])
        return out, taps.features

    def train_step(self, batch, g):
        student, D = self.net("student"), self.net("D")  # or their DDP wrappers under torchrun
        cfg, gan = self.cfg, GANLoss(self.cfg.gan_mode)
        real_a = batch["A"]
        distill = cfg.lambda_distill > 0
        teacher_out, teacher_feats = self.teacher_signals(batch)
        fake, mapped = student(real_a)                   # G_s(A), [M_i(S_i)]
        target = batch["B"] if cfg.recon_target == "real" else teacher_out
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

        # D judges real images of domain B (paired: with their input) against the student's outputs.
        set_requires_grad([D], True)
        loss_d = 0.5 * (gan(D(self._d_input(real_a, fake.detach())), False) +
                        gan(D(self._d_input(real_a, batch["B"])), True))
        loss_d.backward()

        set_requires_grad([D], False)                      # G's loss sends no gradient into D
        loss_gan = gan(D(self._d_input(real_a, fake)), True, for_discriminator=False)
        # l_recon * |G_s(A) - target|_1
        loss_recon = nn.functional.l1_loss(fake, target)
        # l_distill * sum_i MSE(M_i(S_i), T_i)
        loss_distill = mapped_distill_loss(mapped, teacher_feats) if distill else fake.new_zeros(())
        loss_g = loss_gan + cfg.lambda_recon * loss_recon + cfg.lambda_distill * loss_distill
        loss_g.backward()
        self.optimizers["D"].step()                        # both step after both losses (the official order)
        self.optimizers["G"].step()
        return {"G_gan": loss_gan.item(), "G_recon": loss_recon.item(), "distill": loss_distill.item(),
                "D": loss_d.item()}
