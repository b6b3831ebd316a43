"""The training loop every recipe shares: resumable with nothing lost, stopped cleanly by Ctrl-C or SIGTERM.

Every random draw of step ``t`` (batch order, flips, the image pool, the supernet's sampled config) comes from a
generator seeded by ``(seed, t)``, the learning rate is a pure function of ``t``, and the checkpoint holds the
networks, the optimiser moments and the history. Stopping after step k and resuming therefore gives the same weights
as an uninterrupted run (tested in ``tests/test_train.py``).
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..artifacts import load_artifact, save_artifact, set_aside
from ..presets import SPEED_UPS
from ..progress import progress_bar

EvalFn = Callable[[nn.Module], dict]
TRAIN_TECHNIQUES = ("eager",) + SPEED_UPS   # "eager": none of the speed-ups (the baseline of a benchmark)


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
    ema_images: int = 0           # half-life of the generator's weight average, in training images (0: no average)
    select: str = ""              # held-out score (lower is better) whose best evaluation the artifact keeps; "": last
    eval_every: int = 100
    ckpt_every: int = 100
    seed: int = 0

    LOGGING = ("eval_every", "ckpt_every")  # fields that change what is logged, not what is trained

    def settings(self) -> dict:
        """The fields that determine the trained weights (part of an artifact's key)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in self.LOGGING}


def from_preset(preset, steps: int, seed: int, config_class: type = TrainConfig, **fields) -> TrainConfig:
    """A config of ``steps`` steps with the preset's batch size, optimiser, schedule and logging intervals;
    ``fields`` set the recipe's own settings (e.g. ``gan_mode``)."""
    return config_class(steps=steps, batch_size=preset.data.batch_size, lr=preset.optim.lr, beta1=preset.optim.beta1,
                        decay_fraction=preset.optim.decay_fraction, ema_images=preset.optim.ema_images,
                        select=preset.optim.select, eval_every=preset.eval_every, ckpt_every=preset.ckpt_every,
                        seed=seed, **fields)


def selection_score(scores: dict, metric: str) -> float | None:
    """The number ``cfg.select`` ranks an evaluation by (lower is better): ``scores[metric]``, or for a supernet,
    whose evaluations score reference sub-networks (``fid@largest``, ``fid@smallest``), their mean. None when the
    evaluation has no such score."""
    values = [v for k, v in scores.items() if k == metric or k.startswith(f"{metric}@")]
    return sum(values) / len(values) if values else None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Constant, then linear decay to 0:  lr_t = lr * min(1, (T - t) / (decay_fraction * T))."""
    decay_steps = max(1, int(cfg.decay_fraction * cfg.steps))
    return cfg.lr * min(1.0, (cfg.steps - step) / decay_steps)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step (a pure function of seed and step, so resuming is exact)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def sample_batch(train, step: int, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The batch of step ``step``: epoch-wise shuffled indices, then the split's own ``batch`` (flips, partners)."""
    n = len(train)
    epoch, offset = divmod(step * cfg.batch_size, n)
    perm = torch.cat([torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + e))
                      for e in (epoch, epoch + 1)])
    return train.batch(perm[offset:offset + cfg.batch_size], step_generator(cfg.seed, step))


def world() -> tuple[int, int]:
    """(rank, number of processes) of this training: (0, 1) unless ``torchrun`` started it and the process group is
    initialised (``python -m gclib train`` does that)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """This process's share of a step's global batch: every ``world_size``-th image from ``rank`` on (the split a
    DistributedSampler makes of an epoch, made of each step's batch, so the global batch of a step is the same for
    any number of processes)."""
    if world_size == 1:
        return batch
    return {k: v[rank::world_size] if torch.is_tensor(v) and v.dim() > 0 else v for k, v in batch.items()}


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _deferred_stop():
    """While active, SIGINT (Ctrl-C, Kernel > Interrupt) and SIGTERM (a scheduler, ``kill``) only record the signal,
    read between steps, so a step is never cut in half. Handlers can only be installed from the main thread;
    elsewhere the signals act as usual and training resumes from the last periodic checkpoint."""
    hit: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: hit[0] if hit else None
        return
    previous = {s: signal.signal(s, lambda signum, frame: hit.append(signum)) for s in STOP_SIGNALS}
    try:
        yield lambda: hit[0] if hit else None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively: a CUDA GPU with bf16 support, or a CPU with AMX
    tiles (Intel Sapphire Rapids and later), where oneDNN runs them on the matrix unit: there the dense teachers'
    steps get faster and the small separable students' slower (`python -m gclib bench --train` shows which)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx())
    return False


def _set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimiser's moments and hyper-parameters from ``state`` but keep how ``opt`` computes its update
    (``fused``, ``foreach``): ``load_state_dict`` copies those too, so a checkpoint of an unfused optimiser would
    silently turn a fused one back into a loop of small ops (and the other way round)."""
    how = [{key: group[key] for key in ("fused", "foreach") if key in group} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, kept in zip(opt.param_groups, how):
        group.update(kept)


class Trainer:
    """The loop shared by all recipes: resume, step, log, evaluate, checkpoint, stop cleanly.

    ``stage``: the record of the artifact being trained (see :mod:`gclib.stages`); the resumable checkpoint carries
    it, and a checkpoint of another stage is set aside rather than resumed into a mismatch."""

    def __init__(self, nets: dict[str, nn.Module], cfg: TrainConfig, ckpt_path: str | Path,
                 device: str | torch.device = "cpu", stage: dict | None = None):
        self.nets, self.cfg, self.device = nets, cfg, torch.device(device)
        self.ckpt_path = Path(ckpt_path)
        self.stage = stage or {}
        for net in nets.values():
            net.to(self.device)
        self.optimizers = self.build_optimizers()
        self.step, self.history, self.evals = 0, [], []
        # the generator's weight average (cfg.ema_images) and the best held-out evaluation's weights (cfg.select)
        self.average: dict | None = None
        self.best: dict | None = None
        self.memory_format = torch.contiguous_format
        self.rank, self.world_size = world()
        self.parallel: dict[str, nn.Module] = {}   # DistributedDataParallel wrappers, under torchrun only
        self.autocast: torch.dtype | None = None     # the "bf16" speed-up

    def distribute(self) -> "Trainer":
        """Under ``torchrun``: wrap every trained network in DistributedDataParallel, which averages the gradients
        of all processes at each backward pass (each process holding one shard of the step's batch). The plain
        networks stay in ``nets`` (checkpoints keep their keys); forward passes go through :meth:`net`."""
        if self.world_size == 1 or self.parallel:       # one process, or wrapped already (a second fit call)
            return self
        if self.cfg.batch_size % self.world_size:
            raise ValueError(f"the batch of {self.cfg.batch_size} images does not split evenly over "
                             f"{self.world_size} processes: choose data.batch_size a multiple of {self.world_size}")
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        for name, module in self.parallel_modules().items():
            self.parallel[name] = DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False,
                                                          find_unused_parameters=self.unused_parameters(name))
        return self

    def parallel_modules(self) -> dict[str, nn.Module]:
        """The modules whose forward passes train parameters (a recipe may combine networks, see DistillTrainer)."""
        return {k: v for k, v in self.nets.items() if type(v).forward is not nn.Module.forward
                and any(p.requires_grad for p in v.parameters())}

    def unused_parameters(self, name: str) -> bool:
        """Whether some parameters of ``parallel_modules()[name]`` get no gradient at a step (DDP must then look)."""
        return False

    def net(self, name: str) -> nn.Module:
        """The module to call for a forward pass: its DistributedDataParallel wrapper under torchrun, else itself."""
        if name in self.parallel:
            return self.parallel[name]
        return self.nets[name] if name in self.nets else self.parallel_modules()[name]

    def speed_up(self, techniques: tuple[str, ...] | list[str]) -> "Trainer":
        """Apply training speed-ups in place (none changes what is computed, only how; ``python -m gclib bench
        --train`` measures which pay on a machine):

        - ``channels_last``: networks and batches in NHWC, the layout cuDNN and oneDNN prefer for convolutions;
        - ``compile``: ``torch.compile`` each network (Inductor), the first steps compile;
        - ``fused_adam``: Adam's update as one fused kernel per parameter group instead of a loop of small ops;
        - ``bf16``: forward and backward passes under ``torch.autocast`` in bfloat16 (weights, optimiser and losses
          stay float32; bfloat16 has float32's range, so no loss scaling is needed). Pays on GPUs with bf16 units;
        - ``bf16_native``: ``bf16`` where the device computes bfloat16 natively (:func:`native_bf16`: a GPU with bf16
          units, a CPU with AMX tiles), nothing elsewhere, where emulated bfloat16 would be slower than float32.
          Unlike the others it changes the numbers beyond float rounding (8 bits of mantissa in every convolution);
        - ``cudnn_benchmark``: cuDNN times its convolution algorithms on the first batches and keeps the fastest
          (the input size never changes during training). No effect on a CPU.
        """
        unknown = [t for t in techniques if t not in TRAIN_TECHNIQUES]
        if unknown:
            raise ValueError(f"unknown training speed-ups {unknown}; choose from {TRAIN_TECHNIQUES}")
        if "channels_last" in techniques:
            self.memory_format = torch.channels_last
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        if "compile" in techniques:
            for net in self.nets.values():
                if type(net).forward is not nn.Module.forward:  # a ModuleList of mappings has no forward
                    net.compile()
        if "fused_adam" in techniques:
            for name, opt in self.optimizers.items():
                fused = torch.optim.Adam([p for g in opt.param_groups for p in g["params"]],
                                         lr=opt.defaults["lr"], betas=opt.defaults["betas"], fused=True)
                load_optimizer_state(fused, opt.state_dict())
                self.optimizers[name] = fused
        if "bf16" in techniques or ("bf16_native" in techniques and native_bf16(self.device)):
            self.autocast = torch.bfloat16
        if "cudnn_benchmark" in techniques and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return self

    def step_once(self, batch: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, float]:
        """One training step on ``batch`` as the loop runs it: on the device, in the memory format and under the
        autocast the speed-ups chose."""
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.train_step(self.to_device(batch), g)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """The schedule's learning rate of this step, for every optimiser (a recipe may scale it per optimiser)."""
        _set_lr(list(self.optimizers.values()), lr)

    def train_step(self, batch: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, float]:
        raise NotImplementedError

    @property
    def generator(self) -> nn.Module:
        return self.nets["G"]

    def final_weights(self) -> dict[str, dict]:
        """What the finished artifact keeps: every network's weights (recipes with two generators keep A -> B)."""
        return {k: v.state_dict() for k, v in self.nets.items()}

    def generator_weights(self, G: nn.Module) -> dict:
        """``G``'s weights as the artifact stores the generator (a recipe may fold something in, see GauGAN)."""
        return G.state_dict()

    # -- the generator's weight average and the choice of the published weights -----------------------------------
    def average_decay(self) -> float:
        """This step's decay of the average: half-life h images, at most a tenth of the images seen so far, so early
        weights fade fast (StyleGAN2-ADA's ramp-up):  beta = 0.5 ** (batch / min(h, 0.1 * images seen))."""
        seen = self.step * self.cfg.batch_size
        half_life = max(min(self.cfg.ema_images, 0.1 * seen), 1e-8)
        return 0.5 ** (self.cfg.batch_size / half_life)

    def update_average(self) -> None:
        """theta_avg <- beta * theta_avg + (1 - beta) * theta over the generator's parameters; buffers (norm
        statistics, power-iteration vectors) are copied. The average is a state dict, not a second module, so any
        generator (a MUNIT translator made of two networks' parts) is averaged alike."""
        if not self.cfg.ema_images:
            return
        G = self.generator
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in G.state_dict().items()}
            return
        beta = self.average_decay()
        params = dict(G.named_parameters())
        with torch.no_grad():
            for k, v in G.state_dict().items():
                if k in params and v.is_floating_point():
                    self.average[k].lerp_(v, 1 - beta)
                else:
                    self.average[k].copy_(v)

    @contextlib.contextmanager
    def averaged(self):
        """The generator with the average's weights in it for the block (its own weights are put back after); the
        generator itself when no average is kept."""
        G = self.generator
        if self.average is None:
            yield G
            return
        raw = {k: v.detach().clone() for k, v in G.state_dict().items()}
        G.load_state_dict(self.average)
        try:
            yield G
        finally:
            G.load_state_dict(raw)

    def evaluate(self, eval_fn: EvalFn) -> None:
        """Score the generator on held-out: with an average, both the average (``<score>``) and the raw weights
        (``raw_<score>``), so the two can be compared. With ``cfg.select``, keep the weights of the best evaluation
        so far, the average's or the raw ones', whichever scored better: neither wins everywhere (an average can mix
        the phases of an oscillating GAN into muted images, the raw weights can sit on a spike)."""
        with self.averaged() as G:
            scores = dict(eval_fn(G))
            candidates = [("average" if self.average is not None else "last", scores,
                           {k: v.detach().clone() for k, v in self.generator_weights(G).items()})]
        if self.average is not None:
            raw = dict(eval_fn(self.generator))
            scores.update({f"raw_{k}": v for k, v in raw.items()})
            candidates.append(("raw", raw, None))
        self.evals.append({"step": self.step, **scores})
        if not self.cfg.select:
            return
        for kind, kind_scores, weights in candidates:
            value = selection_score(kind_scores, self.cfg.select)
            if value is not None and (self.best is None or value < self.best["score"]):
                if weights is None:
                    weights = {k: v.detach().clone() for k, v in self.generator_weights(self.generator).items()}
                self.best = {"step": self.step, "score": value, "of": kind, "G": weights}

    def published_weights(self) -> dict[str, dict]:
        """The artifact's weights: ``final_weights()`` with the generator replaced by the best held-out evaluation's
        (``cfg.select``) or the average (``cfg.ema_images``); other networks (D, mapping convs) as trained."""
        weights = self.final_weights()
        if self.best is not None:
            weights["G"] = self.best["G"]
        elif self.average is not None:
            with self.averaged() as G:
                weights["G"] = {k: v.detach().clone() for k, v in self.generator_weights(G).items()}
        return weights

    def selected(self) -> dict:
        """Which weights the artifact keeps: ``{"weights": "best"|"average"|"last", "step": .., "score": ..}``."""
        if self.best is not None:
            return {"weights": "best", "of": self.best.get("of", "average"), "step": self.best["step"],
                    "metric": self.cfg.select, "score": self.best["score"], "average": self.average is not None}
        return {"weights": "average" if self.average is not None else "last", "step": self.step}

    # -- checkpointing -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"stage": self.stage, "step": self.step, "history": self.history, "evals": self.evals,
                "nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "average": self.average, "best": self.best}

    def load_state(self, state: dict) -> None:
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        for k, opt in self.optimizers.items():
            load_optimizer_state(opt, state["optimizers"][k])
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        self.best, self.average = state.get("best"), state.get("average")

    def save(self) -> None:
        """Every process calls it (a recipe's state may be gathered from all of them, see CycleGAN's image pools);
        the first alone writes."""
        state = self.state_dict()
        if self.rank == 0:
            save_artifact(self.ckpt_path, state)

    def resume(self) -> bool:
        """Load the last checkpoint if there is one of this stage; set aside one that is unreadable or belongs to
        other settings. Returns whether training resumed."""
        if not self.ckpt_path.exists():
            return False
        try:
            state = load_artifact(self.ckpt_path, self.device)
        except Exception as e:  # a file truncated by a full disk, or not ours
            moved = set_aside(self.ckpt_path, "unreadable")
            print(f"could not read {self.ckpt_path.name} ({type(e).__name__}); set aside as {moved.name}")
            return False
        if state.get("stage", {}).get("key") != self.stage.get("key"):
            moved = set_aside(self.ckpt_path, "stale")
            print(f"{self.ckpt_path.name} was written with other settings; set aside as {moved.name}")
            return False
        self.load_state(state)
        return True

    def _resume_in_turn(self) -> bool:
        """Rank 0 resumes first (and alone sets aside a checkpoint of other settings); then the others read."""
        if self.world_size == 1:
            return self.resume()
        import torch.distributed as dist
        resumed = self.resume() if self.rank == 0 else False
        dist.barrier()
        if self.rank != 0 and self.ckpt_path.exists():
            state = load_artifact(self.ckpt_path, self.device)
            if state.get("stage", {}).get("key") == self.stage.get("key"):
                self.load_state(state)
                resumed = True
        return resumed

    def _agreed(self, signum: int | None) -> int | None:
        """A stop signal seen by any process stops them all after the same step (else the others would wait for it
        forever in their next gradient exchange)."""
        if self.world_size == 1:
            return signum
        import torch.distributed as dist
        on = self.device if self.device.type == "cuda" else None      # NCCL reduces GPU tensors, gloo CPU ones
        flag = torch.tensor([signum or 0], dtype=torch.int64, device=on)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Images to the training device (and memory format); indices and flags stay where they are."""
        return {k: v.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                if k in ("A", "B") else v for k, v in batch.items()}

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self, train, eval_fn: EvalFn | None = None, stop_at: int | None = None, progress: bool = True
            ) -> "Trainer":
        """Train up to ``cfg.steps`` (or ``stop_at``) on the training split ``train``, resuming if a checkpoint
        exists. Ctrl-C or SIGTERM lets the running step finish, saves, then raises ``KeyboardInterrupt``: the next
        ``fit`` continues exactly where this one stopped."""
        if self._resume_in_turn() and progress and self.rank == 0:
            print(f"resumed {self.ckpt_path.name} at step {self.step}")
        self.distribute()
        end = min(self.cfg.steps, stop_at) if stop_at is not None else self.cfg.steps
        bar = progress_bar(range(self.step, end), type(self).__name__, initial=self.step, total=self.cfg.steps,
                          disable=not progress or self.rank != 0)
        try:
            with _deferred_stop() as stopped:
                for step in bar:
                    self.set_lr(lr_at(step, self.cfg))
                    batch = shard(sample_batch(train, step, self.cfg), self.rank, self.world_size)
                    t0 = time.perf_counter()
                    losses = self.step_once(batch, step_generator(self.cfg.seed, step))
                    self.history.append({"step": step, "seconds": time.perf_counter() - t0, **losses})
                    self.step = step + 1
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                    self.update_average()
                    if eval_fn is not None and self.rank == 0 and (self.step % self.cfg.eval_every == 0
                                                                   or self.step == self.cfg.steps):
                        self.evaluate(eval_fn)
                    signum = self._agreed(stopped())  # read once: a signal between two reads must not skip the save
                    if signum or self.step % self.cfg.ckpt_every == 0 or self.step == end:
                        self.save()
                    if signum:
                        name = signal.Signals(signum).name
                        raise KeyboardInterrupt(f"training stopped by {name} after step {self.step}; saved to "
                                                f"{self.ckpt_path}, run again to resume")
        finally:
            bar.close()
        return self
