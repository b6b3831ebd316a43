"""MUNIT's recipe (notebook 07): teacher training, distillation and once-for-all training of MUNIT generators.

MUNIT (Huang et al. 2018) trains two auto-encoders, ``G_A`` on domain A and ``G_B`` on domain B, whose content codes
share one space. A -> B translation takes A's content and a style of B: ``G_B.decode(G_A.content(a), s)``, s ~ N(0, I)
or the style code of a B image. With random styles ``s_a``, ``s_b`` and ``fake_B = G_B.decode(c_a, s_b)``,
``fake_A = G_A.decode(c_b, s_a)``, each step minimises ::

    L_G = l_image (|G_A(a) - a|_1 + |G_B(b) - b|_1)                     each image rebuilt from its own two codes
        + l_style (|style_B(fake_B) - s_b|_1 + |style_A(fake_A) - s_a|_1)   the random style can be read back
        + l_content (|content_B(fake_B) - c_a|_1 + |content_A(fake_A) - c_b|_1)   ... and the content
        + LSGAN_B(fake_B) + LSGAN_A(fake_A)
    L_D = LSGAN on real vs fake images of each domain (one PatchGAN per domain)

with l_image 10, l_style = l_content = 1, Adam with weight decay 1e-4 (MUNIT's settings). The teacher kept for
compression is the A -> B **translator**: G_A's content encoder with G_B's style encoder, MLP and decoder, one
generator of the family's teacher architecture (:func:`~gclib.families.munit.networks.translator`).

Fast GAN Compression distils a MUNIT student against that frozen teacher, with the teacher's output as the target:

    L_G = l_recon |S(a, s) - T(a, s)|_1 + l_distill |M(c_S(a)) - c_T(a)|_1 + l_style |style_S(b) - style_T(b)|_1
          + LSGAN(D(S(a, s)))

``M`` is a learned 1x1 conv from the student's content code to the teacher's (the family's one distillation point),
l_recon 10 and l_distill = l_style = 1. On every other step the style is the teacher's reading of a real B image
(and the student's own reading enters the loss, so its style encoder learns to read like the teacher's), on the
others a random code shared by both. The supernet trains a sampled sub-network this way at each step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..families.munit.networks import STYLE_DIM, translator
from ..nn.gan import GANLoss, set_requires_grad
from .distill import DistillConfig, DistillTrainer
from .once_for_all import SupernetTrainer
from .teacher import discriminator as patch_discriminator
from .trainer import Trainer, from_preset


@dataclass
class MUNITConfig(DistillConfig):
    gan_mode: str = "lsgan"
    weight_decay: float = 1e-4       # MUNIT's Adam weight decay (generators and discriminators)
    lambda_image: float = 10.0       # teacher: each image rebuilt from its own codes
    lambda_content: float = 1.0      # teacher: content code read back from a translation
    lambda_style: float = 1.0        # teacher: random style read back; student: style code of a real B image
    style_every: int = 2             # student: the style comes from a real B image unless step % style_every == 0
    lambda_recon: float = 10.0       # student: L1 to the teacher's output
    lambda_distill: float = 1.0      # student: L1 between the mapped content codes
    recon_target: str = "teacher"
    conditional_d: bool = False


def munit_config(preset, steps: int, seed: int, variant: str = "teacher") -> MUNITConfig:
    """MUNIT's settings for the teacher (``variant="teacher"``) or a distilled student (``"features"``: the official
    distiller, also the supernet's and fine-tuning's)."""
    if variant not in ("teacher", "features"):
        raise ValueError(f"the MUNIT recipe has no student variant {variant!r}: its students are distilled from "
                         f"the teacher ('features'); MUNIT has no teacher-free student of its own in gclib")
    return from_preset(preset, steps, seed, config_class=MUNITConfig)


def kaiming_init(net: nn.Module) -> nn.Module:
    """MUNIT's init: every conv and linear weight ~ He normal (fan in), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def discriminator(family, preset, paired: bool = False) -> nn.Module:
    """A PatchGAN on the image alone (MUNIT's D judges images, not pairs), ``teacher.ndf`` wide. MUNIT's own is a
    three-scale PatchGAN; at the embedded tasks' 32-64 pixels one scale already sees the whole image."""
    return patch_discriminator(preset, paired=False)


def teacher_nets(family, preset, paired: bool = False) -> dict[str, nn.Module]:
    """``G_A``, ``G_B`` (the family's teacher, He init) and one PatchGAN per domain."""
    make = lambda: kaiming_init(family.teacher(preset.teacher.ngf, **family.arch(preset)))
    return {"G_A": make(), "G_B": make(), "D_A": discriminator(family, preset), "D_B": discriminator(family, preset)}


def _adam(params, cfg) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay)


def random_styles(n: int, g: torch.Generator, device) -> torch.Tensor:
    """n style codes ~ N(0, I), (n, 8, 1, 1), drawn from the step's stream (resuming redraws them)."""
    return torch.randn(n, STYLE_DIM, 1, 1, generator=g).to(device)


class MUNITTrainer(Trainer):
    """MUNIT's teacher: nets ``{'G_A', 'G_B', 'D_A', 'D_B'}`` (see the module docstring for the losses)."""

    def build_optimizers(self):
        gs = list(self.nets["G_A"].parameters()) + list(self.nets["G_B"].parameters())
        ds = list(self.nets["D_A"].parameters()) + list(self.nets["D_B"].parameters())
        return {"G": _adam(gs, self.cfg), "D": _adam(ds, self.cfg)}

    @property
    def generator(self) -> nn.Module:
        """The A -> B translator (shares G_A's and G_B's modules: evaluations see the current weights)."""
        return translator(self.nets["G_A"], self.nets["G_B"])

    def final_weights(self) -> dict[str, dict]:
        """The A -> B translator as one generator, and the D of domain B that judged its images."""
        return {"G": translator(self.nets["G_A"], self.nets["G_B"]).state_dict(), "D": self.nets["D_B"].state_dict()}

    def train_step(self, batch, g):
        G_A, G_B, D_A, D_B = (self.net(k) for k in ("G_A", "G_B", "D_A", "D_B"))
        cfg, gan, l1 = self.cfg, GANLoss(self.cfg.gan_mode), nn.functional.l1_loss
        real_a, real_b = batch["A"], batch["B"]
        s_a = random_styles(len(real_a), g, real_a.device)                     # (B, 8, 1, 1) each
        s_b = random_styles(len(real_b), g, real_b.device)

        set_requires_grad([D_A, D_B], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        (c_a, own_a), (c_b, own_b) = G_A.encode(real_a), G_B.encode(real_b)
        fake_a, fake_b = G_A.decode(c_b, s_a), G_B.decode(c_a, s_b)            # across domains, random styles
        (c_b_back, s_a_back), (c_a_back, s_b_back) = G_A.encode(fake_a), G_B.encode(fake_b)
        loss_image = l1(G_A.decode(c_a, own_a), real_a) + l1(G_B.decode(c_b, own_b), real_b)
        loss_style = l1(s_a_back, s_a) + l1(s_b_back, s_b)
        loss_content = l1(c_b_back, c_b) + l1(c_a_back, c_a)
        loss_gan = gan(D_A(fake_a), True, False) + gan(D_B(fake_b), True, False)
        loss_g = loss_gan + cfg.lambda_image * loss_image + cfg.lambda_style * loss_style \
            + cfg.lambda_content * loss_content
        loss_g.backward()
        self.optimizers["G"].step()

        set_requires_grad([D_A, D_B], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d = (gan(D_A(fake_a.detach()), False) + gan(D_A(real_a), True)
                  + gan(D_B(fake_b.detach()), False) + gan(D_B(real_b), True))
        loss_d.backward()
        self.optimizers["D"].step()
        return {"G_gan": loss_gan.item(), "image": loss_image.item(), "style": loss_style.item(),
                "content": loss_content.item(), "D": loss_d.item()}


class StyledStudent(nn.Module):
    """A MUNIT student and its content mapping as one module (one DistributedDataParallel under torchrun):
    ``forward(a, style=None, style_image=None) -> (S(a, s), M(c_S(a)), s)`` with ``s = style`` or, without one, the
    student's reading of ``style_image``."""

    def __init__(self, G: nn.Module, maps: nn.ModuleList):
        super().__init__()
        self.G, self.maps = G, maps

    def forward(self, a: torch.Tensor, style: torch.Tensor | None = None, style_image: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        content = self.G.enc_content(a)                              # (B, C_s, H/4, W/4)
        s = style if style is not None else self.G.enc_style(style_image)
        return self.G.decode(content, s), self.maps[0](content), s


class MUNITDistillTrainer(DistillTrainer):
    """A MUNIT student against the frozen teacher translator, Fast GAN Compression's MUNIT distiller. nets:
    ``{'G': student, 'D': PatchGAN on B images, 'maps': the content code's 1x1 mapping}``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)       # no teacher cache: its output depends on the style drawn
        self.student = StyledStudent(self.nets["G"], self.nets["maps"])

    def unused_parameters(self, name: str) -> bool:
        return name == "student"                # on random-style steps the style encoder gets no gradient

    def build_optimizers(self):
        g_params = list(self.nets["G"].parameters()) + list(self.nets["maps"].parameters())
        return {"G": _adam(g_params, self.cfg), "D": _adam(self.nets["D"].parameters(), self.cfg)}

    def train_step(self, batch, g):
        student, D, T = self.net("student"), self.net("D"), self.teacher
        cfg, gan, l1 = self.cfg, GANLoss(self.cfg.gan_mode), nn.functional.l1_loss
        real_a, real_b = batch["A"], batch["B"]
        read_style = self.step % cfg.style_every != 0                  # the official alternation
        z = random_styles(len(real_a), g, real_a.device)               # drawn at every step: resuming stays exact
        with torch.no_grad():
            s_t = T.enc_style(real_b) if read_style else z
            c_t = T.enc_content(real_a)
            out_t = T.decode(c_t, s_t)                                 # T(a, s): the pseudo ground truth
        if read_style:
            out_s, mapped_c, s_s = student(real_a, style_image=real_b)
        else:
            out_s, mapped_c, s_s = student(real_a, style=z)

        set_requires_grad([D], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_gan = gan(D(out_s), True, for_discriminator=False)
        loss_recon = l1(out_s, out_t)                                  # |S(a, s) - T(a, s)|_1
        loss_distill = l1(mapped_c, c_t)                               # |M(c_S) - c_T|_1
        loss_style = l1(s_s, s_t) if read_style else out_s.new_zeros(())
        loss_g = loss_gan + cfg.lambda_recon * loss_recon + cfg.lambda_distill * loss_distill \
            + cfg.lambda_style * loss_style
        loss_g.backward()
        self.optimizers["G"].step()

        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d = gan(D(out_s.detach()), False) + gan(D(real_b), True)
        loss_d.backward()
        self.optimizers["D"].step()
        return {"G_gan": loss_gan.item(), "G_recon": loss_recon.item(), "distill": loss_distill.item(),
                "style": loss_style.item(), "D": loss_d.item()}


class MUNITSupernetTrainer(SupernetTrainer, MUNITDistillTrainer):
    """Once-for-all training of the MUNIT supernet: a sampled sub-network per step (:class:`SupernetTrainer`), each
    step a MUNIT distillation step (:class:`MUNITDistillTrainer`)."""
