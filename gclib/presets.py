"""Presets: one small dataclass per scale, chosen by the ``preset`` parameter of every notebook.

- ``smoke``:  the whole suite in minutes on 2 CPU cores (CI, nbval). Numbers are meaningless, only the plumbing runs.
- ``laptop``: the whole suite in about two hours on 2 CPU cores (01: 19 min, 02: 47 min, 03: 31 min, 04: 10 min),
  at 64x64, big enough to show the paper's claims.
- ``paper``:  the paper's hyper-parameters at 256x256 on real datasets; for a GPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int            # square images, pixels
    n_train: int               # embedded dataset sizes per split
    n_heldout: int             # the search's validation split (notebook 04); never the test split
    n_test: int
    batch_size: int
    # Teacher (notebook 01)
    teacher_ngf: int
    teacher_blocks: int
    teacher_steps: int
    ndf: int                   # discriminator width
    # Student (notebook 02)
    student_ngf: int = 32      # mobile student width (GUIDE: ngf 32 costs 4.93 G MACs at 256, 11.5x less)
    distill_steps: int = 500
    distill_seeds: tuple = (0,)  # the experiment of notebook 02 is repeated for each seed
    # Supernet and search (notebooks 03-04)
    supernet_choices: tuple = (16, 24, 32, 40, 48)  # the widths each config entry may take; the supernet is max wide
    supernet_steps: int = 1500
    rank_configs: int = 5       # sub-networks trained stand-alone to check the supernet's ranking (notebook 03)
    standalone_steps: int = 250  # steps of each of those stand-alone trainings
    budget_widths: tuple = (24, 32, 40)  # search budgets: the MACs of the uniform sub-networks of these widths
    search_population: int = 20
    search_generations: int = 5
    finetune_steps: int = 300   # distillation steps for the searched winner (and its uniform rival)
    lr: float = 2e-4
    beta1: float = 0.5
    decay_fraction: float = 0.5  # last fraction of steps over which the learning rate decays linearly to 0
    eval_every: int = 100      # steps between FID/KID evaluations during training
    ckpt_every: int = 100      # steps between resumable checkpoints
    real_dataset_root: str = ""  # paper scale: folder of a real dataset (empty: embedded task)
    load_size: int = 0         # paper scale augmentation: resize to load_size, random-crop image_size

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def teacher_dict(self) -> dict:
        """The fields a teacher depends on (its checkpoint's hyper-parameters): not the later notebooks' ones."""
        return {k: v for k, v in self.to_dict().items() if k not in STUDENT_FIELDS + SEARCH_FIELDS}

    def student_dict(self) -> dict:
        """The fields a student of notebook 02 depends on (its seeds are stored apart)."""
        return {k: v for k, v in self.to_dict().items() if k not in SEARCH_FIELDS + ("distill_seeds",)}


STUDENT_FIELDS = ("student_ngf", "distill_steps", "distill_seeds")
SEARCH_FIELDS = ("supernet_choices", "supernet_steps", "rank_configs", "standalone_steps", "budget_widths",
                 "search_population", "search_generations", "finetune_steps")


PRESETS: dict[str, Preset] = {
    "smoke": Preset(name="smoke", image_size=32, n_train=64, n_heldout=32, n_test=32, batch_size=4,
                    teacher_ngf=16, teacher_blocks=6, teacher_steps=30, ndf=16, eval_every=15, ckpt_every=10,
                    student_ngf=8, distill_steps=20, supernet_choices=(4, 6, 8), supernet_steps=20, rank_configs=3,
                    standalone_steps=10, budget_widths=(6,), search_population=6, search_generations=2,
                    finetune_steps=10),
    "laptop": Preset(name="laptop", image_size=64, n_train=800, n_heldout=200, n_test=200, batch_size=8,
                     teacher_ngf=64, teacher_blocks=9, teacher_steps=500, ndf=64, eval_every=100, ckpt_every=50,
                     student_ngf=32, distill_steps=500, distill_seeds=(0, 1)),  # search fields: the defaults
    "paper": Preset(name="paper", image_size=256, n_train=0, n_heldout=0, n_test=0, batch_size=1,
                    teacher_ngf=64, teacher_blocks=9, teacher_steps=200 * 400, ndf=64, eval_every=5000,
                    ckpt_every=2000, load_size=286, student_ngf=32, distill_steps=200 * 400,
                    supernet_choices=(16, 24, 32, 40, 48, 56, 64), supernet_steps=200 * 400, rank_configs=5,
                    standalone_steps=100 * 400, budget_widths=(24, 32, 40), search_population=100,
                    search_generations=10, finetune_steps=100 * 400),
}


def get_preset(name: str, **overrides) -> Preset:
    """The preset called ``name``, with any field replaced by ``overrides`` (e.g. ``teacher_steps=10``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    unknown = set(overrides) - set(preset.to_dict())
    if unknown:
        raise ValueError(f"unknown preset fields {sorted(unknown)}; known: {sorted(preset.to_dict())}")
    return replace(preset, **overrides)
