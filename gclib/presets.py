"""Presets: the scale of every stage, chosen by the ``preset`` parameter of every notebook.

- ``smoke``:  the whole suite in minutes on 2 CPU cores (CI, nbval). Numbers are meaningless, only the plumbing runs.
- ``laptop``: 2 CPU cores at 32x32, big enough to show the paper's claims in miniature.
- ``gpu``:    the embedded tasks at the paper's 256x256 on one GPU (bf16, channels_last), about half an hour.
- ``paper``:  the paper's hyper-parameters at 256x256 on real datasets; for a GPU.

A preset is made of one small part per pipeline stage (data, optimiser, teacher, student, supernet, search,
profiling). A stage's artifact is keyed by the parts it depends on (see :mod:`gclib.stages`), so changing the search
never invalidates the supernet, and changing the supernet never invalidates the teacher. Override any field with its
dotted name: ``get_preset("laptop", {"teacher.steps": 200, "search.population": 10})``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# The generated tasks and their kind (their data: gclib.data.embedded). Here, in a module without PyTorch, so the
# notebook runner (which names tasks in its summaries) does not load PyTorch for the whole run.
EMBEDDED_TASKS = {"facades": "paired", "stripes": "unpaired", "coats": "unpaired"}


@dataclass(frozen=True)
class DataPart:
    image_size: int            # square images, pixels (a multiple of 4: the generators down-sample twice)
    n_train: int               # embedded dataset sizes per split
    n_heldout: int             # the search's validation split (notebook 04); never the test split
    n_test: int
    batch_size: int
    dataset_root: str = ""     # a real dataset folder (empty: the embedded task)
    load_size: int = 0         # real data: resize to load_size, then random-crop image_size (0: no crop)

    def training(self) -> dict:
        """The fields a trained network depends on (evaluation split sizes are not among them)."""
        return {k: v for k, v in asdict(self).items() if k not in ("n_heldout", "n_test")}


@dataclass(frozen=True)
class OptimPart:
    lr: float = 2e-4
    beta1: float = 0.5
    decay_fraction: float = 0.5  # last fraction of steps over which the learning rate decays linearly to 0
    # Model selection, a departure from the official code (which keeps the last step's weights): evaluations and
    # artifacts use an exponential moving average of the generator's weights with this half-life in training images
    # (0: none), and keep the weights of the best held-out evaluation of the score ``select`` ("": the last step's).
    ema_images: int = 0
    select: str = ""


@dataclass(frozen=True)
class TeacherPart:
    ngf: int                   # width (the paper: 64)
    n_blocks: int              # residual blocks (the paper: 9); students and supernets have as many
    ndf: int                   # discriminator width
    steps: int
    # The PatchGAN's normalisation: "instance" (the paper's), or "none". At 32x32 its last normalised maps are 4x4
    # and 3x3, and instance norm over 9 values erases what D should see (how much noise, how bright a sky): the
    # laptop CycleGAN teacher then learns to paint speckle. "none" keeps the absolute activations.
    d_norm: str = "instance"
    batch_size: int = 0        # images per teacher step; 0: data.batch_size (official CycleGAN: 1)
    # notebook 01 trains one teacher per seed offset: the first is the teacher every later notebook compresses, the
    # others measure the teacher's own seed-to-seed spread (what "at teacher quality" must be read against)
    seeds: tuple = (0,)
    # speed-ups for the teacher's steps only, on top of the preset's speed_ups (names from SPEED_UPS): the big teacher
    # gains from bfloat16 where a CPU has AMX, the small students lose (`python -m gclib bench --train` shows both)
    speed_ups: tuple = ()

    def training(self) -> dict:
        """The fields one trained teacher depends on (which other seeds are trained beside it, and how its steps are
        computed, are not among them)."""
        return {k: v for k, v in asdict(self).items() if k not in ("seeds", "speed_ups")}


@dataclass(frozen=True)
class StudentPart:
    ngf: int = 32              # mobile student width (ngf 32 costs 4.93 G MACs at 256x256, 11.5x less)
    steps: int = 500
    seeds: tuple = (0,)        # the experiment of notebook 02 is repeated for each seed (offsets to the seed)
    # the distillation weights of students, supernets and fine-tuning; 0: the recipe's (paired: recon 100,
    # distill 1; unpaired: recon 10, distill 0.01). The official map2sat uses the unpaired ones on a paired task.
    lambda_recon: float = 0.0
    lambda_distill: float = 0.0
    # the discriminator width of every distillation stage (students, supernets, stand-alone and fine-tuned
    # sub-networks); 0: the teacher's (teacher.ndf), as in the paper, whose student D starts from the teacher's.
    # Narrower, it starts from the teacher's D's strongest channels, as the student starts from the teacher's
    # (ResNet family only). At 32x32 the teacher's PatchGAN is about half of a small student's training step.
    ndf: int = 0
    # whether that discriminator starts from the teacher's (the paper's) or fresh: a teacher's D trained long against
    # its teacher can beat a small student from the first steps and leave it little to learn from
    teacher_d: bool = True


@dataclass(frozen=True)
class SupernetPart:
    choices: tuple = (16, 24, 32, 40, 48)            # widths of every config entry, paired tasks
    unpaired_choices: tuple = (16, 24, 32, 40, 48)   # ... unpaired tasks (paper: Fast CycleGAN's set)
    steps: int = 1500
    rank_configs: int = 5      # sub-networks trained stand-alone to check the supernet's ranking (notebook 03)
    standalone_steps: int = 250
    # each of them is trained once per seed offset; with two or more, notebook 03 ranks against the mean over seeds
    # and shows how well two seeds rank each other: the most a supernet's ranking can be asked to reach
    standalone_seeds: tuple = (0,)
    # which sub-network each step trains: "uniform" draws every entry independently (Fast GAN Compression);
    # "sandwich" cycles largest, smallest, random, random (Once-for-All's rule, one sub-network per step)
    sampler: str = "uniform"
    # widths for single config entries, {entry name: widths}, replacing the shared ones for that entry (e.g.
    # {"up2": (8,)}: every sub-network keeps 8 channels in its last up-sampling). Empty: every entry takes them all.
    # Notebook 03's one-entry probe shows when a layer's weights cannot be shared between widths.
    entry_choices: dict = field(default_factory=dict)

    def choices_for(self, paired: bool) -> tuple:
        return tuple(sorted(self.choices if paired else self.unpaired_choices))

    def space(self, family, paired: bool):
        """The family's config space for a paired or unpaired task, with ``entry_choices`` applied; an unknown entry
        name is refused with the family's entry names."""
        unknown = sorted(set(self.entry_choices) - set(family.entries))
        if unknown:
            raise ValueError(f"supernet.entry_choices names {unknown}, which are not entries of the {family.name} "
                             f"config; its entries are {list(family.entries)}")
        shared = self.choices_for(paired)
        return family.space([tuple(self.entry_choices.get(name, shared)) for name in family.entries])


@dataclass(frozen=True)
class SearchPart:
    budget_widths: tuple = (24, 32, 40)  # budgets: the MACs of the uniform sub-networks of these widths
    budget_gmacs: tuple = ()   # absolute budgets in G MACs at data.image_size; when set they replace budget_widths
    # the compression frontier's budgets (uniform widths), searched and fine-tuned by `zoo build --stages frontier`
    # and read by notebook 04; (): the search's own budgets
    frontier_widths: tuple = ()
    population: int = 20
    generations: int = 5
    parent_fraction: float = 0.25
    mutation_prob: float = 0.2
    finetune_steps: int = 300  # distillation steps for the searched winner (and its uniform rival)
    # the frontier's fine-tuning steps (0: finetune_steps); the official recipe fine-tunes as long as the teacher trained
    frontier_finetune_steps: int = 0
    # children per generation (0, 0: the population refilled half by mutation, half by crossover; the official
    # search keeps 25 parents and adds 50 mutated and 50 crossed-over children)
    mutation_children: int = 0
    crossover_children: int = 0
    first_weights: tuple = ()  # how likely each width (in choice order) is in the first generation; (): uniform
    # what notebook 04's search ranks sub-networks by, on the held-out split with the shared weights (lower is better):
    # "fid", "kid", or on paired tasks a distance to the target, "l1" or "perceptual". A search can only be as good as
    # the supernet's ranking on its metric: notebook 03 measures that ranking for every metric.
    metric: str = "fid"


@dataclass(frozen=True)
class ProfilingPart:
    resolutions: tuple = (64, 128, 256)   # notebook 05's latency grid; the last is the detailed one
    batches: tuple = (1, 4)
    repeats: int = 10          # timed runs per measurement, after warm-up
    random_configs: int = 24   # random sub-networks timed for the MACs-vs-latency ranking


@dataclass(frozen=True)
class SpadePart:
    """The SPADE (GauGAN) family's structure besides its widths (``preset.family == "spade"``, notebook 06)."""
    label_nc: int = 0          # label map channels (cityscapes: 35 classes + 1 instance edge); 0: the embedded facades'
    n_up: int = 0              # x2 upsamplings after the label map's shrunk grid (cityscapes: 6, 'more'); 0: up to 5 that leave a
                               # grid of at least 4x4 (3 at 32x32, 5 from 128 on): the mobile SPADE's InstanceNorm
                               # needs more than one value per channel
    vgg_weights: str = ""      # torchvision's vgg19-dcbb9e9d.pth for GauGAN's VGG perceptual loss (checked, never
                               # downloaded); empty: the offline feature network


SAMPLERS = ("uniform", "sandwich")   # supernet.sampler
SEARCH_METRICS = ("fid", "kid", "l1", "perceptual")   # search.metric: the lower-is-better scores of a split scorer
SELECT_METRICS = ("", "fid", "kid", "l1", "perceptual")   # optim.select: "" or a lower-is-better held-out score
D_NORMS = ("instance", "none")   # the discriminator normalisations a preset may choose (teacher.d_norm)
# Training speed-ups a preset may apply to every stage (see Trainer.speed_up; `python -m gclib bench --train`
# measures which pay on a machine).
SPEED_UPS = ("channels_last", "compile", "fused_adam", "bf16", "bf16_native", "cudnn_benchmark")

TOP_FIELDS = ("eval_every", "ckpt_every", "family", "speed_ups")   # the preset fields outside any part

PARTS = {"data": DataPart, "optim": OptimPart, "teacher": TeacherPart, "student": StudentPart,
         "supernet": SupernetPart, "search": SearchPart, "profiling": ProfilingPart, "spade": SpadePart}


@dataclass(frozen=True)
class Preset:
    name: str
    data: DataPart
    teacher: TeacherPart
    optim: OptimPart = field(default_factory=OptimPart)
    student: StudentPart = field(default_factory=StudentPart)
    supernet: SupernetPart = field(default_factory=SupernetPart)
    search: SearchPart = field(default_factory=SearchPart)
    profiling: ProfilingPart = field(default_factory=ProfilingPart)
    spade: SpadePart = field(default_factory=SpadePart)
    family: str = "resnet"
    eval_every: int = 100      # steps between held-out evaluations during training (not part of any key)
    ckpt_every: int = 100      # steps between resumable checkpoints (not part of any key)
    # how every training step is computed, not what: names from SPEED_UPS (not part of any key, so turning one on
    # or off neither retrains nor invalidates an artifact; results agree to float rounding)
    speed_ups: tuple = ()
    # per-task changes, {task: {'part.field': value}}, applied by for_task (e.g. the unpaired teacher costs six
    # generator passes per step, so the laptop preset gives it a smaller batch)
    tasks: dict = field(default_factory=dict)
    # per-family changes, {family: {'part.field': value}}, applied when ``family`` is switched to one of them
    # (``override({"family": "spade"})``): each family compresses its own teacher at its own scale
    families: dict = field(default_factory=dict)

    def __post_init__(self):
        validate(self)
        for task, changes in self.tasks.items():  # each task's variant must be a valid preset too
            try:
                replace(self, tasks={}, families={}).override(changes)
            except ValueError as e:
                raise ValueError(f"preset {self.name!r}, changes for task {task!r}: {e}") from None
        # a family's changes are checked when the family is switched to (override), not here: a user's change to
        # the ResNet settings (narrower supernet.choices, say) must not be refused for the GauGAN settings it
        # never uses. tests/test_project.py switches every shipped preset to every family it has changes for.

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    def part(self, name: str) -> dict:
        """One part as plain JSON values (tuples become lists): what a stage's key is made of."""
        return _plain(asdict(getattr(self, name)))

    def for_task(self, task: str | None) -> "Preset":
        """This preset with its changes for ``task`` applied (itself when there are none)."""
        return self.override(self.tasks[task]) if task in self.tasks else self

    def override(self, changes: dict[str, Any]) -> "Preset":
        """A copy with ``{'part.field': value}`` (or top-level ``'eval_every'``) replaced; unknown names are refused
        with the list of known ones. Switching ``family`` to one the preset has changes for applies those first."""
        family = changes.get("family")
        if family and family != self.family and family in self.families:
            try:
                switched = replace(self, family=family)._override(self.families[family])
            except ValueError as e:
                raise ValueError(f"preset {self.name!r}, changes for family {family!r}: {e}") from None
            return switched._override({k: v for k, v in changes.items() if k != "family"})
        return self._override(changes)

    def _override(self, changes: dict[str, Any]) -> "Preset":
        parts: dict[str, dict] = {}
        top: dict[str, Any] = {}
        for dotted, value in changes.items():
            part, _, name = dotted.partition(".")
            if not name:
                if part not in TOP_FIELDS:
                    raise ValueError(f"unknown preset field {dotted!r}; fields are named 'part.field' with part one "
                                     f"of {sorted(PARTS)} (or {', '.join(TOP_FIELDS)})")
                top[part] = tuple(value) if isinstance(value, list) else value
                continue
            if part not in PARTS:
                raise ValueError(f"unknown preset part {part!r} in {dotted!r}; parts: {sorted(PARTS)}")
            known = [f.name for f in fields(PARTS[part])]
            if name not in known:
                raise ValueError(f"unknown preset field {dotted!r}; {part} has {known}")
            parts.setdefault(part, {})[name] = tuple(value) if isinstance(value, list) else value
        new = {p: replace(getattr(self, p), **kv) for p, kv in parts.items()}
        return replace(self, **new, **top)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _fail(preset: Preset, name: str, value, need: str):
    raise ValueError(f"preset {preset.name!r}: {name} must be {need}, got {value!r}")


def validate(p: Preset) -> None:
    """Check every field a user may set; the error names the field, its value and what it must be."""
    d, t = p.data, p.teacher
    for part in PARTS:   # NaN and infinity slip through every comparison below: refuse them first, by name
        for f in fields(PARTS[part]):
            value = getattr(getattr(p, part), f.name)
            if isinstance(f.default, tuple) and not isinstance(value, tuple):
                _fail(p, f"{part}.{f.name}", value, f"a list of values, e.g. {list(f.default) or [1]}")
            if isinstance(f.default, bool) and not isinstance(value, bool):   # "False" would read as true
                _fail(p, f"{part}.{f.name}", value, "true or false (a boolean, not text)")
            values = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                _fail(p, f"{part}.{f.name}", value, "finite (not NaN or infinite)")
    if not 0 <= p.optim.beta1 < 1:
        _fail(p, "optim.beta1", p.optim.beta1, "in [0, 1) (Adam's first-moment decay; the paper's 0.5)")
    positive = {"data.image_size": d.image_size, "data.batch_size": d.batch_size, "teacher.ngf": t.ngf,
                "teacher.n_blocks": t.n_blocks, "teacher.ndf": t.ndf, "student.ngf": p.student.ngf,
                "eval_every": p.eval_every, "ckpt_every": p.ckpt_every, "search.population": p.search.population,
                "profiling.repeats": p.profiling.repeats}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            _fail(p, name, value, "a positive integer")
    for name, value in (("speed_ups", p.speed_ups), ("teacher.speed_ups", t.speed_ups)):
        if not isinstance(value, tuple) or any(s not in SPEED_UPS for s in value):
            _fail(p, name, value, f"a tuple of names from {SPEED_UPS}")
    if p.supernet.sampler not in SAMPLERS:
        _fail(p, "supernet.sampler", p.supernet.sampler, f"one of {SAMPLERS}")
    if p.search.metric not in SEARCH_METRICS:
        _fail(p, "search.metric", p.search.metric, f"one of {SEARCH_METRICS} (lower is better; l1 and perceptual "
                                                   f"need a paired task)")
    if p.optim.select not in SELECT_METRICS:
        _fail(p, "optim.select", p.optim.select, f"one of {SELECT_METRICS} (a held-out score, lower is better; \"\": "
                                                 f"keep the last step's weights)")
    if not isinstance(p.optim.ema_images, int) or p.optim.ema_images < 0:
        _fail(p, "optim.ema_images", p.optim.ema_images, "a non-negative integer (0: no weight average)")
    if t.d_norm not in D_NORMS:
        _fail(p, "teacher.d_norm", t.d_norm, f"one of {D_NORMS}")
    non_negative = {"teacher.batch_size": t.batch_size, "data.n_train": d.n_train, "data.n_heldout": d.n_heldout, "data.n_test": d.n_test,
                    "data.load_size": d.load_size, "teacher.steps": t.steps, "student.steps": p.student.steps,
                    "supernet.steps": p.supernet.steps, "supernet.rank_configs": p.supernet.rank_configs,
                    "supernet.standalone_steps": p.supernet.standalone_steps,
                    "search.generations": p.search.generations, "search.finetune_steps": p.search.finetune_steps,
                    "search.frontier_finetune_steps": p.search.frontier_finetune_steps,
                    "profiling.random_configs": p.profiling.random_configs, "spade.label_nc": p.spade.label_nc,
                    "spade.n_up": p.spade.n_up}
    for name, value in non_negative.items():
        if not isinstance(value, int) or value < 0:
            _fail(p, name, value, "a non-negative integer")
    if d.image_size % 4:
        _fail(p, "data.image_size", d.image_size, "a multiple of 4 (the generators down-sample twice by 2)")
    if d.image_size < 32:
        _fail(p, "data.image_size", d.image_size, "at least 32 (the 70x70 PatchGAN halves an image three times and "
                                                 "normalises what is left: below 32x32 that is a single value)")
    if d.load_size and d.load_size < d.image_size:
        _fail(p, "data.load_size", d.load_size, f"0 or at least data.image_size ({d.image_size}), the crop size")
    if not 0 < p.optim.lr:
        _fail(p, "optim.lr", p.optim.lr, "positive")
    if not 0 <= p.optim.decay_fraction <= 1:
        _fail(p, "optim.decay_fraction", p.optim.decay_fraction, "between 0 and 1")
    for name, seeds in (("teacher.seeds", t.seeds), ("student.seeds", p.student.seeds),
                        ("supernet.standalone_seeds", p.supernet.standalone_seeds)):
        if not isinstance(seeds, tuple) or not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
            _fail(p, name, seeds, "a non-empty tuple of non-negative integers")
    for name in ("choices", "unpaired_choices"):
        choices = getattr(p.supernet, name)
        if not choices or any(not isinstance(c, int) or c < 1 for c in choices):
            _fail(p, f"supernet.{name}", choices, "a non-empty tuple of positive widths")
        if max(choices) > t.ngf:
            _fail(p, f"supernet.{name}", choices, f"at most teacher.ngf ({t.ngf}) wide: the supernet starts from "
                                                  f"the teacher's channels")
        for field in ("budget_widths", "frontier_widths"):
            if not set(getattr(p.search, field)) <= set(choices):
                _fail(p, f"search.{field}", getattr(p.search, field), f"widths in supernet.{name} {choices}")
    entry = p.supernet.entry_choices
    if not isinstance(entry, dict) or any(
            not isinstance(k, str) or not isinstance(v, (tuple, list)) or not v
            or any(not isinstance(w, int) or not 1 <= w <= t.ngf for w in v) for k, v in entry.items()):
        _fail(p, "supernet.entry_choices", entry, f"a dict of entry names to non-empty lists of widths from 1 to "
                                                  f"teacher.ngf ({t.ngf}), e.g. {{'up2': [8]}}")
    if not 0 < p.search.parent_fraction < 1:
        _fail(p, "search.parent_fraction", p.search.parent_fraction, "between 0 and 1")
    for name, value in (("search.mutation_children", p.search.mutation_children),
                        ("search.crossover_children", p.search.crossover_children)):
        if not isinstance(value, int) or value < 0:
            _fail(p, name, value, "a non-negative integer")
    if any(not isinstance(g, (int, float)) or g <= 0 for g in p.search.budget_gmacs):
        _fail(p, "search.budget_gmacs", p.search.budget_gmacs, "positive numbers of G MACs")
    if p.search.first_weights and (any(w < 0 for w in p.search.first_weights) or not sum(p.search.first_weights)):
        _fail(p, "search.first_weights", p.search.first_weights, "non-negative weights, not all 0")
    if not isinstance(p.student.ndf, int) or not 0 <= p.student.ndf <= t.ndf:
        _fail(p, "student.ndf", p.student.ndf, f"0 (the teacher's discriminator width) or a width from 1 to "
                                               f"teacher.ndf ({t.ndf}): a student's D starts from the teacher's")
    if p.student.lambda_recon < 0 or p.student.lambda_distill < 0:
        _fail(p, "student.lambda_recon/lambda_distill", (p.student.lambda_recon, p.student.lambda_distill),
              "non-negative (0: the recipe's)")
    if not 0 <= p.search.mutation_prob <= 1:
        _fail(p, "search.mutation_prob", p.search.mutation_prob, "between 0 and 1")
    if p.spade.n_up > 6:
        _fail(p, "spade.n_up", p.spade.n_up, "at most 6 (SPADE's 'more'; 0: as many as the image size allows, up to 5)")
    if not p.profiling.resolutions or any(r < 8 or r % 4 for r in p.profiling.resolutions):
        _fail(p, "profiling.resolutions", p.profiling.resolutions, "multiples of 4, at least 8")


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", eval_every=15, ckpt_every=10,
        data=DataPart(image_size=32, n_train=64, n_heldout=32, n_test=32, batch_size=4),
        optim=OptimPart(ema_images=32, select="fid"),
        teacher=TeacherPart(ngf=16, n_blocks=6, ndf=16, steps=30),
        student=StudentPart(ngf=8, steps=20),
        supernet=SupernetPart(choices=(4, 6, 8), unpaired_choices=(4, 6, 8), steps=20, rank_configs=3,
                              standalone_steps=10),
        search=SearchPart(budget_widths=(6,), population=6, generations=2, finetune_steps=10),
        profiling=ProfilingPart(resolutions=(32, 64), batches=(1, 2), repeats=3, random_configs=6),
        # as the laptop preset's tasks: facades searches by the perceptual distance and distils against half the
        # teacher's discriminator, stripes pins up2 and trains two stand-alone seeds (the plumbing of all is checked)
        tasks={"facades": {"search.metric": "perceptual", "student.ndf": 8},
               "stripes": {"supernet.entry_choices": {"up2": (6,)}, "supernet.standalone_seeds": (0, 1)}},
        families={"spade": {"teacher.ngf": 8, "teacher.ndf": 16, "teacher.steps": 20, "student.ngf": 4,
                            "student.ndf": 0, "supernet.choices": (4, 6, 8), "supernet.steps": 20,
                            "search.budget_widths": (6,)},
                  "munit": {"teacher.ngf": 8, "teacher.ndf": 16, "teacher.steps": 20, "student.ngf": 4,
                            "student.ndf": 0, "supernet.choices": (4, 6, 8), "supernet.unpaired_choices": (4, 6, 8),
                            "supernet.steps": 20, "search.budget_widths": (6,)}}),
    "laptop": Preset(
        # Both tasks at 32x32: 4x cheaper steps than 64x64, and the MAC ratios the claims are about do not depend on
        # the resolution. Fused Adam everywhere; channels_last for the teachers only (it slowed the small separable
        # networks on the CPU measured). Trials behind every setting: docs/laptop-preset-trials.md.
        name="laptop", eval_every=250, ckpt_every=50, speed_ups=("fused_adam",),
        data=DataPart(image_size=32, n_train=800, n_heldout=500, n_test=500, batch_size=8),
        # a weight average and the best held-out FID's weights: a GAN's last step can sit on a spike
        optim=OptimPart(ema_images=4000, select="fid"),
        # the paper's over-parameterised teacher (a half-width one left nothing to remove); trained once, shipped
        teacher=TeacherPart(ngf=64, n_blocks=9, ndf=64, steps=5000, seeds=(0, 1),
                            speed_ups=("channels_last", "bf16_native")),
        # 20 channels: 27x fewer MACs than the teacher, notebook 04's main budget; fewer steps lost claims
        student=StudentPart(ngf=20, steps=1000, seeds=(0, 1)),
        # sandwich: its shared weights ranked sub-networks like stand-alone training on facades, uniform's did not
        supernet=SupernetPart(choices=(16, 20, 24, 32, 40, 48), unpaired_choices=(16, 20, 24, 32, 40, 48),
                              steps=3000, rank_configs=10, standalone_steps=1000, sampler="sandwich"),
        # the frontier's budgets: 5x to 40x fewer MACs than the teacher (the paper's pix2pix 12x sits at width 32)
        search=SearchPart(budget_widths=(16, 20, 24), finetune_steps=1000, frontier_widths=(48, 32, 24, 20, 16)),
        profiling=ProfilingPart(repeats=5),
        # facades: search by the metric its supernet ranks by; distil against half of D (as good, half the time).
        # stripes: a half-width CycleGAN teacher (the paper's is 40 min a seed) trained past its plateau (still falling
        # at 5000 steps), a D without instance norm at 32x32, widths down to 6 so the search has room under the main
        # budget (8), up2 pinned (its filters cannot be shared);
        # budgets 4x to 27x (the paper's CycleGAN 21x lies between widths 12 and 8; the narrowest network is 37x)
        tasks={"facades": {"search.metric": "perceptual", "student.ndf": 32},
               "stripes": {"teacher.ngf": 32, "teacher.n_blocks": 6, "teacher.steps": 12000, "teacher.d_norm": "none",
                           "data.batch_size": 4, "student.ngf": 8, "supernet.choices": (6, 8, 12, 16, 24, 32),
                           "supernet.unpaired_choices": (6, 8, 12, 16, 24, 32), "supernet.entry_choices": {"up2": (8,)},
                           "supernet.sampler": "uniform",
                           "supernet.standalone_seeds": (0, 1), "search.budget_widths": (8, 12, 16),
                           "search.frontier_widths": (24, 16, 12, 8),
                           # a fresh D in every distillation stage: the teacher's left students far worse (see docs/)
                           "student.teacher_d": False}},
        # GauGAN and MUNIT at a quarter of the paper's width, to fit notebooks 06 and 07 in about 15 minutes (the
        # GauGAN teacher is trained once, in the zoo); MUNIT in batches of one image (batches of 8 lost the style)
        families={"spade": {"teacher.ngf": 16, "teacher.ndf": 32, "teacher.steps": 6000, "teacher.seeds": (0,),
                            "student.ngf": 6, "student.ndf": 0, "supernet.choices": (4, 6, 8, 12, 16),
                            "supernet.unpaired_choices": (4, 6, 8, 12, 16), "supernet.steps": 1000,
                            "search.budget_widths": (6, 8), "search.population": 10, "search.generations": 3,
                            "search.finetune_steps": 250, "supernet.sampler": "uniform", "teacher.speed_ups": (),
                            "speed_ups": ("channels_last", "fused_adam"),
                            # 3x to 21x (the paper: 9x); fine-tuned as in notebook 06 until its supernet trains longer
                            "search.frontier_widths": (12, 8, 6, 4), "search.frontier_finetune_steps": 0,
                            "student.teacher_d": False},
                  "munit": {"teacher.ngf": 16, "teacher.ndf": 32, "teacher.steps": 8000, "teacher.seeds": (0,),
                            "teacher.d_norm": "none", "data.batch_size": 1, "optim.lr": 1e-4, "student.ngf": 6,
                            "student.ndf": 0,
                            "supernet.choices": (3, 4, 6, 8, 12, 16), "supernet.unpaired_choices": (3, 4, 6, 8, 12, 16),
                            "supernet.steps": 1000, "search.budget_widths": (6, 8), "search.population": 10,
                            "search.generations": 3, "search.finetune_steps": 250, "supernet.sampler": "uniform",
                            "teacher.speed_ups": (), "speed_ups": ("channels_last", "fused_adam"),
                            # 10x to 35x (the paper: 29x)
                            "search.frontier_widths": (8, 6, 4, 3), "search.frontier_finetune_steps": 0,
                            "student.teacher_d": False}}),
    "gpu": Preset(
        # The embedded tasks at the paper's 256x256 on one GPU (a course lab): the paper's teacher for both tasks,
        # the instance-norm PatchGAN (its last maps are 31x31 here), bf16 autocast, channels_last and cuDNN's
        # algorithm search. Target: the whole suite within 30 minutes on an H100-class card and 16 GB of GPU memory
        # (the teacher cache is skipped at this size: the teacher runs at every distillation step).
        name="gpu", eval_every=500, ckpt_every=500,
        speed_ups=("channels_last", "fused_adam", "bf16", "cudnn_benchmark"),
        data=DataPart(image_size=256, n_train=800, n_heldout=500, n_test=500, batch_size=16),
        teacher=TeacherPart(ngf=64, n_blocks=9, ndf=64, steps=2000, seeds=(0, 1)),
        student=StudentPart(ngf=20, steps=2000, seeds=(0, 1)),
        supernet=SupernetPart(choices=(16, 20, 24, 32, 40, 48), unpaired_choices=(16, 20, 24, 32, 40, 48),
                              steps=6000, rank_configs=10, standalone_steps=1000),
        search=SearchPart(budget_widths=(16, 20, 24), population=50, generations=10, finetune_steps=2000),
        profiling=ProfilingPart(resolutions=(128, 256, 512), batches=(1, 8, 32), repeats=30, random_configs=60),
        tasks={"stripes": {"data.batch_size": 4, "teacher.steps": 3000}}),
    "paper": Preset(
        name="paper", eval_every=5000, ckpt_every=2000,
        data=DataPart(image_size=256, n_train=0, n_heldout=0, n_test=0, batch_size=1, load_size=286),
        teacher=TeacherPart(ngf=64, n_blocks=9, ndf=64, steps=200 * 400),
        student=StudentPart(ngf=32, steps=200 * 400),
        supernet=SupernetPart(choices=(16, 24, 32, 40, 48, 56, 64), unpaired_choices=(16, 24, 32, 48, 64),
                              steps=200 * 400, rank_configs=5, standalone_steps=100 * 400),
        search=SearchPart(budget_widths=(24, 32, 48), population=100, generations=500, mutation_prob=0.3,
                          parent_fraction=0.25, finetune_steps=100 * 400),
        profiling=ProfilingPart(resolutions=(64, 128, 256, 512), batches=(1, 8), repeats=30, random_configs=60),
        # The official per-dataset settings (mit-han-lab/gan-compression's training scripts): pix2pix tasks judge with
        # a 128-wide PatchGAN, edges2shoes trains in batches of 4, the learning rate decays over the last 50% (horse2zebra),
        # 75% (edges2shoes), 60% (cityscapes) or 67% (maps) of the steps, map2sat distils with CycleGAN's weights, and
        # the evolution keeps 25 parents and adds 50 mutated and 50 crossed-over children per generation
        # (horse2zebra: mutation 0.4, a first generation that favours narrow widths), under the official MAC budgets.
        tasks={
            "edges2shoes": {"teacher.ndf": 128, "data.batch_size": 4, "optim.decay_fraction": 0.75,
                            "search.mutation_children": 50, "search.crossover_children": 50,
                            "search.budget_gmacs": (4.9,)},
            "cityscapes": {"teacher.ndf": 128, "optim.decay_fraction": 0.6, "spade.label_nc": 36, "spade.n_up": 6,
                           "search.mutation_children": 50, "search.crossover_children": 50,
                           "search.budget_gmacs": (5.7,)},
            "maps": {"teacher.ndf": 128, "optim.decay_fraction": 0.67, "student.lambda_recon": 10.0,
                     "student.lambda_distill": 0.01, "search.mutation_children": 50, "search.crossover_children": 50,
                     "search.budget_gmacs": (4.6,)},
            "facades": {"teacher.ndf": 128, "search.mutation_children": 50, "search.crossover_children": 50},
            "horse2zebra": {"optim.decay_fraction": 0.5, "search.mutation_prob": 0.4, "search.budget_gmacs": (3.0,),
                            "search.mutation_children": 50, "search.crossover_children": 50,
                            "search.first_weights": (0.27, 0.23, 0.20, 0.17, 0.13)},
        }),
}


def get_preset(name: str, overrides: dict[str, Any] | None = None, task: str | None = None) -> Preset:
    """The preset called ``name`` for ``task`` (its per-task changes applied), then ``overrides``
    (``{'teacher.steps': 10, ...}``), validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].for_task(task).override(overrides or {})


def notebook_preset(name: str, task: str | None = None, dataset_root: str = "",
                    overrides: dict[str, Any] | None = None) -> Preset:
    """The preset a notebook's parameters ask for: ``name`` for ``task``, on the real dataset at ``dataset_root``
    (empty: the embedded task), with ``overrides``. A preset that needs a real dataset stops here, at once, naming the
    parameter to set and the command that downloads one."""
    changes = dict(overrides or {})
    if dataset_root:
        changes["data.dataset_root"] = str(dataset_root)
    preset = get_preset(name, changes, task=task)
    if not preset.data.dataset_root and min(preset.data.n_train, preset.data.n_heldout, preset.data.n_test) < 2:
        raise ValueError(f"preset {name!r} trains on a real dataset: set the notebook parameter dataset_root to its "
                         f"folder (or run `python -m gclib run --preset {name} --dataset-root PATH`). Download one "
                         f"with `python -m gclib data download edges2shoes` (or facades, cityscapes, maps, "
                         f"horse2zebra), or bring your own in the pix2pix or CycleGAN layout.")
    return preset
