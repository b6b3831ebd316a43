"""Presets: the scale of every stage, chosen by the ``preset`` parameter of every notebook.

- ``smoke``:  the whole suite in minutes on 2 CPU cores (CI, nbval). Numbers are meaningless, only the plumbing runs.
- ``laptop``: 2 CPU cores at 64x64, big enough to show the paper's claims in miniature.
- ``paper``:  the paper's hyper-parameters at 256x256 on real datasets; for a GPU.

A preset is made of one small part per pipeline stage (data, optimiser, teacher, student, supernet, search,
profiling). A stage's artifact is keyed by the parts it depends on (see :mod:`gclib.stages`), so changing the search
never invalidates the supernet, and changing the supernet never invalidates the teacher. Override any field with its
dotted name: ``get_preset("laptop", {"teacher.steps": 200, "search.population": 10})``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


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


@dataclass(frozen=True)
class StudentPart:
    ngf: int = 32              # mobile student width (ngf 32 costs 4.93 G MACs at 256x256, 11.5x less)
    steps: int = 500
    seeds: tuple = (0,)        # the experiment of notebook 02 is repeated for each seed (offsets to the seed)


@dataclass(frozen=True)
class SupernetPart:
    choices: tuple = (16, 24, 32, 40, 48)            # widths of every config entry, paired tasks
    unpaired_choices: tuple = (16, 24, 32, 40, 48)   # ... unpaired tasks (paper: Fast CycleGAN's set)
    steps: int = 1500
    rank_configs: int = 5      # sub-networks trained stand-alone to check the supernet's ranking (notebook 03)
    standalone_steps: int = 250

    def choices_for(self, paired: bool) -> tuple:
        return tuple(sorted(self.choices if paired else self.unpaired_choices))


@dataclass(frozen=True)
class SearchPart:
    budget_widths: tuple = (24, 32, 40)  # budgets: the MACs of the uniform sub-networks of these widths
    population: int = 20
    generations: int = 5
    parent_fraction: float = 0.25
    mutation_prob: float = 0.2
    finetune_steps: int = 300  # distillation steps for the searched winner (and its uniform rival)


@dataclass(frozen=True)
class ProfilingPart:
    resolutions: tuple = (64, 128, 256)   # notebook 05's latency grid; the last is the detailed one
    batches: tuple = (1, 4)
    repeats: int = 10          # timed runs per measurement, after warm-up
    random_configs: int = 24   # random sub-networks timed for the MACs-vs-latency ranking


D_NORMS = ("instance", "none")   # the discriminator normalisations a preset may choose (teacher.d_norm)

PARTS = {"data": DataPart, "optim": OptimPart, "teacher": TeacherPart, "student": StudentPart,
         "supernet": SupernetPart, "search": SearchPart, "profiling": ProfilingPart}


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
    family: str = "resnet"
    eval_every: int = 100      # steps between held-out evaluations during training (not part of any key)
    ckpt_every: int = 100      # steps between resumable checkpoints (not part of any key)
    # per-task changes, {task: {'part.field': value}}, applied by for_task (e.g. the unpaired teacher costs six
    # generator passes per step, so the laptop preset gives it a smaller batch)
    tasks: dict = field(default_factory=dict)

    def __post_init__(self):
        validate(self)
        for task, changes in self.tasks.items():  # each task's variant must be a valid preset too
            try:
                replace(self, tasks={}).override(changes)
            except ValueError as e:
                raise ValueError(f"preset {self.name!r}, changes for task {task!r}: {e}") from None

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
        with the list of known ones."""
        parts: dict[str, dict] = {}
        top: dict[str, Any] = {}
        for dotted, value in changes.items():
            part, _, name = dotted.partition(".")
            if not name:
                if part not in ("eval_every", "ckpt_every", "family"):
                    raise ValueError(f"unknown preset field {dotted!r}; fields are named 'part.field' with part one "
                                     f"of {sorted(PARTS)} (or eval_every, ckpt_every, family)")
                top[part] = value
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
    positive = {"data.image_size": d.image_size, "data.batch_size": d.batch_size, "teacher.ngf": t.ngf,
                "teacher.n_blocks": t.n_blocks, "teacher.ndf": t.ndf, "student.ngf": p.student.ngf,
                "eval_every": p.eval_every, "ckpt_every": p.ckpt_every, "search.population": p.search.population,
                "profiling.repeats": p.profiling.repeats}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            _fail(p, name, value, "a positive integer")
    if t.d_norm not in D_NORMS:
        _fail(p, "teacher.d_norm", t.d_norm, f"one of {D_NORMS}")
    non_negative = {"data.n_train": d.n_train, "data.n_heldout": d.n_heldout, "data.n_test": d.n_test,
                    "data.load_size": d.load_size, "teacher.steps": t.steps, "student.steps": p.student.steps,
                    "supernet.steps": p.supernet.steps, "supernet.rank_configs": p.supernet.rank_configs,
                    "supernet.standalone_steps": p.supernet.standalone_steps,
                    "search.generations": p.search.generations, "search.finetune_steps": p.search.finetune_steps,
                    "profiling.random_configs": p.profiling.random_configs}
    for name, value in non_negative.items():
        if not isinstance(value, int) or value < 0:
            _fail(p, name, value, "a non-negative integer")
    if d.image_size % 4:
        _fail(p, "data.image_size", d.image_size, "a multiple of 4 (the generators down-sample twice by 2)")
    if d.load_size and d.load_size < d.image_size:
        _fail(p, "data.load_size", d.load_size, f"0 or at least data.image_size ({d.image_size}), the crop size")
    if not 0 < p.optim.lr:
        _fail(p, "optim.lr", p.optim.lr, "positive")
    if not 0 <= p.optim.decay_fraction <= 1:
        _fail(p, "optim.decay_fraction", p.optim.decay_fraction, "between 0 and 1")
    if any(not isinstance(s, int) or s < 0 for s in p.student.seeds) or not p.student.seeds:
        _fail(p, "student.seeds", p.student.seeds, "a non-empty tuple of non-negative integers")
    for name in ("choices", "unpaired_choices"):
        choices = getattr(p.supernet, name)
        if not choices or any(not isinstance(c, int) or c < 1 for c in choices):
            _fail(p, f"supernet.{name}", choices, "a non-empty tuple of positive widths")
        if max(choices) > t.ngf:
            _fail(p, f"supernet.{name}", choices, f"at most teacher.ngf ({t.ngf}) wide: the supernet starts from "
                                                  f"the teacher's channels")
        if not set(p.search.budget_widths) <= set(choices):
            _fail(p, "search.budget_widths", p.search.budget_widths, f"widths in supernet.{name} {choices}")
    if not 0 < p.search.parent_fraction < 1:
        _fail(p, "search.parent_fraction", p.search.parent_fraction, "between 0 and 1")
    if not 0 <= p.search.mutation_prob <= 1:
        _fail(p, "search.mutation_prob", p.search.mutation_prob, "between 0 and 1")
    if not p.profiling.resolutions or any(r < 8 or r % 4 for r in p.profiling.resolutions):
        _fail(p, "profiling.resolutions", p.profiling.resolutions, "multiples of 4, at least 8")


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke", eval_every=15, ckpt_every=10,
        data=DataPart(image_size=32, n_train=64, n_heldout=32, n_test=32, batch_size=4),
        teacher=TeacherPart(ngf=16, n_blocks=6, ndf=16, steps=30),
        student=StudentPart(ngf=8, steps=20),
        supernet=SupernetPart(choices=(4, 6, 8), unpaired_choices=(4, 6, 8), steps=20, rank_configs=3,
                              standalone_steps=10),
        search=SearchPart(budget_widths=(6,), population=6, generations=2, finetune_steps=10),
        profiling=ProfilingPart(resolutions=(32, 64), batches=(1, 2), repeats=3, random_configs=6)),
    "laptop": Preset(
        name="laptop", eval_every=100, ckpt_every=50,
        data=DataPart(image_size=64, n_train=800, n_heldout=200, n_test=200, batch_size=8),
        teacher=TeacherPart(ngf=64, n_blocks=9, ndf=64, steps=500),
        student=StudentPart(ngf=32, steps=500, seeds=(0, 1)),  # the other parts: their defaults
        # A CycleGAN step runs six generator passes (two translations, two cycles, two identities): 9.7 s for a
        # batch of 8 at 64x64 on 2 cores (`python -m gclib bench --train`), against 1.9 s for pix2pix. The
        # unpaired task therefore trains at 32x32 (4x fewer pixels; the stripes stay visible) in batches of 4,
        # with more steps for the stages that cost little there. At 32x32 the teacher needs a discriminator without
        # instance norm and 1500 steps: with the paper's D, or at 1000 steps, it paints speckle over the whole
        # image (CycleGAN's noisy phase ends only as the learning rate decays; see teacher.d_norm).
        tasks={"stripes": {"data.image_size": 32, "data.batch_size": 4, "teacher.steps": 1500,
                           "teacher.d_norm": "none",
                           "student.steps": 1000, "supernet.steps": 3000, "supernet.standalone_steps": 500,
                           "search.finetune_steps": 600}}),
    "paper": Preset(
        name="paper", eval_every=5000, ckpt_every=2000,
        data=DataPart(image_size=256, n_train=0, n_heldout=0, n_test=0, batch_size=1, load_size=286),
        teacher=TeacherPart(ngf=64, n_blocks=9, ndf=64, steps=200 * 400),
        student=StudentPart(ngf=32, steps=200 * 400),
        supernet=SupernetPart(choices=(16, 24, 32, 40, 48, 56, 64), unpaired_choices=(16, 24, 32, 48, 64),
                              steps=200 * 400, rank_configs=5, standalone_steps=100 * 400),
        search=SearchPart(budget_widths=(24, 32, 48), population=100, generations=10, mutation_prob=0.3,
                          finetune_steps=100 * 400),
        profiling=ProfilingPart(resolutions=(64, 128, 256, 512), batches=(1, 8), repeats=30, random_configs=60)),
}


def get_preset(name: str, overrides: dict[str, Any] | None = None, task: str | None = None) -> Preset:
    """The preset called ``name`` for ``task`` (its per-task changes applied), then ``overrides``
    (``{'teacher.steps': 10, ...}``), validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].for_task(task).override(overrides or {})
