"""The model zoo: the suite's long trainings, done once by this project's own code and shipped in ``data/zoo``.

``python -m gclib zoo build`` trains every stage a laptop run reuses, as the notebooks do (same data, seeds and
held-out scorer, so the same keys), into ``runs/zoo``; the notebooks then load instead of training.
"""
from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO / "runs" / "zoo"
ZOO_TASKS = ("facades", "stripes")


def build_teachers(task: str, preset: str = "laptop", runs_dir: str | Path = BUILD_DIR, seed: int = 0,
                   progress: bool = True) -> dict:
    """Notebook 01's teachers of ``task`` (every seed of ``teacher.seeds``), trained or loaded in ``runs_dir``."""
    from . import data as gdata, metrics, stages
    from .families import get_family
    from .presets import notebook_preset
    cfg = notebook_preset(preset, task)
    splits = get_family(cfg.family).task_data(gdata.load_task(task, cfg, seed), cfg)
    segmenter = metrics.load_segmenter(task) if task in gdata.EMBEDDED_TASKS else None
    scorer = metrics.split_scorer(splits, "heldout", metrics.get_extractor("offline"), segmenter, resamples=0)
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    return stages.teachers(cfg, splits, runs_dir, seed, torch.device("cpu"), scorer, progress)


if __name__ == "__main__":
    import sys
    torch.set_num_threads(1)
    for t in sys.argv[1:] or ZOO_TASKS:
        build_teachers(t)
