"""The damage ladder: does a distribution metric see what it is asked to judge?

Take two independent real samples R1 and R2 of N images. FID(R1, R2) is the floor. Damage R2 with one kind of
damage at increasing strengths and score FID(R1, damaged R2) at each: a metric worth reading rises with every step
of every kind, and is already above its floor (beyond the floor's bootstrap interval) at the faintest step. Where
it does not, differences of that kind and size between two generators are invisible to it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import to_uint8
from .distribution import FeatureSet, extract
from .features import DAMAGE, damage, strength_at

LEVELS = (0.2, 0.4, 0.6, 0.8, 1.0)  # positions in each kind's range of strengths (geometric: 0.2 is faint)


def damage_ladder(extractor: nn.Module, reference: torch.Tensor, sample: torch.Tensor,
                  kinds: tuple[str, ...] = tuple(DAMAGE), levels: tuple[float, ...] = LEVELS, resamples: int = 50,
                  seed: int = 0) -> list[dict]:
    """FID of ``sample`` (float images in [-1, 1], an independent real sample as large as ``reference``) against
    ``reference``, clean (the floor: kind 'none') and under each kind of damage at each level.

    Returns rows ``{'kind', 'level', 'strength', 'fid', 'fid low', 'fid high'}``."""
    real = FeatureSet(extractor, to_uint8(reference), resamples=resamples, stats=("fid",))
    sample = sample[:len(reference)]
    rows = []

    def add(kind: str, level: float, strength: float, images: torch.Tensor) -> None:
        scores = real.score_features(extract(extractor, to_uint8(images)))
        row = {"kind": kind, "level": level, "strength": strength}
        for name, score in scores.items():
            row.update(score.as_dict(name))
        rows.append(row)

    add("none", 0.0, 0.0, sample)
    for kind in kinds:
        for level in levels:
            g = torch.Generator().manual_seed(seed)             # the same random draw at every strength
            strength = strength_at(kind, level)
            add(kind, level, strength, damage(sample, kind, strength, g))
    return rows


def ladder_verdict(rows: list[dict], metric: str = "fid") -> dict[str, dict]:
    """Per kind: ``monotone`` (the score rises at every step), ``leaves_floor`` (the faintest step is above the
    floor's upper bootstrap bound) and the faintest step's ``ratio`` to the floor."""
    floor = next(r for r in rows if r["kind"] == "none")
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows if r["kind"] != "none"):
        steps = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["level"])
        values = [r[metric] for r in steps]
        out[kind] = {"monotone": all(b > a for a, b in zip(values, values[1:])),
                     "leaves_floor": steps[0][f"{metric} low"] > floor[f"{metric} high"],
                     "ratio": values[0] / floor[metric] if floor[metric] > 0 else float("inf")}
    return out
