"""Teacher objectives (notebook 01): pix2pix for paired tasks, CycleGAN for unpaired ones."""
from __future__ import annotations

import torch
from torch import nn

from ..nn.gan import GANLoss, NLayerDiscriminator, init_weights, set_requires_grad
from .trainer import TrainConfig, Trainer, from_preset


class ImagePool:
    """CycleGAN's history of generated images: D sees a mix of current and older fakes (Shrivastava et al.)."""

    def __init__(self, size: int):
        self.size, self.images = size, []

    def query(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif torch.rand((), generator=g) < 0.5:
                i = int(torch.randint(self.size, (), generator=g))
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.stack(out)


class Pix2PixTrainer(Trainer):
    """pix2pix: L_G = GAN(D(A, G(A))) + lambda_recon * |G(A) - B|_1,  L_D = 0.5 (real + fake), D conditioned on A.
    D steps first, then G against the updated D (the official teacher training)."""

    def build_optimizers(self):
        betas = (self.cfg.beta1, 0.999)
        return {"G": torch.optim.Adam(self.nets["G"].parameters(), lr=self.cfg.lr, betas=betas),
                "D": torch.optim.Adam(self.nets["D"].parameters(), lr=self.cfg.lr, betas=betas)}

    def train_step(self, batch, g):
        G, D = self.net("G"), self.net("D")             # the networks, or their DDP wrappers under torchrun
        gan = GANLoss(self.cfg.gan_mode)
        real_a, real_b = batch["A"], batch["B"]          # (B, 3, H, W) each
        fake_b = G(real_a)

        # D: real pairs (A, B) vs fake pairs (A, G(A)); the fake is detached so only D learns here.
        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_d_fake = gan(D(torch.cat([real_a, fake_b.detach()], 1)), False)
        loss_d_real = gan(D(torch.cat([real_a, real_b], 1)), True)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        loss_d.backward()
        self.optimizers["D"].step()

        # G: fool D and stay close to the target.
        set_requires_grad([D], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss_g_gan = gan(D(torch.cat([real_a, fake_b], 1)), True, for_discriminator=False)
        loss_g_recon = nn.functional.l1_loss(fake_b, real_b)
        loss_g = loss_g_gan + self.cfg.lambda_recon * loss_g_recon
        loss_g.backward()
        self.optimizers["G"].step()
        return {"G_gan": loss_g_gan.item(), "G_L1": loss_g_recon.item(), "D": loss_d.item()}


class CycleGANTrainer(Trainer):
    """CycleGAN with two generators (A->B, B->A) and two discriminators, LSGAN, cycle and identity losses.

    L_G = GAN_B(G_A(A)) + GAN_A(G_B(B)) + lambda_cycle (|G_B(G_A(A)) - A|_1 + |G_A(G_B(B)) - B|_1)
          + lambda_identity * lambda_cycle (|G_A(B) - B|_1 + |G_B(A) - A|_1)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool_a, self.pool_b = ImagePool(self.cfg.pool_size), ImagePool(self.cfg.pool_size)

    def build_optimizers(self):
        betas = (self.cfg.beta1, 0.999)
        gs = list(self.nets["G_A"].parameters()) + list(self.nets["G_B"].parameters())
        ds = list(self.nets["D_A"].parameters()) + list(self.nets["D_B"].parameters())
        return {"G": torch.optim.Adam(gs, lr=self.cfg.lr, betas=betas),
                "D": torch.optim.Adam(ds, lr=self.cfg.lr, betas=betas)}

    @property
    def generator(self) -> nn.Module:
        return self.nets["G_A"]

    def final_weights(self) -> dict[str, dict]:
        """A -> B only: its generator, and the discriminator of domain B that judged it (a student's D starts
        from it)."""
        return {"G": self.nets["G_A"].state_dict(), "D": self.nets["D_B"].state_dict()}

    def state_dict(self) -> dict:
        """Under torchrun each process keeps its own image pool (its shard's fakes): the checkpoint holds every
        process's, gathered, so a resumed run is the uninterrupted one (all processes must call this)."""
        pools = {"A": self.pool_a.images, "B": self.pool_b.images}
        if self.world_size > 1:
            import torch.distributed as dist
            gathered: list = [None] * self.world_size
            dist.all_gather_object(gathered, {k: [img.cpu() for img in v] for k, v in pools.items()})
            return {**super().state_dict(), "pools": gathered}
        return {**super().state_dict(), "pools": pools}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        pools = state["pools"]
        if isinstance(pools, list):           # one per process of the run that wrote it
            if len(pools) != self.world_size:
                raise ValueError(f"{self.ckpt_path} holds the image pools of {len(pools)} processes; resume it with "
                                 f"as many (torchrun --nproc_per_node {len(pools)}), or start it again")
            pools = pools[self.rank]
        on = self.device
        self.pool_a.images = [img.to(on) for img in pools["A"]]
        self.pool_b.images = [img.to(on) for img in pools["B"]]

    def train_step(self, batch, g):
        G_A, G_B, D_A, D_B = (self.net(k) for k in ("G_A", "G_B", "D_A", "D_B"))
        gan = GANLoss(self.cfg.gan_mode)
        real_a, real_b = batch["A"], batch["B"]
        lc, li = self.cfg.lambda_cycle, self.cfg.lambda_identity

        set_requires_grad([D_A, D_B], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        fake_b, fake_a = G_A(real_a), G_B(real_b)
        loss_gan = gan(D_B(fake_b), True, False) + gan(D_A(fake_a), True, False)
        loss_cycle = nn.functional.l1_loss(G_B(fake_b), real_a) + nn.functional.l1_loss(G_A(fake_a), real_b)
        loss_idt = nn.functional.l1_loss(G_A(real_b), real_b) + nn.functional.l1_loss(G_B(real_a), real_a)
        loss_g = loss_gan + lc * loss_cycle + li * lc * loss_idt
        loss_g.backward()
        self.optimizers["G"].step()

        set_requires_grad([D_A, D_B], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        pooled_b, pooled_a = self.pool_b.query(fake_b, g), self.pool_a.query(fake_a, g)
        loss_d_b = 0.5 * (gan(D_B(real_b), True) + gan(D_B(pooled_b), False))
        loss_d_a = 0.5 * (gan(D_A(real_a), True) + gan(D_A(pooled_a), False))
        (loss_d_a + loss_d_b).backward()
        self.optimizers["D"].step()
        return {"G_gan": loss_gan.item(), "cycle": loss_cycle.item(), "idt": loss_idt.item(),
                "D": (loss_d_a + loss_d_b).item()}


def teacher_config(preset, paired: bool, seed: int, steps: int | None = None) -> TrainConfig:
    """pix2pix: hinge GAN + 100 L1 (the paper's pix2pix setting); CycleGAN: LSGAN, cycle 10, identity 0.5.
    Batches of ``teacher.batch_size`` images when the preset sets one, else ``data.batch_size``."""
    cfg = from_preset(preset, preset.teacher.steps if steps is None else steps, seed,
                      gan_mode="hinge" if paired else "lsgan")
    if preset.teacher.batch_size:   # the teacher's own batch size (CycleGAN's official one is 1)
        cfg.batch_size = preset.teacher.batch_size
    return cfg


def discriminator(preset, paired: bool) -> nn.Module:
    """A 70x70 PatchGAN at the preset's width and normalisation (``teacher.d_norm``): conditional (sees A and the
    output: 6 channels) when paired."""
    return init_weights(NLayerDiscriminator(6 if paired else 3, preset.teacher.ndf, norm=preset.teacher.d_norm))


def teacher_nets(family, preset, paired: bool, make_generator=None) -> dict[str, nn.Module]:
    """Generator(s) and discriminator(s) for pix2pix (``G``, ``D``) or CycleGAN (``G_A``, ``G_B``, ``D_A``, ``D_B``),
    N(0, 0.02) init. ``make_generator``: another generator to train this way (default: the family's teacher)."""
    make = make_generator or (lambda: family.teacher(preset.teacher.ngf, **family.arch(preset)))
    if paired:
        return {"G": init_weights(make()), "D": discriminator(preset, True)}
    return {"G_A": init_weights(make()), "G_B": init_weights(make()), "D_A": discriminator(preset, False),
            "D_B": discriminator(preset, False)}


def trainer_for(paired: bool) -> type[Trainer]:
    return Pix2PixTrainer if paired else CycleGANTrainer
