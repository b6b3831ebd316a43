"""Teacher training (notebook 01): pix2pix for paired tasks, CycleGAN for unpaired ones.

Both trainers are resumable with nothing lost: every random draw of step ``t`` (batch order, flips, the image
pool) comes from a generator seeded by ``(seed, t)``, the learning rate is a pure function of ``t``, and the
checkpoint holds the networks, the Adam moments and the history. Stopping after step k and resuming therefore gives
the same weights as an uninterrupted run (tested in ``tests/test_train.py``).
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .models import GANLoss

EvalFn = Callable[[nn.Module], dict]


@dataclass
class TrainConfig:
    steps: int
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    decay_fraction: float = 0.5   # linear decay to 0 over the last fraction of steps
    gan_mode: str = "hinge"
    lambda_recon: float = 100.0   # pix2pix L1 weight
    lambda_cycle: float = 10.0    # CycleGAN cycle weight
    lambda_identity: float = 0.5  # CycleGAN identity weight, relative to lambda_cycle
    pool_size: int = 50           # CycleGAN image pool
    eval_every: int = 100
    ckpt_every: int = 100
    seed: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Constant, then linear decay to 0:  lr_t = lr * min(1, (T - t) / (decay_fraction * T))."""
    decay_steps = max(1, int(cfg.decay_fraction * cfg.steps))
    return cfg.lr * min(1.0, (cfg.steps - step) / decay_steps)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step (a pure function of seed and step, so resuming is exact)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def sample_batch(data: dict[str, torch.Tensor] | Dataset, step: int, cfg: TrainConfig, paired: bool) -> dict[str, torch.Tensor]:
    """Epoch-wise shuffled batches with random horizontal flips.

    ``data['A']``, ``data['B']``: (N, 3, H, W). Paired: the same indices and flips for A and B. Unpaired: B gets its
    own indices and flips, so no pairing can leak into training."""
    n_a = len(data) if isinstance(data, Dataset) else len(data["A"])
    first = step * cfg.batch_size
    epoch, offset = divmod(first, n_a)
    perm = torch.cat([torch.randperm(n_a, generator=torch.Generator().manual_seed(cfg.seed * 7919 + e))
                      for e in (epoch, epoch + 1)])
    idx_a = perm[offset:offset + cfg.batch_size]
    g = step_generator(cfg.seed, step)
    if isinstance(data, Dataset):  # a real dataset folder: its own transform crops and flips
        items = [data[int(i)] for i in idx_a]
        return {k: torch.stack([it[k] for it in items]) for k in ("A", "B")}
    idx_b = idx_a if paired else torch.randint(len(data["B"]), (cfg.batch_size,), generator=g)
    flip_a = torch.rand(cfg.batch_size, generator=g) < 0.5
    flip_b = flip_a if paired else torch.rand(cfg.batch_size, generator=g) < 0.5
    a, b = data["A"][idx_a].clone(), data["B"][idx_b].clone()
    a[flip_a] = a[flip_a].flip(-1)
    b[flip_b] = b[flip_b].flip(-1)
    # index/flip_a say which training image each A is, so a frozen teacher's outputs can be looked up (distill.py)
    return {"A": a, "B": b, "index": idx_a, "flip_a": flip_a}


@contextlib.contextmanager
def _deferred_interrupt():
    """While active, SIGINT only raises a flag (checked between steps), so a step is never cut in half.

    Signal handlers can only be installed from the main thread; elsewhere Ctrl-C interrupts as usual and training
    resumes from the last periodic checkpoint."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: flag["hit"]
        return

    def handler(signum, frame):
        flag["hit"] = True
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag["hit"]
    finally:
        signal.signal(signal.SIGINT, previous)


def _set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


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


class Trainer:
    """The loop shared by both recipes: resume, step, log, evaluate, checkpoint, stop cleanly on Ctrl-C."""

    paired: bool

    def __init__(self, nets: dict[str, nn.Module], cfg: TrainConfig, ckpt_path: str | Path,
                 device: str | torch.device = "cpu", hparams: dict | None = None):
        self.nets, self.cfg, self.device = nets, cfg, torch.device(device)
        self.ckpt_path = Path(ckpt_path)
        self.hparams = {"train": asdict(cfg), **(hparams or {})}
        for net in nets.values():
            net.to(self.device)
        self.optimizers = self.build_optimizers()
        self.step, self.history, self.evals = 0, [], []

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    # -- checkpointing -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "history": self.history, "evals": self.evals,
                "nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()}}

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, self.state_dict(), self.hparams)

    def set_aside_mismatched_checkpoint(self) -> bool:
        """A resumable checkpoint written with other hyper-parameters is renamed ``*.stale.pt`` (kept, never resumed
        into a mismatch). Returns whether a matching checkpoint remains, i.e. whether :meth:`fit` will resume."""
        if not self.ckpt_path.exists():
            return False
        from .checkpoint import load_hparams
        if load_hparams(self.ckpt_path) == self.hparams:
            return True
        stale = self.ckpt_path.with_suffix(".stale.pt")
        self.ckpt_path.replace(stale)
        self.ckpt_path.with_suffix(".json").replace(stale.with_suffix(".json"))  # its settings go with it
        return False

    def resume(self) -> bool:
        """Load the last checkpoint if there is one. Returns whether training resumed."""
        if not self.ckpt_path.exists():
            return False
        state = load_checkpoint(self.ckpt_path, self.device)
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        return True

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self, data: dict[str, torch.Tensor] | Dataset, eval_fn: EvalFn | None = None, stop_at: int | None = None,
            progress: bool = True) -> "Trainer":
        """Train up to ``cfg.steps`` (or ``stop_at``), resuming if a checkpoint exists.

        Ctrl-C (Kernel > Interrupt) lets the running step finish, saves, then raises ``KeyboardInterrupt``: the next
        ``fit`` continues exactly where this one stopped."""
        self.resume()
        end = min(self.cfg.steps, stop_at) if stop_at is not None else self.cfg.steps
        bar = tqdm(range(self.step, end), initial=self.step, total=self.cfg.steps, desc=type(self).__name__,
                   disable=not progress)
        try:
            with _deferred_interrupt() as interrupted:
                for step in bar:
                    _set_lr(list(self.optimizers.values()), lr_at(step, self.cfg))
                    batch = sample_batch(data, step, self.cfg, self.paired)
                    batch = {k: v.to(self.device, non_blocking=True) if k in ("A", "B") else v
                             for k, v in batch.items()}
                    t0 = time.perf_counter()
                    losses = self.train_step(batch, step_generator(self.cfg.seed, step))
                    self.history.append({"step": step, "seconds": time.perf_counter() - t0, **losses})
                    self.step = step + 1
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                    if eval_fn is not None and (self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps):
                        self.evals.append({"step": self.step, **eval_fn(self.generator)})
                    stop = interrupted()  # read once: a Ctrl-C between two reads must not skip the save
                    if stop or self.step % self.cfg.ckpt_every == 0 or self.step == end:
                        self.save()
                    if stop:
                        raise KeyboardInterrupt(f"training interrupted after step {self.step}; saved to "
                                                f"{self.ckpt_path}, run again to resume")
        finally:
            bar.close()
        return self

    @property
    def generator(self) -> nn.Module:
        raise NotImplementedError


class Pix2PixTrainer(Trainer):
    """pix2pix: L_G = GAN(D(A, G(A))) + lambda_recon * |G(A) - B|_1,  L_D = 0.5 (real + fake), D conditioned on A."""

    paired = True

    def build_optimizers(self):
        betas = (self.cfg.beta1, 0.999)
        return {"G": torch.optim.Adam(self.nets["G"].parameters(), lr=self.cfg.lr, betas=betas),
                "D": torch.optim.Adam(self.nets["D"].parameters(), lr=self.cfg.lr, betas=betas)}

    @property
    def generator(self) -> nn.Module:
        return self.nets["G"]

    def train_step(self, batch, g):
        G, D = self.nets["G"], self.nets["D"]
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

    paired = False

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

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["pools"] = {"A": self.pool_a.images, "B": self.pool_b.images}
        return state

    def resume(self) -> bool:
        if not super().resume():
            return False
        pools = load_checkpoint(self.ckpt_path, self.device)["pools"]
        self.pool_a.images, self.pool_b.images = list(pools["A"]), list(pools["B"])
        return True

    def train_step(self, batch, g):
        G_A, G_B, D_A, D_B = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
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


# ----------------------------------------------------------------------------------------------------------------
# Load-or-train: every notebook can run on its own
# ----------------------------------------------------------------------------------------------------------------
def build_teacher_nets(preset, paired: bool) -> dict[str, nn.Module]:
    """Teacher generator(s) and discriminator(s) at the preset's width, with pix2pix's N(0, 0.02) init."""
    from .models import NLayerDiscriminator, ResnetGenerator, init_weights

    def gen() -> nn.Module:
        return init_weights(ResnetGenerator(ngf=preset.teacher_ngf, n_blocks=preset.teacher_blocks))
    if paired:  # D sees (A, output) stacked: 6 channels
        return {"G": gen(), "D": init_weights(NLayerDiscriminator(6, preset.ndf))}
    return {"G_A": gen(), "G_B": gen(), "D_A": init_weights(NLayerDiscriminator(3, preset.ndf)),
            "D_B": init_weights(NLayerDiscriminator(3, preset.ndf))}


def preset_train_config(preset, steps: int, seed: int, **fields) -> TrainConfig:
    """A TrainConfig of ``steps`` steps with the preset's batch size, optimiser, schedule and logging intervals;
    ``fields`` set the recipe's own settings (e.g. ``gan_mode``)."""
    return TrainConfig(steps=steps, batch_size=preset.batch_size, lr=preset.lr, beta1=preset.beta1,
                       decay_fraction=preset.decay_fraction, eval_every=preset.eval_every,
                       ckpt_every=preset.ckpt_every, seed=seed, **fields)


def teacher_config(preset, paired: bool, seed: int) -> TrainConfig:
    """pix2pix: hinge GAN + 100 L1 (the paper's pix2pix setting); CycleGAN: LSGAN, cycle 10, identity 0.5."""
    return preset_train_config(preset, preset.teacher_steps, seed, gan_mode="hinge" if paired else "lsgan")


def load_or_train_teacher(preset, task: str, data: dict, runs_dir: str | Path, seed: int = 0,
                          device: str | torch.device = "cpu", eval_fn: EvalFn | None = None,
                          progress: bool = True) -> tuple[nn.Module, dict]:
    """The trained teacher generator (A -> B) of ``task``, from ``runs_dir`` if there, else trained now.

    Files: ``teacher_{task}.pt`` (final: state_dicts of the A->B generator ``G`` and of the discriminator ``D`` that
    judged it, history, evals) with ``.json`` hyper-parameters,
    and ``teacher_{task}.train.pt``, the resumable training state (kept, so more steps can be added later).
    Returns ``(G, info)`` with ``info = {'history', 'evals', 'trained_now', 'hparams'}``."""
    from .models import ResnetGenerator
    runs_dir = Path(runs_dir)
    final = runs_dir / f"teacher_{task}.pt"
    hparams = {"task": task, "paired": data["paired"], "seed": seed, "preset": preset.teacher_dict(),
               "ngf": preset.teacher_ngf, "n_blocks": preset.teacher_blocks}
    G = ResnetGenerator(ngf=preset.teacher_ngf, n_blocks=preset.teacher_blocks)
    if final.exists():
        from .checkpoint import load_hparams
        saved = load_hparams(final)
        if saved == hparams:
            state = load_checkpoint(final)
            G.load_state_dict(state["G"])
            return G.to(device).eval(), {"history": state["history"], "evals": state["evals"],
                                         "trained_now": False, "hparams": saved}
        print(f"{final} was trained with other settings; training a new teacher")
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone, not on what ran before
        torch.manual_seed(seed)
        nets = build_teacher_nets(preset, data["paired"])
    cfg = teacher_config(preset, data["paired"], seed)
    trainer_cls = Pix2PixTrainer if data["paired"] else CycleGANTrainer
    trainer = trainer_cls(nets, cfg, runs_dir / f"teacher_{task}.train.pt", device, hparams)
    if trainer.set_aside_mismatched_checkpoint():
        print(f"resuming teacher training from {trainer.ckpt_path}")
    trainer.fit(data["train"], eval_fn, progress=progress)
    G = trainer.generator
    # The discriminator that judged G's outputs is kept too: the paper starts the student's D from it (notebook 02).
    D = trainer.nets["D"] if data["paired"] else trainer.nets["D_B"]
    save_checkpoint(final, {"G": G.state_dict(), "D": D.state_dict(), "history": trainer.history,
                            "evals": trainer.evals}, hparams)
    return G.eval(), {"history": trainer.history, "evals": trainer.evals, "trained_now": True, "hparams": hparams}
