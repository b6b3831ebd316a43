"""FID and KID with the two numbers that say what a score is worth: its floor and its spread.

Both compare the feature distribution of generated images with that of real ones:

    FID = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))          (Gaussians fitted to the features)
    KID = MMD^2_unbiased with the kernel k(x, y) = (x . y / d + 1)^3     (averaged over random subsets)

Neither is zero for two *real* samples: with N images per side the estimate carries a bias and a noise of its own.
The **floor** is the score of two independent real samples of the same size N: a generator scoring at the floor is
indistinguishable from real data by this instrument, and differences below the floor's scale say nothing. The
**spread** is a bootstrap interval: resample both sides with replacement, recompute, and take the 95% spread
of the resampled scores around their median, centred on the score (see :func:`bootstrap`). Report both beside every score.

The features are computed once per image set (:class:`FeatureSet`), so the floor, many generators and hundreds of
bootstrap resamples cost no further forward passes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Closed form between two Gaussians:  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2), which has
    the same eigenvalues as S1 S2 and is symmetric: stable and fast even when a covariance is singular (features
    that do not vary), where a general matrix square root is slow and inaccurate."""
    w, v = linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                         # S1^(1/2)
    middle = linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_covmean = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature arrays (N, d) and (M, d), float64 statistics."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """KID x1000: the unbiased MMD^2 with the cubic polynomial kernel, averaged over ``subsets`` random subsets of
    ``min(subset_size, N, M)`` images per side (the estimator of Binkowski et al. 2018 that torchmetrics uses)."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        # unbiased: the diagonals (an image with itself) are left out of the within-sample means
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return 1000 * float(np.mean(values))


@dataclass
class Score:
    """A score with its 95% bootstrap interval ``(low, high)`` and, where known, its floor."""
    value: float
    low: float
    high: float
    floor: float | None = None

    def __format__(self, spec: str) -> str:
        spec = spec or ".3g"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def as_dict(self, name: str) -> dict:
        out = {name: self.value, f"{name} low": self.low, f"{name} high": self.high}
        if self.floor is not None:
            out[f"{name} floor"] = self.floor
        return out


def bootstrap(statistic, real: np.ndarray, fake: np.ndarray, resamples: int = 100, seed: int = 0,
              value: float | None = None) -> tuple[float, float]:
    """A 95% interval for ``statistic(real, fake)`` from ``resamples`` resamplings (with replacement) of both sides.

    A resample repeats some images and drops others, which by itself raises FID and KID (fewer distinct images:
    more estimation bias), so the plain percentiles of the resampled scores sit above the score. The interval is
    therefore the resampled scores' spread around their median, centred on the score:
    ``[value - (median - p2.5), value + (p97.5 - median)]``. ``value``: the score already computed (else it is)."""
    rng = np.random.default_rng(seed)
    values = [statistic(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))])
              for _ in range(resamples)]
    return centred_interval(statistic(real, fake) if value is None else value, values)


def centred_interval(value: float, resampled: list[float]) -> tuple[float, float]:
    """The 95% interval of ``value`` from its ``resampled`` values: their spread around their median, centred on the
    value, ``[value - (median - p2.5), value + (p97.5 - median)]`` (see :func:`bootstrap`)."""
    p_low, median, p_high = np.percentile(resampled, [2.5, 50, 97.5])
    return float(value - (median - p_low)), float(value + (p_high - median))


@torch.no_grad()
def extract(extractor: nn.Module, images: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """uint8 images (N, 3, H, W) -> features (N, d) as float64 numpy."""
    return torch.cat([extractor(images[i:i + batch_size]).double().cpu()
                      for i in range(0, len(images), batch_size)]).numpy()


def extractor_name(extractor: nn.Module) -> str:
    """How an extractor is named in file names and tables: its own ``name`` if it has one, else its class."""
    return str(getattr(extractor, "name", type(extractor).__name__)).replace("/", "-")


def extract_cached(extractor: nn.Module, images: torch.Tensor, cache_dir: str | Path | None = None,
                   batch_size: int = 100) -> np.ndarray:
    """:func:`extract`, remembered in ``cache_dir`` (None: not remembered) under the extractor's name and a digest of
    the images and of the extractor's weights: the real images of a dataset are read by the extractor once, and a
    changed image or extractor can never be served stale features."""
    if cache_dir is None:
        return extract(extractor, images, batch_size)
    import hashlib
    h = hashlib.sha256(images.contiguous().numpy().tobytes())
    for name, tensor in extractor.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    n, _, height, width = images.shape
    path = Path(cache_dir) / f"{extractor_name(extractor)}_{n}x{height}x{width}_{h.hexdigest()[:16]}.npy"
    if path.exists():
        try:
            features = np.load(path)
            if features.shape[0] == n:
                return features
            raise ValueError(f"{features.shape[0]} rows for {n} images")
        except Exception as e:   # truncated or foreign: set aside (named), the features are computed again
            from ..artifacts import set_aside
            moved = set_aside(path, "unreadable")
            print(f"could not read the cached features {path} ({type(e).__name__}: {e}); set aside as "
                  f"{moved.name}, computing them again")
    features = extract(extractor, images, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:                # written whole, then renamed: a killed run leaves no half file
        np.save(f, features)
    os.replace(tmp, path)
    return features


class FeatureSet:
    """The features of one set of real images, scored against generated ones.

    ``floor_images``: an independent real sample (e.g. the other evaluation split) of at least as many images; the
    floor is the score of its first N images against these N. ``resamples``: bootstrap resamples per interval (0
    skips intervals, e.g. for the cheap periodic evaluations during training); ``stats``: which of 'fid', 'kid'."""

    def __init__(self, extractor: nn.Module, images: torch.Tensor, floor_images: torch.Tensor | None = None,
                 resamples: int = 100, kid_subsets: int = 50, stats: tuple[str, ...] = ("fid", "kid"),
                 cache_dir: str | Path | None = None):
        self.extractor, self.resamples, self.kid_subsets, self.stats = extractor, resamples, kid_subsets, stats
        self.real = extract_cached(extractor, images, cache_dir)
        self.floor: dict[str, Score] | None = None
        if floor_images is not None:
            if len(floor_images) < len(images):
                raise ValueError(f"the floor needs an independent real sample of at least {len(images)} images, "
                                 f"got {len(floor_images)}")
            self.floor = self.score_features(extract_cached(extractor, floor_images[:len(images)], cache_dir))

    def statistics(self) -> dict:
        """``{name: (statistic, resampled statistic)}`` of the stats this set scores; a bootstrap resample averages
        KID over fewer subsets (the resampling, not the subsets, is the spread)."""
        stats = {"fid": (fid, fid), "kid": (lambda r, f: kid(r, f, self.kid_subsets), lambda r, f: kid(r, f, 5))}
        return {k: v for k, v in stats.items() if k in self.stats}

    def paired_difference(self, fake_a: np.ndarray, fake_b: np.ndarray, resamples: int = 200, seed: int = 0,
                          only: tuple[str, ...] = ()) -> dict[str, Score]:
        """``stat(real, a) - stat(real, b)`` for each statistic, features of two generators' images of the *same*
        inputs (row i of both: input i), with a 95% interval from resampling the real images and the input indices
        together: one draw of indices serves both generators, so the images they share cancel. Centred on the
        difference as :func:`bootstrap` centres a score (the resampling bias of FID/KID mostly cancels in a
        difference, and what is left is taken out the same way). ``only``: these statistics (default: all)."""
        if fake_a.shape != fake_b.shape:
            raise ValueError(f"a paired difference needs images of the same inputs: got {fake_a.shape[0]} and "
                             f"{fake_b.shape[0]} rows of features")
        rng = np.random.default_rng(seed)
        draws = [(rng.integers(0, len(self.real), len(self.real)), rng.integers(0, len(fake_a), len(fake_a)))
                 for _ in range(resamples)]
        out = {}
        for name, (statistic, resampled) in self.statistics().items():
            if only and name not in only:
                continue
            value = statistic(self.real, fake_a) - statistic(self.real, fake_b)
            low, high = centred_interval(value, [resampled(self.real[j], fake_a[i]) - resampled(self.real[j], fake_b[i])
                                                 for j, i in draws]) if draws else (value, value)
            out[name] = Score(float(value), low, high)
        return out

    def score_features(self, fake: np.ndarray) -> dict[str, Score]:
        out = {}
        for name, (statistic, resampled) in self.statistics().items():
            value = statistic(self.real, fake)
            low, high = (bootstrap(resampled, self.real, fake, self.resamples, value=value) if self.resamples
                         else (value, value))
            floor = self.floor[name].value if self.floor else None
            out[name] = Score(value, low, high, floor)
        return out

    def score(self, images: torch.Tensor) -> dict[str, Score]:
        """uint8 generated images (M, 3, H, W) -> ``{'fid': Score, 'kid': Score}``."""
        return self.score_features(extract(self.extractor, images))
