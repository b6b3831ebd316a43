"""Load-or-train, once for every stage of the pipeline: teacher (01), student (02), supernet (03), sub-network (03/04).

Each stage is described by a :class:`Stage`: its kind, task and seed, its **own settings** (the preset parts it
depends on and its recipe's training config) and the **key of the artifact it starts from**. The key of a stage is a
hash of all of that, and it is part of the artifact's file name (``supernet_facades_s0_3f9a2c1b7e.pt``), so:

- a notebook finds a finished artifact and loads it instead of training (every notebook runs on its own);
- changing search or fine-tuning settings makes new fine-tuning artifacts and never retrains the supernet; an
  exercise that changes a setting trains a new artifact next to the old one and never wipes it, and going back to the
  old settings finds the old artifact again;
- a retrained teacher changes the key of everything downstream, so nothing stale is ever loaded.

The artifact file holds the weights, the stage record (settings and key), the training history and the held-out
evaluations: one file, written atomically. Training resumes from ``<name>.train.pt``; an unreadable or mismatched
file is set aside under a unique name, never overwritten or deleted; a second run training the same artifact in the
same folder is refused with a message (see :mod:`gclib.artifacts`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from .artifacts import artifact_lock, load_artifact, remove_partial_writes, save_artifact, set_aside
from .data import TaskData
from .families import get_family
from .nn.gan import NLayerDiscriminator, init_weights, narrow_discriminator
from .recipes import recipe_for
from .recipes.distill import TEACHERLESS, VARIANTS, TeacherCache, build_mappings, init_mappings_as_selection
from .recipes.once_for_all import elastic_mappings
from .recipes.teacher import CycleGANTrainer, teacher_config
from .recipes.trainer import EvalFn, Trainer, world


@dataclass(frozen=True)
class Stage:
    kind: str                  # "teacher", "student", "supernet", "subnet"
    task: str
    seed: int
    settings: dict             # plain JSON: what this stage's training depends on
    parent: str | None = None  # the key of the artifact this stage starts from
    label: str = ""            # a readable part of the file name (a variant, a config)

    @property
    def key(self) -> str:
        blob = json.dumps({"kind": self.kind, "task": self.task, "seed": self.seed, "settings": self.settings,
                           "parent": self.parent}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def filename(self) -> str:
        parts = [self.kind, self.task] + ([self.label] if self.label else []) + [f"s{self.seed}", self.key]
        return "_".join(parts) + ".pt"

    def record(self) -> dict:
        return {**asdict(self), "key": self.key}


@dataclass
class Artifact:
    """A finished stage as read from disk: ``weights`` (net name -> state_dict), history, evals, its stage record."""

    stage: dict
    path: Path
    weights: dict
    history: list
    evals: list
    trained_now: bool
    shipped: bool = False     # loaded from the model zoo (data/zoo), not from the runs folder
    selected: dict = field(default_factory=dict)   # which generator weights were kept (Trainer.selected)
    test_scores: dict = field(default_factory=dict)  # a zoo record's test scores, {extractor: scores}, where its
                                                     # weights are not shipped (see gclib.zoo)
    heldout_scores: dict = field(default_factory=dict)  # likewise its held-out scores (offline features)

    def kept_scores(self) -> dict:
        """The held-out scores of the weights this artifact keeps: its evaluation at the kept step, of the average
        or the raw weights, whichever were kept (the last evaluation when nothing was selected; {} without any)."""
        if not self.evals:
            return {}
        step = self.selected.get("step", self.evals[-1]["step"])
        e = next((e for e in self.evals if e["step"] == step), self.evals[-1])
        if self.selected.get("of") == "raw":
            return {k[len("raw_"):]: v for k, v in e.items() if k.startswith("raw_")}
        return {k: v for k, v in e.items() if k != "step" and not k.startswith("raw_")}

    @property
    def source(self) -> str:
        """Where the weights came from, in words, for a notebook to print."""
        if self.trained_now:
            return "trained now"
        return f"loaded from the model zoo ({self.path.name})" if self.shipped else f"loaded from {self.path.name}"

    @property
    def key(self) -> str:
        return self.stage["key"]

    @property
    def training_minutes(self) -> float:
        return sum(h["seconds"] for h in self.history) / 60

    @property
    def steps(self) -> int:
        """Training steps taken (a shipped history holds block means, one row per block of steps)."""
        return self.history[-1]["step"] + 1 if self.history else 0


class Trained(NamedTuple):
    """What every stage returns: the trained network (eval mode, on the device) and its artifact."""
    net: nn.Module
    artifact: Artifact


def read_artifact(path: Path, stage: Stage, tidy: bool = True) -> Artifact | None:
    """The finished artifact at ``path`` if it is this stage's; an unreadable or foreign file is set aside (with
    ``tidy``; the other processes of a torchrun leave that to the first)."""
    if not path.exists():
        return None
    try:
        content = load_artifact(path)
    except Exception as e:
        if tidy:
            moved = set_aside(path, "unreadable")
            print(f"could not read {path.name} ({type(e).__name__}: {e}); set aside as {moved.name}")
        return None
    if content.get("stage", {}).get("key") != stage.key:
        if tidy:
            moved = set_aside(path, "stale")
            print(f"{path.name} holds another stage's weights; set aside as {moved.name}")
        return None
    return Artifact(content["stage"], path, content["weights"], content["history"], content["evals"], False,
                    selected=content.get("selected", {}))


def load_or_train(stage: Stage, runs_dir: str | Path, make_trainer: Callable[[Path], Trainer], train,
                  eval_fn: EvalFn | None = None, progress: bool = True, speed_ups: tuple = ()) -> Artifact:
    """The artifact of ``stage`` in ``runs_dir``: loaded if finished, else trained (resuming) and saved.

    ``make_trainer(checkpoint_path)`` builds the stage's trainer (its initial weights from the stage's seed);
    ``train`` is the training split; ``eval_fn`` scores the generator on held-out data during training;
    ``speed_ups``: the preset's training speed-ups (how steps are computed; not part of the key). Under torchrun
    every process trains its shard of each batch; the first alone tidies, locks and writes."""
    path = Path(runs_dir) / stage.filename
    rank, world_size = world()
    found = read_artifact(path, stage) if rank == 0 else None
    if found is None and world_size == 1:
        from . import zoo
        found = zoo.lookup(stage)            # trained once by `python -m gclib zoo build` and shipped
    if world_size > 1:
        found = _all_load_or_all_train(found, path, stage, rank)
    if found is not None:
        return found
    with artifact_lock(path) if rank == 0 else contextlib.nullcontext():
        if world_size == 1:
            found = read_artifact(path, stage)     # finished by another run between our first look and the lock
            if found is not None:
                return found
        if rank == 0:   # halves of files a killed run was writing (checkpoint-sized): ours to clear under the lock
            for p in (path, path.with_suffix(".train.pt")):
                remove_partial_writes(p)
        trainer = make_trainer(path.with_suffix(".train.pt")).speed_up(speed_ups)
        trainer.fit(train, eval_fn, progress=progress)
        weights = trainer.published_weights()
        if rank == 0:
            # how the steps were computed (not part of the key): the same seed gives the same weights on the same
            # machine kind only with the same threads and speed-ups, so the artifact says which it had
            from .zoo import _git_commit
            computed = {"threads": torch.get_num_threads(), "speed_ups": list(speed_ups), "commit": _git_commit(),
                        "autocast": str(trainer.autocast) if trainer.autocast else "", "torch": str(torch.__version__)}
            save_artifact(path, {"stage": stage.record(), "weights": weights, "history": trainer.history,
                                 "evals": trainer.evals, "computed": computed, "selected": trainer.selected()})
    if world_size > 1:
        import torch.distributed as dist
        dist.barrier()                              # the artifact is on disk before any process goes on
    return Artifact(stage.record(), path, weights, trainer.history, trainer.evals, True, selected=trainer.selected())


def _all_load_or_all_train(found: Artifact | None, path: Path, stage: Stage, rank: int) -> Artifact | None:
    """torchrun: the first process's look decides for all (never some loading while others train)."""
    import torch.distributed as dist
    done = torch.tensor([found is not None], dtype=torch.int64,
                        device="cuda" if dist.get_backend() == "nccl" else None)
    dist.broadcast(done, 0)
    if not done.item():
        return None
    dist.barrier()
    return found if rank == 0 else read_artifact(path, stage, tidy=False)


def _seeded(seed: int, build: Callable[[], dict]) -> dict:
    """Initial weights that depend on the seed alone, not on what ran before (the caller's stream is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _common(preset, data: TaskData) -> dict:
    """What every stage depends on: the family and its structure (ResNet: ``n_blocks``), the task's kind, the data
    (and its seed where not 0: the images a notebook of another ``seed`` trains on, so its teacher of model seed 1
    is not the zoo's, trained on seed 0's images; at 0 left out, which keeps the keys of before)."""
    data_seed = getattr(data, "seed", 0)
    return {"family": preset.family, "paired": data.paired, "data": preset.data.training(),
            **({"data_seed": data_seed} if data_seed else {}), **get_family(preset.family).arch(preset)}


def _label(preset, label: str = "") -> str:
    """The readable part of a file name: families other than the first (ResNet) name themselves, so a folder holding
    a GauGAN and a pix2pix teacher of the same task tells them apart (``teacher_facades_spade_s0_<key>.pt``)."""
    return "_".join(p for p in ((preset.family if preset.family != "resnet" else ""), label) if p)


def _weights(cfg, preset):
    """The preset's distillation weights, where it sets them (``student.lambda_recon``, ``student.lambda_distill``;
    a variant without a distillation term keeps none)."""
    if preset.student.lambda_recon:
        cfg.lambda_recon = preset.student.lambda_recon
    if preset.student.lambda_distill and cfg.lambda_distill > 0:
        cfg.lambda_distill = preset.student.lambda_distill
    return cfg


def _loaded(net: nn.Module, weights: dict, device) -> nn.Module:
    net.load_state_dict(weights)
    return net.to(device).eval()


def _d_width(preset) -> dict:
    """The key entry of a distillation stage whose discriminator is narrower than the teacher's (``student.ndf``);
    empty at the teacher's width, so the artifacts of the paper's recipe keep their keys."""
    width = preset.student.ndf or preset.teacher.ndf
    return {"d_width": width} if width != preset.teacher.ndf else {}


def _fresh_d(preset) -> dict:
    """The key entry of a distillation stage whose discriminator starts fresh (``student.teacher_d`` False); empty
    for the paper's start from the teacher's D, so those artifacts keep their keys."""
    return {} if preset.student.teacher_d else {"teacher_d": False}


def _teacher_d(preset, teacher_art) -> dict | None:
    """The weights a distillation stage's D starts from: the teacher's D where ``student.teacher_d``, else None."""
    return teacher_art.weights["D"] if preset.student.teacher_d else None


def student_discriminator(preset, paired: bool, start_from: dict | None = None) -> nn.Module:
    """The discriminator of a distillation stage (student, supernet, sub-network), ``student.ndf`` wide (0: the
    teacher's width, the paper's). ``start_from``: the weights of a trained teacher-width D (the teacher's), which
    a narrower D starts from by keeping its strongest channels (:func:`gclib.nn.gan.narrow_discriminator`)."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, paired)
    D = recipe.discriminator(family, preset, paired)
    if start_from is not None:
        D.load_state_dict(start_from)
    if not _d_width(preset):
        return D
    if not isinstance(D, NLayerDiscriminator):
        raise ValueError(f"student.ndf={preset.student.ndf}: only a PatchGAN (the ResNet family's) can be narrower "
                         f"than the teacher's; the {preset.family} family's discriminator is a {type(D).__name__}; "
                         f"set student.ndf to 0")
    narrow = init_weights(D.with_width(preset.student.ndf))
    return narrow if start_from is None else narrow_discriminator(narrow, D)


# ----------------------------------------------------------------------------------------------------------------
# The four stages
# ----------------------------------------------------------------------------------------------------------------
def teacher(preset, data: TaskData, runs_dir, seed: int = 0, device="cpu", eval_fn: EvalFn | None = None,
            progress: bool = True) -> Trained:
    """Notebook 01 (06 for GauGAN): the teacher of ``data.task`` trained with its family's recipe (ResNet: pix2pix
    when paired, CycleGAN when not; SPADE: GauGAN). The artifact keeps the A -> B generator ``G`` and the
    discriminator ``D`` that judged it."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    cfg = recipe.teacher_config(preset, data.paired, seed)
    stage = teacher_stage(preset, data, seed)

    def make(ckpt: Path) -> Trainer:
        nets = _seeded(seed, lambda: recipe.teacher_nets(family, preset, data.paired))
        return recipe.teacher_trainer(data.paired)(nets, cfg, ckpt, device, stage.record())
    art = load_or_train(stage, runs_dir, make, data.train, eval_fn, progress,
                        preset.speed_ups + preset.teacher.speed_ups)
    if "G" not in art.weights:      # a zoo record of scores alone (another seed's teacher, too big to ship twice)
        return Trained(None, art)
    return Trained(_loaded(family.teacher(preset.teacher.ngf, **family.arch(preset)), art.weights["G"], device), art)


def heldout_scores(trained: Trained, scorer, extractor: str) -> dict:
    """``scorer(trained.net)``; for a stage the zoo ships as its record alone (``trained.net`` is None), the
    held-out scores its record holds (values only), computed by the notebooks' scorer when it was built."""
    if trained.net is not None:
        return scorer(trained.net)
    s = trained.artifact.stage
    if extractor != "offline":
        raise ValueError(f"the {s['kind']} {s['task']} of seed {s['seed']} is shipped as its scores alone, measured "
                         f"with the offline features, not {extractor!r}: run with extractor='offline', or "
                         f"GCLIB_ZOO=0 to train it")
    return {k: v for k, v in trained.artifact.heldout_scores.items() if not k.endswith((" low", " high", " floor"))}


def test_scores(trained: Trained, scorer, extractor: str) -> dict:
    """``scorer(trained.net)``; for a stage the zoo ships as its record alone (``trained.net`` is None: a teacher of a
    later seed, a fine-tuning of notebook 04's), the test scores its record holds, computed by the same scorer when it
    was built (for ``extractor``'s features)."""
    if trained.net is not None:
        return scorer(trained.net)
    recorded = trained.artifact.test_scores.get(extractor)
    if recorded is None:
        s = trained.artifact.stage
        fix = ("set teacher.seeds to (0,), or GCLIB_ZOO=0 to train it (about an hour on one core)"
               if s["kind"] == "teacher" else "set GCLIB_ZOO=0 to train it here")
        raise ValueError(f"the {s['task']} {s['kind']} of seed {s['seed']} ({trained.artifact.path.name}) is shipped as "
                         f"its scores alone, which were measured with the {sorted(trained.artifact.test_scores)} "
                         f"features, not {extractor!r}: {fix}")
    return recorded


def teacher_stage(preset, data, seed: int = 0) -> Stage:
    """The teacher's stage record (``data``: anything with the task's ``task`` name and ``paired``)."""
    cfg = recipe_for(preset.family, data.paired).teacher_config(preset, data.paired, seed)
    return Stage("teacher", data.task, seed, {**_common(preset, data), "teacher": preset.teacher.training(),
                                              "train": cfg.settings()}, label=_label(preset))


def teachers(preset, data: TaskData, runs_dir, seed: int = 0, device="cpu", eval_fn: EvalFn | None = None,
             progress: bool = True) -> dict[int, Trained]:
    """Notebook 01: one teacher per seed offset of ``preset.teacher.seeds`` ({seed: Trained}, the compressed one,
    ``seed + seeds[0]``, first). The others exist to measure the teacher's seed-to-seed spread."""
    return {seed + s: teacher(preset, data, runs_dir, seed + s, device, eval_fn, progress) for s in preset.teacher.seeds}


def student(preset, data: TaskData, teacher: Trained, variant: str, runs_dir, seed: int = 0, device="cpu",
            eval_fn: EvalFn | None = None, cache: TeacherCache | None = None, lambda_distill: float | None = None,
            progress: bool = True) -> Trained:
    """Notebook 02: the mobile student (``preset.student.ngf``) trained as ``variant`` (see ``VARIANTS``).

    - ``alone``: random init, fresh D. ``init``: the teacher's strongest channels, fresh D.
    - ``output``, ``features``: the teacher's channels, and D from the teacher's D where ``student.teacher_d``.
    Unpaired tasks train ``alone`` and ``init`` with CycleGAN (no teacher in the loss). The artifact keeps ``G``, ``D``
    and, for distillation, the mapping convs ``maps``."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    teacher_net, teacher_art = teacher
    stage, cfg = _student_stage(preset, data, variant, teacher_art.key, seed, lambda_distill)
    config, cycle = stage.settings["config"], variant in TEACHERLESS and not data.paired
    use_teacher_d = stage.settings["teacher_d"]

    def build() -> dict:
        G = init_weights(family.student(config, **family.arch(preset)))
        maps = build_mappings(family, G, teacher_net)
        if variant != "alone":
            init_mappings_as_selection(maps, family.init_from_teacher(G, teacher_net))
        if cycle:   # CycleGAN's two discriminators, fresh, student.ndf wide
            nets = recipe.teacher_nets(family, preset, False, lambda: family.student(config, **family.arch(preset)))
            if _d_width(preset):
                nets.update({d: student_discriminator(preset, False) for d in ("D_A", "D_B")})
            return {**nets, "G_A": G}
        D = student_discriminator(preset, data.paired, _teacher_d(preset, teacher_art) if use_teacher_d else None)
        return {"G": G, "D": D, "maps": maps}

    def make(ckpt: Path) -> Trainer:
        nets = _seeded(seed, build)
        if cycle:
            return CycleGANTrainer(nets, cfg, ckpt, device, stage.record())
        return recipe.distill_trainer(nets, teacher_net, cfg, ckpt, device, stage.record(), family, cache)
    art = load_or_train(stage, runs_dir, make, data.train, eval_fn, progress, preset.speed_ups)
    return Trained(_loaded(family.student(config, **family.arch(preset)), art.weights["G"], device), art)


def _student_stage(preset, data, variant: str, teacher_key: str, seed: int = 0,
                   lambda_distill: float | None = None):
    """Notebook 02's student stage (and the training settings it records) without training anything."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown distillation variant {variant!r}; choose one of {VARIANTS}")
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    if variant not in recipe.variants:
        raise ValueError(f"the {preset.family} family's recipe ({recipe.name}) trains the student variants "
                         f"{recipe.variants}, not {variant!r}")
    config = family.uniform(preset.student.ngf)
    if variant in TEACHERLESS and not data.paired:     # CycleGAN's recipe, no teacher in the loss
        cfg = teacher_config(preset, data.paired, seed, steps=preset.student.steps)
    else:
        cfg = _weights(recipe.student_config(preset, preset.student.steps, seed, data.paired, variant), preset)
        if lambda_distill is not None and variant == "features":
            cfg.lambda_distill = lambda_distill
    use_teacher_d = preset.student.teacher_d and variant not in TEACHERLESS
    stage = Stage("student", data.task, seed, {**_common(preset, data), "config": config, "variant": variant,
                                               "teacher_d": use_teacher_d, **_d_width(preset),
                                               "train": cfg.settings()},
                  parent=teacher_key, label=_label(preset, variant))
    return stage, cfg


def student_stage(preset, data, variant: str, teacher_key: str, seed: int = 0,
                  lambda_distill: float | None = None) -> Stage:
    """The key and record of notebook 02's student ``variant`` (what :func:`student` trains or loads)."""
    return _student_stage(preset, data, variant, teacher_key, seed, lambda_distill)[0]


def supernet_comparisons(preset) -> dict[str, object]:
    """Notebook 03's other supernets, {label: preset}: the other sampler's and, where the preset gives entries widths
    of their own (``supernet.entry_choices``), the same supernet with every entry sharing every width."""
    other = "sandwich" if preset.supernet.sampler == "uniform" else "uniform"
    out = {f"{other} sampler": preset.override({"supernet.sampler": other})}
    if preset.supernet.entry_choices:
        out[f"{preset.supernet.sampler} sampler, every entry shared"] = preset.override({"supernet.entry_choices": {}})
    return out


def student_maps(preset, student: Trained, teacher_net: nn.Module) -> nn.ModuleList | None:
    """The trained mapping convs of a distilled student (None for variants without them)."""
    if "maps" not in student.artifact.weights:
        return None
    maps = build_mappings(get_family(preset.family), student.net, teacher_net)
    maps.load_state_dict(student.artifact.weights["maps"])
    return maps.to(next(student.net.parameters()).device)


def supernet(preset, data: TaskData, teacher: Trained, runs_dir, seed: int = 0, device="cpu",
             eval_fn: EvalFn | None = None, cache: TeacherCache | None = None, progress: bool = True) -> Trained:
    """Notebook 03: the once-for-all supernet over ``preset.supernet.space(family, paired)``, distilled from the
    teacher with the paper's recipe (paired: real target, conditional D, hinge; unpaired: the teacher's output as
    target, unconditional D, LSGAN). It starts from the teacher's strongest channels, strongest first (so every
    first-k slice inherits the best it can hold), and D from the teacher's D.

    ``eval_fn`` is applied every ``eval_every`` steps to the largest and the smallest sub-network; the evals hold
    ``fid@largest``, ``kid@smallest``, ... The artifact keeps ``G``, ``maps`` and ``D`` (fine-tuning starts from
    all three)."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    teacher_net, teacher_art = teacher
    space = preset.supernet.space(family, data.paired)
    cfg = _weights(recipe.student_config(preset, preset.supernet.steps, seed, data.paired, "features"), preset)
    stage = supernet_stage(preset, data, teacher_art.key, seed)
    max_width = max(max(c) for c in space.choices)
    if max_width > preset.teacher.ngf:
        raise ValueError(f"supernet widths go up to {max_width} but the teacher is only ngf {preset.teacher.ngf} "
                         f"wide; the widest sub-network must not be wider than the teacher it starts from")
    references = {"largest": space.largest(), "smallest": space.smallest()}

    def eval_references(sup) -> dict:
        out, active = {}, sup.config
        for name, config in references.items():
            out.update({f"{k}@{name}": v for k, v in eval_fn(sup.set_config(config)).items()})
        sup.set_config(active)
        return out

    def build() -> dict:
        G = init_weights(family.supernet(max_width, **family.arch(preset)))
        maps = elastic_mappings(family, G, teacher_net)
        init_mappings_as_selection(maps, family.init_from_teacher(G, teacher_net, by_importance=True))
        return {"G": G, "D": student_discriminator(preset, data.paired, _teacher_d(preset, teacher_art)), "maps": maps}

    def make(ckpt: Path) -> Trainer:
        return recipe.supernet_trainer(_seeded(seed, build), teacher_net, cfg, ckpt, device, stage.record(), family,
                                       cache, space=space, sampler=preset.supernet.sampler)
    art = load_or_train(stage, runs_dir, make, data.train, eval_references if eval_fn else None, progress,
                        preset.speed_ups)
    with torch.random.fork_rng(devices=[]):  # building a network draws its default init: keep the caller's stream
        net = family.supernet(max_width, **family.arch(preset))
    return Trained(_loaded(net, art.weights["G"], device).set_config(references["largest"]), art)


def supernet_stage(preset, data, teacher_key: str, seed: int = 0) -> Stage:
    """The supernet's stage record (``data``: anything with the task's ``task`` name and ``paired``)."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    space = preset.supernet.space(family, data.paired)
    cfg = _weights(recipe.student_config(preset, preset.supernet.steps, seed, data.paired, "features"), preset)
    return Stage("supernet", data.task, seed, {**_common(preset, data), "choices": [list(c) for c in space.choices],
                                               "sampler": preset.supernet.sampler, **_d_width(preset),
                                               **_fresh_d(preset),
                                               "train": cfg.settings()},
                 parent=teacher_key,
                 label=_label(preset, "" if preset.supernet.sampler == "uniform" else preset.supernet.sampler))


def subnet(preset, data: TaskData, teacher: Trained, config: str, runs_dir, steps: int, start: str = "teacher",
           supernet: Trained | None = None, seed: int = 0, device="cpu", eval_fn: EvalFn | None = None,
           cache: TeacherCache | None = None, progress: bool = True) -> Trained:
    """One sub-network ``config`` trained on its own with the paper's distillation recipe, for ``steps`` steps.

    - ``start="teacher"``: stand-alone training (notebook 03's ranking check): like notebook 02's student (c), it
      starts from the teacher's strongest channels and D, and never sees the supernet.
    - ``start="supernet"``: fine-tuning (notebook 04): weights, mapping convs and D start from ``supernet``."""
    if start not in ("teacher", "supernet"):
        raise ValueError(f"start must be 'teacher' or 'supernet', not {start!r}")
    if start == "supernet" and supernet is None:
        raise ValueError("start='supernet' needs supernet=stages.supernet(...), the supernet to fine-tune from")
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    teacher_net, teacher_art = teacher
    config = "_".join(map(str, family.parse(config)))
    cfg = _weights(recipe.student_config(preset, steps, seed, data.paired, "features"), preset)
    stage = subnet_stage(preset, data, config, steps, start,
                         supernet.artifact.key if start == "supernet" else teacher_art.key, seed)

    def build() -> dict:
        # the teacher's D (narrowed to student.ndf), or one as wide as the supernet's, which is loaded below
        D = student_discriminator(preset, data.paired, _teacher_d(preset, teacher_art) if start == "teacher" else None)
        if start == "teacher":
            G = init_weights(family.student(config, **family.arch(preset)))
            maps = build_mappings(family, G, teacher_net)
            init_mappings_as_selection(maps, family.init_from_teacher(G, teacher_net))
        else:
            sup_net, sup_art = supernet
            G = family.extract(sup_net, config).cpu()
            maps = build_mappings(family, G, teacher_net)
            shared = sup_art.weights["maps"]
            with torch.no_grad():  # the supernet's mappings sliced to this sub-network's widths
                for i, m in enumerate(maps):
                    m.weight.copy_(shared[f"{i}.weight"][:, :m.in_channels])
                    m.bias.copy_(shared[f"{i}.bias"])
            D.load_state_dict(sup_art.weights["D"])
        return {"G": G, "D": D, "maps": maps}

    def make(ckpt: Path) -> Trainer:
        return recipe.distill_trainer(_seeded(seed, build), teacher_net, cfg, ckpt, device, stage.record(), family,
                                      cache)
    art = load_or_train(stage, runs_dir, make, data.train, eval_fn, progress, preset.speed_ups)
    if "G" not in art.weights:      # a zoo record of scores alone (03's stand-alone references, 04's later seeds)
        return Trained(None, art)
    with torch.random.fork_rng(devices=[]):
        net = family.student(config, **family.arch(preset))
    return Trained(_loaded(net, art.weights["G"], device), art)


def subnet_stage(preset, data, config: str, steps: int, start: str, parent_key: str, seed: int = 0) -> Stage:
    """A sub-network's stage record (``parent_key``: the teacher's key for ``start="teacher"``, else the
    supernet's)."""
    family, recipe = get_family(preset.family), recipe_for(preset.family, data.paired)
    config = "_".join(map(str, family.parse(config)))
    cfg = _weights(recipe.student_config(preset, steps, seed, data.paired, "features"), preset)
    return Stage("subnet", data.task, seed, {**_common(preset, data), "config": config, "start": start,
                                             **_d_width(preset), **_fresh_d(preset), "train": cfg.settings()},
                 parent=parent_key, label=_label(preset, f"{config}_{start}"))


def standalone_configs(preset, space, macs_of, seed: int = 0) -> list[str]:
    """Notebook 03's rank check: ``supernet.rank_configs`` sub-networks spread evenly over the MAC range of 200
    random draws (``seed + 2``; ties in MACs broken by name), cheapest first."""
    g = torch.Generator().manual_seed(seed + 2)
    pool = sorted({space.sample(g) for _ in range(200)}, key=lambda c: (macs_of(c), c))
    return [pool[int(round(q))] for q in np.linspace(0, len(pool) - 1, preset.supernet.rank_configs)]
