"""Intermediate-feature distillation (notebook 02): GAN Compression's unified objective for a small student.

    L_G = l_gan * GAN(D, G_s(A)) + l_recon * |G_s(A) - target|_1 + l_distill * sum_i MSE(M_i(S_i), T_i)

``S_i`` and ``T_i`` are the student's and teacher's residual-trunk features at the paper's four points (after the
last downsampling, after blocks 3, 6, 9), ``M_i`` a learned 1x1 conv from student to teacher width. The target is the
real image B for a paired task and the teacher's output G_t(A) for an unpaired one: with the teacher as pseudo ground
truth, unpaired learning becomes paired learning, which is how the paper unifies pix2pix and CycleGAN compression.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .models import GANLoss
from .train import Trainer, TrainConfig, preset_train_config, set_requires_grad

VARIANTS = ("alone", "init", "output", "features")
TEACHERLESS = ("alone", "init")  # variants whose loss has no teacher term
VARIANT_LABELS = {"alone": "(a) alone", "init": "(a') teacher init only", "output": "(b) output distillation",
                  "features": "(c) feature distillation"}


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
    - ``init``:     as ``alone``, but the student starts from the teacher's strongest channels (ablation).
    - ``output``:   the teacher's output as the L1 target, no intermediate features.
    - ``features``: the paper's full recipe, with intermediate features.
    Paired: hinge GAN, l_recon 100, l_distill 1. Unpaired: LSGAN, l_recon 10, l_distill 0.01, D unconditional."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown distillation variant {variant!r}; choose one of {VARIANTS}")
    fields = {k: getattr(base, k) for k in TrainConfig.__dataclass_fields__}
    fields.update(gan_mode="hinge" if paired else "lsgan", lambda_recon=100.0 if paired else 10.0,
                  conditional_d=paired)
    if variant in ("alone", "init"):
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


# ----------------------------------------------------------------------------------------------------------------
# Starting the student from the teacher: L1-norm channel selection
# ----------------------------------------------------------------------------------------------------------------
def _strongest(norms: torch.Tensor, k: int, by_importance: bool = False) -> torch.Tensor:
    """Indices of the ``k`` largest ``norms``: in increasing order (channel order kept), or strongest first."""
    top = torch.topk(norms, k).indices                         # strongest first
    return top if by_importance else torch.sort(top).values


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module, by_importance: bool = False) -> torch.Tensor:
    """Copy into ``student`` the teacher's strongest channels of every layer the two share; return the trunk's.

    The paper starts a student from a wider trained generator by keeping, layer by layer, the output channels whose
    filters have the largest L1 norm ``sum |W[c]|`` (inputs follow the previous layer's choice). Our teacher's residual
    blocks are dense and the student's separable, so only the layers the two have in common are copied: the stem,
    both down-samplings, both up-samplings and the output conv (the top-level convs of ``model``: 1, 4, 7, 19, 22, 26
    with 9 blocks). The student's residual blocks keep their random init.
    ``by_importance``: put the strongest channel first (the supernet of notebook 03, whose narrower sub-networks use
    the first k channels, so they inherit the k strongest).
    Returns the teacher trunk channels the student's trunk copies, ``(C_s,)``."""
    shared = [(s, t) for s, t in zip(student.model, teacher.model) if isinstance(t, (nn.Conv2d, nn.ConvTranspose2d))]
    kept = torch.arange(shared[0][1].in_channels)              # RGB in
    trunk = kept
    for s, t in shared:
        if isinstance(t, nn.ConvTranspose2d):                  # weight (in, out, k, k)
            w = t.weight[kept]
            out = _strongest(w.abs().sum((0, 2, 3)), s.out_channels, by_importance)
            s.weight.copy_(w[:, out])
        else:                                                  # weight (out, in, k, k)
            w = t.weight[:, kept]
            out = _strongest(w.abs().sum((1, 2, 3)), s.out_channels, by_importance)
            s.weight.copy_(w[out])
        s.bias.copy_(t.bias[out])
        if t.stride == (2, 2) and isinstance(t, nn.Conv2d):   # the last down-sampling feeds the residual trunk
            trunk = out
        kept = out
    return trunk


@torch.no_grad()
def init_mappings_as_selection(mappings: nn.ModuleList, trunk: torch.Tensor) -> None:
    """Start each mapping conv as the embedding the channel selection implies: student channel j -> teacher channel
    ``trunk[j]``, the other teacher channels 0. M_i(S_i) then starts equal to the copied channels."""
    for m in mappings:
        m.weight.zero_()
        m.bias.zero_()
        m.weight[trunk, torch.arange(len(trunk)), 0, 0] = 1.0


# ----------------------------------------------------------------------------------------------------------------
# Load-or-train a student (notebook 02)
# ----------------------------------------------------------------------------------------------------------------
def student_path(runs_dir, task: str, variant: str, seed: int) -> Path:
    return Path(runs_dir) / f"student_{task}_{variant}_s{seed}.pt"


def build_student_nets(preset, teacher: nn.Module, paired: bool, variant: str,
                       teacher_d: dict | None = None) -> dict[str, nn.Module]:
    """The student's networks for one variant of notebook 02's experiment (random draws from the global RNG).

    - ``alone``: a randomly initialised mobile student and a fresh D.
    - ``init``, ``output``, ``features``: the student starts from the teacher's strongest channels
      (:func:`init_from_teacher`) and the mappings from that selection.
    - ``output``, ``features``: D starts from the teacher's D (``teacher_d``) when it is given.
    Unpaired tasks train ``alone`` and ``init`` students with CycleGAN: a pair of generators and of discriminators."""
    from .mobile import MobileResnetGenerator
    from .models import NLayerDiscriminator, init_weights

    def student() -> nn.Module:
        return init_weights(MobileResnetGenerator(ngf=preset.student_ngf, n_blocks=preset.teacher_blocks))

    G = student()
    maps = build_mappings(G, teacher)
    if variant != "alone":
        init_mappings_as_selection(maps, init_from_teacher(G, teacher))
    if not paired and variant in TEACHERLESS:
        return {"G_A": G, "G_B": student(), "D_A": init_weights(NLayerDiscriminator(3, preset.ndf)),
                "D_B": init_weights(NLayerDiscriminator(3, preset.ndf))}
    D = init_weights(NLayerDiscriminator(6 if paired else 3, preset.ndf))
    if variant not in TEACHERLESS and teacher_d is not None:
        D.load_state_dict(teacher_d)
    return {"G": G, "D": D, "maps": maps}


def load_or_train_student(preset, task: str, data: dict, teacher: nn.Module, variant: str, runs_dir, seed: int = 0,
                          device="cpu", eval_fn=None, cache: TeacherCache | None = None, teacher_d: dict | None = None,
                          lambda_distill: float | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """The trained student of ``variant`` (see :data:`VARIANTS`), from ``runs_dir`` if there, else trained now.

    Files: ``student_{task}_{variant}_s{seed}.pt`` (state_dicts of ``G`` (A -> B) and, for ``features``, the mapping
    convs ``maps``; history; evals) with ``.json`` hyper-parameters, and the resumable ``.train.pt``. Returns
    ``(G, info)`` like :func:`gclib.train.load_or_train_teacher`, with ``info['maps']`` (None unless ``features``)."""
    from .checkpoint import load_checkpoint, load_hparams, save_checkpoint
    from .mobile import MobileResnetGenerator
    from .train import CycleGANTrainer
    if variant not in VARIANTS:
        raise ValueError(f"unknown distillation variant {variant!r}; choose one of {VARIANTS}")
    paired = data["paired"]
    base = preset_train_config(preset, preset.distill_steps, seed)
    if variant in TEACHERLESS and not paired:  # no teacher in the loss: CycleGAN, like the teacher
        from .train import teacher_config
        cfg = teacher_config(preset, paired, seed)
        cfg.steps = preset.distill_steps
    else:
        cfg = distill_config(base, paired, variant)
        if lambda_distill is not None and variant == "features":
            cfg.lambda_distill = lambda_distill
    final = student_path(runs_dir, task, variant, seed)
    hparams = {"task": task, "variant": variant, "seed": seed,
               "preset": preset.student_dict(),
               "student_ngf": preset.student_ngf, "train": asdict(cfg), "teacher_d": teacher_d is not None}
    G = MobileResnetGenerator(ngf=preset.student_ngf, n_blocks=preset.teacher_blocks)
    if final.exists():
        if load_hparams(final) == hparams:
            state = load_checkpoint(final)
            G.load_state_dict(state["G"])
            maps = None
            if "maps" in state:
                maps = build_mappings(G, teacher)
                maps.load_state_dict(state["maps"])
            return G.to(device).eval(), {"history": state["history"], "evals": state["evals"], "maps": maps,
                                         "trained_now": False, "hparams": hparams}
        print(f"{final} was trained with other settings; training a new student")
    with torch.random.fork_rng(devices=[]):  # initial weights depend on the seed alone
        torch.manual_seed(seed)
        nets = build_student_nets(preset, teacher, paired, variant, teacher_d)
    ckpt = final.with_suffix(".train.pt")
    trainer_hparams = {k: v for k, v in hparams.items() if k != "train"}  # the Trainer adds its own "train"
    if variant in TEACHERLESS and not paired:
        trainer = CycleGANTrainer(nets, cfg, ckpt, device, trainer_hparams)
    else:
        trainer = DistillTrainer(nets, teacher, cfg, ckpt, device, trainer_hparams, paired=paired, cache=cache)
    trainer.set_aside_mismatched_checkpoint()
    trainer.fit(data["train"], eval_fn, progress=progress)
    G = trainer.generator
    state = {"G": G.state_dict(), "history": trainer.history, "evals": trainer.evals}
    maps = trainer.nets.get("maps") if variant == "features" else None
    if maps is not None:
        state["maps"] = maps.state_dict()
    save_checkpoint(final, state, hparams)
    return G.eval(), {"history": trainer.history, "evals": trainer.evals, "maps": maps, "trained_now": True,
                      "hparams": hparams}
