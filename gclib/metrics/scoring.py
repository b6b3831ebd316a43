"""Scoring a generator: every metric of a task, with its floor and its bootstrap interval.

- **Distribution** (every task): FID and KID of G(A) against real images of domain B (:mod:`.distribution`).
- **Distance to the target** (paired tasks, per image, then averaged): L1 in grey levels, PSNR in dB, and a
  perceptual distance: the mean squared difference of the offline extractor's channel-normalised feature maps,
  stage by stage (the recipe of LPIPS, with an extractor that needs no download and untrained layer weights):

      d(x, y) = sum_l mean_{h,w} | f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)| |^2     (f_l: stage l, normalised over channels)

The floor of a paired distance is 0 (the target itself); of FID/KID, two real samples (see :mod:`.distribution`).
- **Segmentation** (where label maps are known): the mIoU of a segmenter's reading of G(A) (:mod:`.segmentation`).
- **Diversity** (multimodal generators, G(a, s)): the perceptual distance between two images of one input drawn
  with two random style codes; 0 for a generator that ignores its style.

Per-image metrics and the mIoU get a bootstrap interval over images.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import default_data_dir, to_uint8
from .distribution import FeatureSet, Score, extract
from .segmentation import segmentation_score


@torch.no_grad()
def generate(G: nn.Module, inputs: torch.Tensor, styles: torch.Tensor | None = None, batch_size: int = 32
             ) -> torch.Tensor:
    """Run G in eval mode over float inputs (N, 3, H, W) in [-1, 1], each with its style code (N, style_dim, 1, 1)
    when ``styles`` is given (a multimodal generator: ``G(a, s)``); returns uint8 (N, 3, H, W) on the CPU."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    outs = []
    for i in range(0, len(inputs), batch_size):
        x = inputs[i:i + batch_size].to(device)
        outs.append(to_uint8(G(x) if styles is None else G(x, styles[i:i + batch_size].to(device))).cpu())
    G.train(was_training)
    return torch.cat(outs)


def style_codes(n: int, style_dim: int, seed: int = 0) -> torch.Tensor:
    """n style codes ~ N(0, I), (n, style_dim, 1, 1), the same for every model scored with this seed (so a student
    and its teacher are compared on the same codes)."""
    return torch.randn(n, style_dim, 1, 1, generator=torch.Generator().manual_seed(seed))


def perceptual_net(extractor: nn.Module | None = None) -> nn.Module:
    """The network perceptual distances go through: ``extractor`` if it has feature maps (the offline one), else
    the offline extractor (Inception's features are not used for distances)."""
    if extractor is not None and hasattr(extractor, "feature_maps"):
        return extractor
    from .features import load_offline_extractor
    return load_offline_extractor(progress=False)


@torch.no_grad()
def perceptual_distances(x: torch.Tensor, y: torch.Tensor, extractor: nn.Module | None = None) -> np.ndarray:
    """The perceptual distance (module docstring) between uint8 images x[i] and y[i], (N,), through
    :func:`perceptual_net`. Between two images of one input drawn with two style codes, it is that input's
    **diversity**: 0 for a generator that ignores its code."""
    return paired_distances(x, y, perceptual_net(extractor))["perceptual"]


@torch.no_grad()
def l1_to_target(G: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Paired tasks only: mean |G(A) - B| in 0..255 grey levels, on the uint8 images a user would see."""
    return float(paired_distances(generate(G, inputs), to_uint8(targets))["l1"].mean())


@torch.no_grad()
def paired_distances(fake: torch.Tensor, target: torch.Tensor, extractor: nn.Module | None = None,
                     batch_size: int = 100) -> dict[str, np.ndarray]:
    """Per-image distances between uint8 images (N, 3, H, W): ``l1`` (grey levels), ``psnr`` (dB, peak 255) and,
    with the offline ``extractor``, ``perceptual`` (see the module docstring)."""
    diff = fake.double() - target.double()
    l1 = diff.abs().flatten(1).mean(1)
    mse = (diff ** 2).flatten(1).mean(1).clamp_min(1e-3)         # a perfect copy: PSNR capped near 78 dB
    out = {"l1": l1.numpy(), "psnr": (10 * torch.log10(255.0 ** 2 / mse)).numpy()}
    if extractor is not None and hasattr(extractor, "feature_maps"):
        values = []
        for i in range(0, len(fake), batch_size):
            fx = extractor.feature_maps(extractor.prepare(fake[i:i + batch_size]))
            fy = extractor.feature_maps(extractor.prepare(target[i:i + batch_size]))
            per_stage = [(nn.functional.normalize(a, dim=1) - nn.functional.normalize(b, dim=1)).pow(2).sum(1)
                         .mean(dim=(1, 2)) for a, b in zip(fx, fy)]
            values.append(torch.stack(per_stage).sum(0))
        out["perceptual"] = torch.cat(values).double().numpy()
    return out


def mean_with_interval(values: np.ndarray, resamples: int = 200, seed: int = 0) -> Score:
    """The mean of per-image ``values`` with the 95% bootstrap interval over images."""
    value = float(values.mean())
    if not resamples:
        return Score(value, value, value)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Score(value, float(low), float(high))


class GeneratorScorer:
    """Scores generators on one evaluation split: FID/KID of G(inputs) against ``real_images`` (domain B) and, for
    splits whose right answers are known (``targets``: paired tasks, the embedded unpaired task's oracle), the
    distances to them.

    ``floor_images``: an independent real sample of domain B (at least as many images) for the FID/KID floor;
    ``resamples``: bootstrap resamples per interval, 0 for the cheap periodic evaluations during training;
    ``style_dim``: a multimodal generator's style length (0: none). Its images are drawn with one random code per
    input, the same codes for every model (:func:`style_codes`), and it is also scored for ``diversity``: the
    perceptual distance between those images and the same inputs drawn with a second code each.
    A call returns a flat dict: ``fid``, ``kid`` and, with intervals, ``fid low``, ``fid high``, ``fid floor``, ...;
    paired: ``l1``, ``psnr``, ``perceptual`` likewise."""

    def __init__(self, inputs: torch.Tensor, real_images: torch.Tensor, extractor: nn.Module,
                 targets: torch.Tensor | None = None, floor_images: torch.Tensor | None = None,
                 resamples: int = 0, segmenter: nn.Module | None = None, label_target: torch.Tensor | None = None,
                 cache_dir=None, style_dim: int = 0):
        self.inputs = inputs                                    # float (N, 3, H, W) in [-1, 1]
        self.style_dim = style_dim
        self.styles = self.other_styles = None                  # (N, style_dim, 1, 1) each: two codes per input
        if style_dim:
            self.styles, self.other_styles = style_codes(2 * len(inputs), style_dim).chunk(2)
            self.perceptual_net = perceptual_net(extractor)     # loaded once, not at every evaluation
        self.targets = to_uint8(targets) if targets is not None else None
        self.extractor, self.resamples = extractor, resamples
        self.segmenter, self.label_target = segmenter, label_target   # label_target: (N, H, W) what G(A) shows
        self.features = FeatureSet(extractor, to_uint8(real_images),
                                   to_uint8(floor_images) if floor_images is not None else None, resamples,
                                   cache_dir=cache_dir)

    @property
    def floor(self) -> dict | None:
        """FID/KID of the independent real sample: ``{'fid': Score, 'kid': Score}`` (None without one)."""
        return self.features.floor

    def score_images(self, fake: torch.Tensor) -> dict:
        """Scores of already generated uint8 images, in the order of this split's inputs."""
        out: dict = {}
        for name, score in self.features.score(fake).items():   # without resamples: the values only
            out.update(score.as_dict(name) if self.resamples else {name: score.value})
        if self.targets is not None:
            for name, values in paired_distances(fake, self.targets, self.extractor).items():
                score = mean_with_interval(values, 2 * self.resamples)
                out.update(score.as_dict(name) if self.resamples else {name: score.value})
        if self.segmenter is not None and self.label_target is not None:
            score = segmentation_score(self.segmenter, fake, self.label_target, 2 * self.resamples)
            out.update(score.as_dict("mIoU") if self.resamples else {"mIoU": score.value})
        return out

    def paired_gain(self, baseline: nn.Module, G: nn.Module, resamples: int = 200, seed: int = 0,
                    only: tuple[str, ...] = ()) -> dict:
        """How much better ``G`` is than ``baseline`` on this split, ``{metric: Score}``: the gain (positive: ``G`` is
        better) with its 95% **paired** bootstrap interval. Both models translate the same inputs, and every
        resample draws the same inputs for both (and, for FID/KID, the same real images), so what the two share (an
        input hard for both) cancels: a gain whose interval excludes 0 is one these images tell apart, even where it
        is far smaller than either score's own interval.

            distances to the target (paired tasks):  gain = mean_i [d_i(baseline) - d_i(G)]   (l1, perceptual)
                                                     gain = mean_i [psnr_i(G) - psnr_i(baseline)]
            FID, KID (every task):                   gain = FID(real, baseline(A)) - FID(real, G(A))

        The mIoU (a score of the whole set's confusion) and a multimodal family's diversity get none. ``only``:
        these metrics (default: every one there is; an FID interval costs two FIDs per resample)."""
        known = set(self.features.statistics())
        if self.targets is not None:
            known |= {"l1", "psnr"} | ({"perceptual"} if hasattr(self.extractor, "feature_maps") else set())
        if set(only) - known:
            raise ValueError(f"paired_gain: no paired interval for {sorted(set(only) - known)} on this split; it has "
                             f"{sorted(known)} (the mIoU and the diversity are scores of a whole set; distances to a "
                             f"target need a paired task)")
        base_images, new_images = generate(baseline, self.inputs, self.styles), generate(G, self.inputs, self.styles)
        out = {}
        if not only or {"fid", "kid"} & set(only):
            features = self.features
            out = features.paired_difference(extract(features.extractor, base_images),
                                             extract(features.extractor, new_images), resamples, seed, only)
        if self.targets is not None and (not only or {"l1", "psnr", "perceptual"} & set(only)):
            base = paired_distances(base_images, self.targets, self.extractor)
            new = paired_distances(new_images, self.targets, self.extractor)
            sign = {"psnr": -1.0}
            out.update({name: mean_with_interval(sign.get(name, 1.0) * (base[name] - new[name]), resamples, seed)
                        for name in base if not only or name in only})
        return out

    def __call__(self, G: nn.Module) -> dict:
        fake = generate(G, self.inputs, self.styles)
        out = self.score_images(fake)
        if self.style_dim:                  # the same inputs drawn with their second codes: the diversity
            other = generate(G, self.inputs, self.other_styles)
            score = mean_with_interval(perceptual_distances(fake, other, self.perceptual_net), 2 * self.resamples)
            out.update(score.as_dict("diversity") if self.resamples else {"diversity": score.value})
        return out


def split_scorer(data, split: str, extractor: nn.Module, segmenter: nn.Module | None = None, resamples: int = 100,
                 style_dim: int = 0) -> GeneratorScorer:
    """The scorer of ``split`` ('heldout' or 'test') of a :class:`gclib.data.TaskData`: FID/KID against the split's
    domain-B images, their floor from the *other* evaluation split's domain-B images (an independent real sample of
    the same task), the distances to the split's targets on paired tasks, with a ``segmenter`` the mIoU of G(A)
    against the split's target label maps, and with ``style_dim`` (a multimodal family's) random styles and the
    diversity.

    The embedded unpaired task also knows an oracle translation (A redrawn striped), but no pixel distance is taken
    to it: no unpaired model can know the phase of the oracle's stripes, so a pixel distance rewards leaving the
    animal untouched (measured: copying A scores L1 13 to the oracle, a good CycleGAN teacher 24). Its content is
    judged by the mIoU (is the animal read as striped, the rest as it was?); the oracle is for figures."""
    if split not in ("heldout", "test"):
        raise ValueError(f"split must be 'heldout' or 'test', got {split!r}")
    this, other = (data.heldout, data.test) if split == "heldout" else (data.test, data.heldout)
    n = min(len(this.B), len(other.B))          # the floor compares two samples of the same size
    labels, targets = this.label_target, (this.target if data.paired else None)
    # a real dataset's statistics (its test and held-out features) are computed once and kept in data/stats/
    cache_dir = None if getattr(data.train, "in_memory", True) else default_data_dir() / "stats"
    return GeneratorScorer(this.A[:n], this.B[:n], extractor, targets=targets[:n] if targets is not None else None,
                           floor_images=other.B[:n], resamples=resamples, segmenter=segmenter,
                           label_target=labels[:n] if labels is not None else None, cache_dir=cache_dir,
                           style_dim=style_dim)


def report_name(metric: str, extractor: str = "offline") -> str:
    """How a score is named in tables and records: the distribution metrics say their feature extractor."""
    return {"fid": f"FID ({extractor})", "kid": f"KID x1000 ({extractor})", "l1": "L1 to target (0-255)",
            "psnr": "PSNR (dB)", "perceptual": "perceptual distance", "mIoU": "mIoU (segmenter)",
            "diversity": "diversity (perceptual)"}.get(metric, metric)
