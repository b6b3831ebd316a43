"""MACs, parameters, FID and KID (used by every notebook).

MACs are counted with torchprofile, the counter the paper's code uses: it traces the model and counts the
multiply-accumulates of convolutions and matrix products. A ``ConvTranspose2d`` is counted on its *output*
(each output pixel costs ``C_in/groups * k * k`` MACs per output channel); norms, activations and padding count 0.

FID and KID come from torchmetrics with a pluggable feature extractor:

- ``"inception"``: the standard TF-ported Inception-v3 pool3 features (2048-d) that published FIDs use; the weights
  are downloaded by torch-fidelity on a user's machine, or read from a local file (``inception_weights=PATH``).
- ``"offline"``: a small CNN trained by :func:`train_offline_extractor` on the embedded data, deterministic from its
  seed, cached under ``data/extractors/`` (under 1 MB). It needs no download. Its numbers are comparable with each
  other but **not** with published Inception FIDs: every figure says which extractor produced it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch import nn

from .artifacts import load_artifact, save_artifact
from .data import default_data_dir, generate_embedded, to_tensor, to_uint8


# ----------------------------------------------------------------------------------------------------------------
# MACs and parameters
# ----------------------------------------------------------------------------------------------------------------
def count_macs(model: nn.Module, image_size: int = 256, in_channels: int = 3,
               inputs: tuple[torch.Tensor, ...] | None = None) -> int:
    """Multiply-accumulates of one forward pass at batch 1, as torchprofile counts them. ``inputs``: the forward's
    arguments for generators that take more than one image (default: one zero image of ``image_size``)."""
    from torchprofile import profile_macs
    device = next(model.parameters()).device
    if inputs is None:
        inputs = (torch.zeros(1, in_channels, image_size, image_size),)
    inputs = tuple(x.to(device) for x in inputs)
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():  # torchprofile warns about ops it does not count (pads, norms, activations)
        warnings.simplefilter("ignore")
        macs = profile_macs(model, inputs if len(inputs) > 1 else inputs[0])
    model.train(was_training)
    return int(macs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module, image_size: int) -> dict:
    """``{'GMACs': ..., 'Mparams': ...}`` at ``image_size`` and batch 1."""
    return {"GMACs": count_macs(model, image_size) / 1e9, "Mparams": count_params(model) / 1e6}


# ----------------------------------------------------------------------------------------------------------------
# The offline feature extractor
# ----------------------------------------------------------------------------------------------------------------
OFFLINE_VERSION = 2
DEGRADATIONS = ("clean", "blur", "noise", "colour", "blocky", "shuffle")
# What the extractor must recognise in a clean image, like Inception recognises ImageNet classes:
CONTENT = ("brick facade", "plaster facade", "stone facade", "facade label map", "plain animal", "striped animal")


class OfflineFeatures(nn.Module):
    """uint8 images (N, 3, H, W), any size -> (N, 192) features, the role Inception's pool3 plays for FID.

    Four stride-2 convs on a 64x64 resize; the features are the spatial means of the last two stages (64 + 128
    channels), so both texture (8x8 stage) and layout (4x4 stage) count. It is trained (see
    :func:`train_offline_extractor`) to recognise what an embedded image shows (wall material, number of storeys and
    window columns, striped or plain animal) and which degradation it went through (blur, noise, colour shift,
    blockiness, shuffled layout), so its features move when a generator gets content or texture wrong."""

    num_features = 192

    def __init__(self):
        super().__init__()
        widths = [3, 16, 32, 64, 128]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU())
            for cin, cout in zip(widths[:-1], widths[1:]))       # 64 -> 32 -> 16 -> 8 -> 4 pixels
        self.heads = nn.ModuleDict({"degradation": nn.Linear(192, len(DEGRADATIONS)),
                                    "content": nn.Linear(192, len(CONTENT)),
                                    "floors": nn.Linear(192, 3), "cols": nn.Linear(192, 3)})  # 2, 3 or 4 each

    def features(self, x: torch.Tensor) -> torch.Tensor:      # float in [-1, 1], (N, 3, 64, 64) -> (N, 192)
        pooled = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float in [-1, 1] at 64x64."""
        x = images.float().div(127.5).sub(1.0)
        if x.shape[-1] != 64 or x.shape[-2] != 64:
            x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.features(self.prepare(images.to(next(self.parameters()).device)))


def degrade(x: torch.Tensor, kind: int, g: torch.Generator) -> torch.Tensor:
    """Apply degradation ``DEGRADATIONS[kind]`` to float images (N, 3, 64, 64) in [-1, 1]."""
    name = DEGRADATIONS[kind]
    if name == "clean":
        return x
    if name == "blur":
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None, :]) / 256
        k = k.expand(3, 1, 5, 5)
        return nn.functional.conv2d(nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=3)
    if name == "noise":
        return (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    if name == "colour":
        shift = (torch.rand(x.shape[0], 3, 1, 1, generator=g) - 0.5) * 0.6
        return (x + shift).clamp(-1, 1)
    if name == "blocky":
        return nn.functional.interpolate(nn.functional.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
    # shuffle: swap the 16x16 tiles of each image at random (right textures, wrong layout)
    n = x.shape[0]
    tiles = x.unfold(2, 16, 16).unfold(3, 16, 16)               # (N, 3, 4, 4, 16, 16)
    tiles = tiles.reshape(n, 3, 16, 16, 16)
    perm = torch.randperm(16, generator=g)
    tiles = tiles[:, :, perm].reshape(n, 3, 4, 4, 16, 16)
    return tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, 64, 64)


def offline_extractor_path(data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir else default_data_dir()
    return root / "extractors" / f"offline_v{OFFLINE_VERSION}.pt"


def train_offline_extractor(steps: int = 400, n_images: int = 600, seed: int = 0, progress: bool = True
                            ) -> OfflineFeatures:
    """Train :class:`OfflineFeatures` on the *train* split of both embedded tasks at 64x64 (it never sees the
    held-out or test images it later scores). Four heads share the features:

    - content: brick / plaster / stone facade, label map, plain / striped animal;
    - storeys and window columns of a facade (label maps and photos);
    - which degradation was applied (each image gets one at random, 'clean' included).
    """
    from tqdm.auto import tqdm
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        return _train_offline(steps, n_images, seed, progress, tqdm)


def _train_offline(steps: int, n_images: int, seed: int, progress: bool, tqdm) -> OfflineFeatures:
    fac = generate_embedded("facades", "train", n_images, 64, seed)
    ani = generate_embedded("stripes", "train", n_images // 3, 64, seed)
    n_maps, n_ani = n_images // 3, n_images // 3
    images = to_tensor(np.concatenate([fac["B"], fac["A"][:n_maps], ani["A"], ani["B"]]))
    content = torch.from_numpy(np.concatenate([fac["wall"], np.full(n_maps, 3), np.full(n_ani, 4),
                                               np.full(n_ani, 5)]))

    def counts(key: str) -> torch.Tensor:  # 2..4 storeys/columns -> classes 0..2; -100 (ignored): animals have none
        return torch.from_numpy(np.concatenate([fac[key] - 2, fac[key][:n_maps] - 2, np.full(2 * n_ani, -100)]))
    floors, cols = counts("floors"), counts("cols")

    net = OfflineFeatures()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    ce = nn.functional.cross_entropy
    bar = tqdm(range(steps), desc="offline extractor", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(images), (64,), generator=g)
        kinds = torch.randint(len(DEGRADATIONS), (64,), generator=g)
        x = images[idx]
        for k in range(len(DEGRADATIONS)):
            sel = kinds == k
            if sel.any():
                x[sel] = degrade(x[sel], k, g)
        f = net.features(x)
        loss = (ce(net.heads["degradation"](f), kinds) + ce(net.heads["content"](f), content[idx])
                + ce(net.heads["floors"](f), floors[idx], ignore_index=-100)
                + ce(net.heads["cols"](f), cols[idx], ignore_index=-100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


def load_offline_extractor(data_dir: str | Path | None = None, progress: bool = True) -> OfflineFeatures:
    """Load the cached offline extractor, training and caching it first if needed (about a minute on 2 cores)."""
    path = offline_extractor_path(data_dir)
    net = OfflineFeatures()
    if path.exists():
        net.load_state_dict(load_artifact(path)["model"])
        return net.eval()
    net = train_offline_extractor(progress=progress)
    save_artifact(path, {"model": net.state_dict(), "settings": {"version": OFFLINE_VERSION,
                                                                  "degradations": list(DEGRADATIONS),
                                                                  "content": list(CONTENT)}})
    return net


def inception_extractor(weights_path: str | None = None) -> nn.Module:
    """Inception-v3 pool3 (2048-d) of the FID literature. Without ``weights_path`` torch-fidelity downloads the
    'pt_inception-2015-12-05' weights on first use (needs internet); with it, the local file is read."""
    from torchmetrics.image.fid import NoTrainInceptionV3
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                              feature_extractor_weights_path=weights_path)


def get_extractor(name: str = "offline", inception_weights: str | None = None) -> nn.Module:
    if name == "offline":
        return load_offline_extractor()
    if name == "inception":
        return inception_extractor(inception_weights)
    raise ValueError(f"unknown feature extractor {name!r}; choose 'offline' or 'inception'")


# ----------------------------------------------------------------------------------------------------------------
# FID and KID
# ----------------------------------------------------------------------------------------------------------------
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Closed form between two Gaussians:  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean))


class FeatureDistance:
    """FID and KID between real and generated images through one feature extractor (torchmetrics underneath).

    Real statistics are kept across :meth:`reset_fake`, so a training loop can score many generators against the
    same real set cheaply."""

    def __init__(self, extractor: nn.Module, n_subset: int = 1000, kid_subsets: int = 100):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
        self.extractor = extractor
        self.name = "inception" if extractor.__class__.__name__ == "NoTrainInceptionV3" else "offline"
        self.fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
        with warnings.catch_warnings():  # torchmetrics warns that KID buffers features: ours are small
            warnings.simplefilter("ignore")
            self.kid = KernelInceptionDistance(feature=extractor, subsets=kid_subsets, subset_size=n_subset,
                                               reset_real_features=False)
        self.n_real = self.n_fake = 0
        self.n_subset = n_subset

    def update(self, images: torch.Tensor, real: bool) -> None:
        """images: uint8 (N, 3, H, W)."""
        images = images.cpu()
        self.fid.update(images, real=real)
        self.kid.update(images, real=real)
        if real:
            self.n_real += len(images)
        else:
            self.n_fake += len(images)

    def reset_fake(self) -> None:
        self.fid.reset()
        self.kid.reset()
        self.n_fake = 0

    def compute(self) -> dict:
        """``{'fid', 'kid', 'kid_std'}``; KID is reported x1000 as is customary."""
        # KID averages an unbiased MMD over random subsets; with fewer than 2 x n_subset images, subsets of half the
        # images keep the subsets different from each other, so kid_std says something about the spread.
        self.kid.subset_size = max(2, min(self.n_subset, self.n_real // 2, self.n_fake // 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fid = float(self.fid.compute())
            with torch.random.fork_rng(devices=[]):  # KID draws random subsets: a fixed draw makes it reproducible
                torch.manual_seed(0)
                kid_mean, kid_std = self.kid.compute()
        return {"fid": fid, "kid": 1000 * float(kid_mean), "kid_std": 1000 * float(kid_std)}


@torch.no_grad()
def generate(G: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Run G in eval mode over float inputs (N, 3, H, W) in [-1, 1]; returns uint8 (N, 3, H, W) on the CPU."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    outs = [to_uint8(G(inputs[i:i + batch_size].to(device))).cpu() for i in range(0, len(inputs), batch_size)]
    G.train(was_training)
    return torch.cat(outs)


@torch.no_grad()
def l1_to_target(G: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Paired tasks only: mean |G(A) - B| in 0..255 grey levels, on the uint8 images a user would see."""
    fake = generate(G, inputs).float()
    real = to_uint8(targets).float()
    return float((fake - real).abs().mean())


class GeneratorScorer:
    """Scores a generator on a fixed evaluation set: FID/KID of G(inputs) against the real target images.

    Paired tasks compare with the targets of the same split; unpaired ones with the split's domain-B images."""

    def __init__(self, inputs: torch.Tensor, real_images: torch.Tensor, extractor: nn.Module):
        self.inputs = inputs                                    # float (N, 3, H, W) in [-1, 1]
        self.metric = FeatureDistance(extractor)
        for i in range(0, len(real_images), 64):
            self.metric.update(to_uint8(real_images[i:i + 64]), real=True)

    def __call__(self, G: nn.Module) -> dict:
        self.metric.reset_fake()
        self.metric.update(generate(G, self.inputs), real=False)
        return self.metric.compute()
