"""One notebook's run as one object, made from its parameters cell.

A notebook names a preset, a task (or a family), a seed, a device and a runs folder once; every stage after that
needs all of them, plus the held-out scorer and the teacher's cached outputs. :class:`Session` holds them and has the
stages as methods (``teacher``, ``student``, ``supernet``, ``fine_tune``, ``search``), so a notebook's cells show the
idea and the library's stages keep their explicit arguments for scripts and the CLI::

    session = Session(preset, task, seed=seed, runs_dir=runs_dir, device=device)
    teacher = session.teacher().net          # loaded from the runs folder or the zoo, else trained
    supernet = session.supernet().net
    found = session.search(session.evaluator(supernet))
    session.save_figure(fig, "04_facades_pareto")
"""
from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path

import torch

from . import data as gdata, metrics, pipeline, report, stages
from .families import get_family
from .presets import Preset, notebook_preset


def torch_device(name: str, parameter: str = "device") -> torch.device:
    """``auto``, ``cpu`` or ``cuda[:N]`` as a torch device; a GPU that is not there is named, not a traceback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{parameter} {name!r}: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{parameter} {name}: no CUDA GPU is visible to PyTorch here (torch.cuda.is_available() is "
                         f"False); use cpu, or auto to take a GPU when there is one")
    return device


class Session:
    """The preset, task, family, seed, device and runs folder of one notebook run, its data and scorers, and the
    pipeline's stages as methods. Each stage is load-or-train (runs folder, then the zoo) and is built once per
    session; the arguments each takes beyond the session's are the ones an experiment varies.

    ``family``: the generator family when the task does not decide it (GauGAN's ``"spade"``, MUNIT's ``"munit"``).
    Torch's global seed is set here, once, to ``seed``."""

    def __init__(self, preset: str = "smoke", task: str = "facades", *, seed: int = 0, family: str | None = None,
                 dataset_root: str = "", overrides: dict | None = None, runs_dir: str | Path = "",
                 device: str = "auto", extractor: str = "offline", inception_weights: str = ""):
        self.started = time.perf_counter()
        self.device = torch_device(device)        # a bad device stops here, before anything is made
        torch.manual_seed(seed)
        self.cfg: Preset = notebook_preset(preset, task, dataset_root,
                                           {**(overrides or {}), **({"family": family} if family else {})})
        self.task, self.seed, self.extractor = task, seed, extractor
        self.inception_weights = inception_weights or None
        self.family = get_family(self.cfg.family)
        self.runs = Path(runs_dir or f"../runs/{preset}")
        self.runs.mkdir(parents=True, exist_ok=True)
        self.size = self.cfg.data.image_size
        self.arch = self.family.arch(self.cfg)     # structure besides the widths (ResNet: n_blocks)
        self.seeds = [seed + s for s in self.cfg.student.seeds]    # the students' and fine-tunings' seeds
        self._teacher = self._supernet = None

    def __repr__(self) -> str:
        return (f"preset {self.cfg.name}: {self.task} ({self.cfg.family}), {self.size}x{self.size}, seed {self.seed}; "
                f"device {self.device}, {torch.get_num_threads()} threads; artifacts in {self.runs.resolve()}")

    # -- data and scorers ----------------------------------------------------------------------------------------
    @cached_property
    def pictures(self) -> gdata.TaskData:
        """The task's splits as images (GauGAN's A: the colour-coded label maps, for our eyes)."""
        return gdata.load_task(self.task, self.cfg, self.seed)

    @cached_property
    def splits(self) -> gdata.TaskData:
        """The task's splits as the family's generators take them (GauGAN's A: one-hot label maps)."""
        return self.family.task_data(self.pictures, self.cfg)

    @cached_property
    def space(self):
        """The sub-networks of this task's supernet (``supernet.choices``, with ``supernet.entry_choices``)."""
        return self.cfg.supernet.space(self.family, self.splits.paired)

    def macs_of(self, config: str) -> int:
        """MACs of the sub-network ``config`` at the preset's resolution, batch 1 (closed form)."""
        return self.family.config_macs(config, self.size, **self.arch)

    @cached_property
    def features(self):
        """The feature extractor of FID and KID (``offline`` or ``inception``)."""
        return metrics.get_extractor(self.extractor, self.inception_weights)

    @cached_property
    def segmenter(self):
        """The embedded task's segmenter (its mIoU reads generated images back); None on a real dataset."""
        if self.cfg.data.dataset_root or self.task not in gdata.EMBEDDED_TASKS:
            return None
        return metrics.load_segmenter(self.task)

    def scorer(self, split: str, resamples: int):
        """Every metric of the family on ``split`` ('heldout' or 'test'), with ``resamples`` bootstrap resamples
        for its intervals (0: values only)."""
        return metrics.split_scorer(self.splits, split, self.features, self.segmenter, resamples=resamples,
                                    style_dim=getattr(self.family, "style_dim", 0))

    @cached_property
    def heldout_scorer(self):
        """Scores on the held-out split, values only: what training curves, model selection and the search read."""
        return self.scorer("heldout", 0)

    @cached_property
    def test_scorer(self):
        """Scores on the test split with 95% bootstrap intervals: read once, for the final numbers."""
        return self.scorer("test", 100)

    def test_scores(self, trained: stages.Trained) -> dict:
        """A trained stage's test scores; for a teacher the zoo ships as its record alone, the recorded ones."""
        return stages.test_scores(trained, self.test_scorer, self.extractor)

    def heldout_scores(self, trained: stages.Trained) -> dict:
        """A trained stage's held-out scores (values only); for a stage shipped as its record, the recorded ones."""
        return stages.heldout_scores(trained, self.heldout_scorer, self.extractor)

    # -- the stages ----------------------------------------------------------------------------------------------
    def teacher(self, preset: Preset | None = None) -> stages.Trained:
        """Notebook 01's teacher of the session's seed (``.net``, ``.artifact``); ``preset``: another one's (e.g.
        a shorter training)."""
        if preset is not None:
            return stages.teacher(preset, self.splits, self.runs, self.seed, self.device, self.heldout_scorer)
        if self._teacher is None:
            self._teacher = stages.teacher(self.cfg, self.splits, self.runs, self.seed, self.device,
                                           self.heldout_scorer)
        return self._teacher

    def teachers(self) -> dict[int, stages.Trained]:
        """One teacher per seed of ``teacher.seeds`` ({seed: Trained}, the compressed one first): their spread is
        the teacher band a student is judged against."""
        return stages.teachers(self.cfg, self.splits, self.runs, self.seed, self.device, self.heldout_scorer)

    @cached_property
    def cache(self):
        """The teacher's outputs and features for every training image, computed once (None on data read from
        disk): a distillation step then costs about what a step of the student alone does."""
        from .recipes.distill import TeacherCache
        return TeacherCache.for_split(self.family, self.teacher().net, self.splits.train)

    def student(self, variant: str = "features", seed: int | None = None, lambda_distill: float | None = None,
                preset: Preset | None = None) -> stages.Trained:
        """Notebook 02's student trained as ``variant`` (alone, init, output, features)."""
        return stages.student(preset or self.cfg, self.splits, self.teacher(), variant, self.runs,
                              self.seed if seed is None else seed, self.device, self.heldout_scorer, self.cache,
                              lambda_distill=lambda_distill)

    def supernet(self, preset: Preset | None = None, evaluate: bool = True) -> stages.Trained:
        """Notebook 03's once-for-all supernet (``preset``: another one's, e.g. the other sampler). ``evaluate``:
        score it on held-out as it trains (the curve and the kept weights; False where a notebook's budget has
        no room for it)."""
        if preset is None and self._supernet is not None:
            return self._supernet
        run = stages.supernet(preset or self.cfg, self.splits, self.teacher(), self.runs, self.seed, self.device,
                              self.heldout_scorer if evaluate else None, self.cache)
        if preset is None:
            self._supernet = run
        return run

    def standalone(self, config: str, seed: int) -> stages.Trained:
        """Notebook 03's reference: the sub-network ``config`` trained on its own from the teacher's channels."""
        return stages.subnet(self.cfg, self.splits, self.teacher(), config, self.runs,
                             self.cfg.supernet.standalone_steps, start="teacher", seed=seed, device=self.device,
                             cache=self.cache)

    def evaluator(self, supernet: torch.nn.Module, metric: str | None = None, scorer=None):
        """Scores sub-networks of ``supernet`` with its shared weights, each config once: ``scorer`` (default the
        held-out one) by ``metric`` (what the search ranks by; default the preset's ``search.metric``)."""
        from .search import SupernetEvaluator
        return SupernetEvaluator(supernet, scorer or self.heldout_scorer, self.macs_of,
                                 metric=metric or self.cfg.search.metric)

    def search(self, evaluator) -> pipeline.Search:
        """The uniformly slimmed sub-networks, then the preset's evolution under each budget (notebooks 04, 06, 07)."""
        return pipeline.search(evaluator, self.space, self.macs_of, self.cfg, self.seed)

    def fine_tune(self, configs: dict[str, str], seeds: list[int] | None = None) -> dict:
        """``{(name, seed): Trained}``: each of ``configs`` ({name: config}) fine-tuned from the supernet for
        ``search.finetune_steps`` steps, once per seed (default: the session's ``seeds``)."""
        return pipeline.fine_tune(self.cfg, self.splits, self.teacher(), self.supernet(), configs, self.runs,
                                  self.seeds if seeds is None else seeds, self.device, self.cache)

    # -- what a notebook leaves behind ---------------------------------------------------------------------------
    def save_figure(self, fig, name: str) -> Path:
        """``fig`` as ``<runs>/figures/<name>.png`` (what ``gclib run`` publishes)."""
        return report.save_figure(fig, self.runs, name)

    def record(self, notebook: str, numbers: dict) -> Path:
        """The notebook's measured numbers, for the results table ``gclib run`` writes."""
        return report.record(self.runs, notebook, numbers)

    @property
    def minutes(self) -> float:
        """Minutes since the session was made (the notebook's runtime)."""
        return (time.perf_counter() - self.started) / 60


__all__ = ["Session", "torch_device"]
