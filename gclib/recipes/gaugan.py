"""GauGAN's recipe (notebook 06): teacher training, distillation and once-for-all training of SPADE generators.

GauGAN (Park et al. 2019) trains its generator against a multi-scale PatchGAN with

    L_G = hinge_G(D(s, G(s))) + l_feat * FM(D; G(s), x) + l_perceptual * P(G(s), x)
    L_D = hinge_D(D(s, x), D(s, G(s)))                             (s: one-hot label map, x: the real image)

``FM`` matches the discriminator's features of fake and real images (pix2pixHD), ``P`` is a perceptual distance
through a frozen feature network (GauGAN's VGG19 when the user supplies its weights, else the offline extractor; see
:class:`PerceptualLoss`). Two time-scale update rule (TTUR): G at lr/2 and D at 2 lr, Adam betas (0, 0.9). While the
teacher trains, its block convs carry spectral norm, folded into plain weights before it is saved (compression
starts from ordinary convs).

GAN Compression distils a SPADE student with the same losses plus ``l_distill * sum_i MSE(M_i(S_i), T_i)`` on
``head_0``, ``G_middle_1`` and ``up_1`` through 1x1 mappings (l_feat = l_perceptual = l_distill = 10), against the
real image (GauGAN is paired: no pseudo ground truth needed). Its norms are BatchNorms: a sub-network of the supernet
must re-calibrate their statistics before it is scored (:func:`gclib.families.spade.networks.recalibrate`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..families.spade.discriminator import (MultiscaleDiscriminator, feature_matching_loss, hinge_d_loss,
                                            hinge_g_loss)
from ..nn.gan import set_requires_grad
from .distill import DistillConfig, DistillTrainer, mapped_distill_loss
from .once_for_all import SupernetTrainer
from .trainer import TrainConfig, Trainer, from_preset


@dataclass
class GauGANConfig(DistillConfig):
    beta1: float = 0.0                 # TTUR's Adam betas (0, 0.9)
    beta2: float = 0.9
    lambda_recon: float = 0.0          # GauGAN has no pixel loss: the perceptual and feature-matching terms replace it
    lambda_feat: float = 10.0          # discriminator feature matching
    lambda_perceptual: float = 10.0    # perceptual distance to the real image
    lambda_distill: float = 0.0        # intermediate features (10 when distilling)
    perceptual_net: str = ""           # which frozen network measures the perceptual distance (part of the key)
    perceptual_weights: str = ""       # where its weights are (VGG19): not part of the key, since their digest is
                                       # checked (the same file elsewhere trains the same)
    LOGGING = TrainConfig.LOGGING + ("perceptual_weights",)


def perceptual_net_name(vgg_weights: str = "") -> str:
    """The perceptual network's name in a stage's key: VGG19 (the first digits of the official file's digest) when the user
    supplies its weights, else the offline extractor's version."""
    from ..metrics.features import OFFLINE_VERSION, VGG19_SHA256
    return f"vgg19-{VGG19_SHA256[:8]}" if vgg_weights else f"offline-v{OFFLINE_VERSION}"


def gaugan_config(preset, steps: int, seed: int, variant: str = "teacher") -> GauGANConfig:
    """The GauGAN settings for the teacher (``variant="teacher"``) or a student: ``features`` distils (the paper's
    recipe, also the supernet's and fine-tuning's), ``alone`` and ``init`` train with GauGAN's losses only."""
    if variant not in ("teacher", "features", "alone", "init"):
        raise ValueError(f"the GauGAN recipe has no variant {variant!r}: it distils intermediate features "
                         f"('features') or trains with GauGAN's own losses ('alone', 'init')")
    cfg = from_preset(preset, steps, seed, config_class=GauGANConfig, gan_mode="hinge", recon_target="real",
                      perceptual_net=perceptual_net_name(preset.spade.vgg_weights),
                      perceptual_weights=preset.spade.vgg_weights)
    cfg.beta1 = 0.0
    if variant == "features":
        cfg.lambda_distill = preset.student.lambda_distill or 10.0
    return cfg


class PerceptualLoss(nn.Module):
    """sum_l w_l |f_l(fake) - f_l(real)|_1 over the stages of a frozen feature network, deeper stages weighing more.

    - :meth:`vgg19`: GauGAN's, VGG19's relu1_1 .. relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1, from weights the user
      supplies (``spade.vgg_weights``; gclib downloads nothing);
    - :meth:`offline` (default): the offline extractor's four stages on a 64x64 resize (32, 16, 8, 4 pixels) weighted
      1/8, 1/4, 1/2, 1. It was trained on the embedded images and needs no download, but it is also the network
      the FID is computed with: a model trained through it is partly judged by what it was trained on. The mIoU (a
      segmenter trained on real renders) is independent of it."""

    def __init__(self, net: nn.Module, weights: tuple[float, ...], size: int | None = None):
        super().__init__()
        self.net, self.weights, self.size = copy.deepcopy(net).eval(), tuple(weights), size
        set_requires_grad([self.net], False)

    @classmethod
    def offline(cls, extractor: nn.Module | None = None) -> "PerceptualLoss":
        if extractor is None:
            from ..metrics.features import load_offline_extractor
            extractor = load_offline_extractor(progress=False)
        return cls(extractor, (1 / 8, 1 / 4, 1 / 2, 1.0), size=64)

    @classmethod
    def vgg19(cls, path: str) -> "PerceptualLoss":
        from ..metrics.features import vgg19_features
        return cls(vgg19_features(path), (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0))

    @classmethod
    def for_config(cls, cfg: "GauGANConfig") -> "PerceptualLoss":
        return cls.vgg19(cfg.perceptual_weights) if cfg.perceptual_net.startswith("vgg19") else cls.offline()

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) each, in [-1, 1]
        if self.size:
            resize = lambda x: nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                         align_corners=False)
            fake, real = resize(fake), resize(real)
        fake_maps = self.net.feature_maps(fake)
        with torch.no_grad():
            real_maps = self.net.feature_maps(real)
        return sum(w * nn.functional.l1_loss(f, r) for w, f, r in zip(self.weights, fake_maps, real_maps))


def discriminator(preset, label_nc: int) -> MultiscaleDiscriminator:
    """Two spectral-norm PatchGANs on (label map, image), at full and half size, ``teacher.ndf`` wide."""
    return MultiscaleDiscriminator(label_nc, preset.teacher.ndf)


SPECTRAL_CONVS = ("conv_0", "conv_1", "conv_s")   # the convs of each SPADE block that GauGAN normalises spectrally


def with_spectral_norm(G: nn.Module) -> nn.Module:
    """Spectral norm on every block conv (GauGAN's ``spectral`` norm_G), in place: W / sigma_max(W) at each forward,
    sigma estimated by one power iteration per training step."""
    for name, module in list(G.named_modules()):
        if name.rsplit(".", 1)[-1] in SPECTRAL_CONVS and isinstance(module, nn.Conv2d):
            spectral_norm(module)
    return G


@torch.no_grad()
def plain_state_dict(G: nn.Module) -> dict[str, torch.Tensor]:
    """``G``'s weights with each spectral norm folded into its conv (W / sigma, sigma from the stored power-iteration
    vectors, no new iteration): the keys of the same network without spectral norm."""
    was_training = G.training
    G.eval()                                  # reading a spectral-norm weight in training mode would iterate again
    state = {k: v for k, v in G.state_dict().items() if ".parametrizations." not in k}
    for name, module in G.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach().clone()
    G.train(was_training)
    return state


def _optimizers(g_params, d_params, cfg) -> dict[str, torch.optim.Optimizer]:
    """Adam with betas (beta1, beta2) = (0, 0.9); the learning rates are set at every step (TTUR, see
    :class:`_GauGANSteps`)."""
    betas = (cfg.beta1, cfg.beta2)
    return {"G": torch.optim.Adam(g_params, lr=cfg.lr / 2, betas=betas),
            "D": torch.optim.Adam(d_params, lr=cfg.lr * 2, betas=betas)}


class _GauGANSteps:
    """What the teacher's and the distillation trainer share: TTUR on the schedule's learning rate (G at lr / 2, D at
    2 lr), the perceptual loss (``perceptual``, default: the config's network), and GauGAN's step, G first against
    the current D, then D (GauGAN's order)."""

    def __init__(self, *args, perceptual: PerceptualLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.perceptual = (perceptual or PerceptualLoss.for_config(self.cfg)).to(self.device)

    def set_lr(self, lr: float) -> None:
        for name, scale in (("G", 0.5), ("D", 2.0)):
            for group in self.optimizers[name].param_groups:
                group["lr"] = lr * scale

    def gaugan_step(self, seg: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                    extra: dict[str, tuple[float, torch.Tensor]] | None = None) -> dict[str, float]:
        """One G and one D update from ``fake = G(seg)``: L_G = hinge + l_feat FM + l_perceptual P (+ each
        ``weight * loss`` of ``extra``), then L_D = hinge on (seg, real) vs (seg, fake). Returns the unweighted
        losses."""
        D, cfg = self.net("D"), self.cfg
        set_requires_grad([D], True)
        pred_real = D(seg, real)      # once for both steps: G's step leaves D unchanged (FM reads it detached)
        set_requires_grad([D], False)                    # G's step: no gradient into D
        self.optimizers["G"].zero_grad(set_to_none=True)
        pred_fake = D(seg, fake)
        terms = {"G_gan": (1.0, hinge_g_loss(pred_fake)),
                 "G_feat": (cfg.lambda_feat, feature_matching_loss(pred_real, pred_fake)),
                 "G_perceptual": (cfg.lambda_perceptual, self.perceptual(fake, real)), **(extra or {})}
        sum(weight * loss for weight, loss in terms.values()).backward()
        self.optimizers["G"].step()

        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d = hinge_d_loss(pred_real, D(seg, fake.detach()))
        loss_d.backward()
        self.optimizers["D"].step()
        return {**{name: loss.item() for name, (_, loss) in terms.items()}, "D": loss_d.item()}


class GauGANTrainer(_GauGANSteps, Trainer):
    """nets: ``{'G': a SPADE teacher with_spectral_norm, 'D': a MultiscaleDiscriminator}``; D sees real pairs
    (s, x) and fake pairs (s, G(s))."""

    def build_optimizers(self):
        return _optimizers(self.nets["G"].parameters(), self.nets["D"].parameters(), self.cfg)

    def final_weights(self) -> dict[str, dict]:
        """G with its spectral norms folded in (a plain SPADE generator's keys); D as trained."""
        return {"G": plain_state_dict(self.nets["G"]), "D": self.nets["D"].state_dict()}

    def generator_weights(self, G: nn.Module) -> dict:
        return plain_state_dict(G)

    def train_step(self, batch, g):
        seg, real = batch["A"], batch["B"]               # (B, L, H, W) one-hot, (B, 3, H, W)
        return self.gaugan_step(seg, real, self.net("G")(seg))


class GauGANDistillTrainer(_GauGANSteps, DistillTrainer):
    """A SPADE student against a frozen SPADE teacher: GauGAN's losses plus ``l_distill`` times the feature
    distillation (GAN Compression's SPADE distiller). nets: ``{'G', 'D', 'maps'}`` as :class:`DistillTrainer`."""

    def build_optimizers(self):
        g_params = list(self.nets["G"].parameters()) + list(self.nets["maps"].parameters())
        return _optimizers(g_params, self.nets["D"].parameters(), self.cfg)

    def train_step(self, batch, g):
        seg, real = batch["A"], batch["B"]
        _, teacher_feats = self.teacher_signals(batch)
        fake, mapped = self.net("student")(seg)          # G_s(s), [M_i(S_i)]
        # l_distill * sum_i MSE(M_i(S_i), T_i)
        distill = mapped_distill_loss(mapped, teacher_feats) if self.cfg.lambda_distill > 0 else fake.new_zeros(())
        return self.gaugan_step(seg, real, fake, {"distill": (self.cfg.lambda_distill, distill)})


class GauGANSupernetTrainer(SupernetTrainer, GauGANDistillTrainer):
    """Once-for-all training of the SPADE supernet: a sampled sub-network per step (:class:`SupernetTrainer`), each
    step a GauGAN distillation step (:class:`GauGANDistillTrainer`)."""


def teacher_nets(family, preset, paired: bool = True, make_generator=None) -> dict[str, nn.Module]:
    """The SPADE teacher (with spectral norm on its block convs) and the multi-scale D. Weights: PyTorch's default
    init (GAN Compression's SPADE runs use Xavier)."""
    arch = family.arch(preset)
    make = make_generator or (lambda: family.teacher(preset.teacher.ngf, **arch))
    return {"G": with_spectral_norm(make()), "D": discriminator(preset, arch["label_nc"])}
