"""Feature extractors for FID/KID, and the damage they must see.

- ``"inception"``: the standard TF-ported Inception-v3 pool3 features (2048-d) that published FIDs use; the weights
  are downloaded once into ``data/extractors/`` (or read from a local file, ``inception_weights=PATH``), checked
  against the official file's digest and loaded with ``weights_only=True``: a file can hold only tensors, no code.
- ``"offline"``: :class:`OfflineFeatures`, a small CNN trained by :func:`train_offline_extractor` on the embedded
  training images, deterministic from its seed, cached under ``data/extractors/`` (under 1 MB), no download. Its
  numbers are comparable with each other but **not** with published Inception FIDs: every figure says which
  extractor produced it.

A distribution metric is only useful if it moves when images get worse. :func:`damage` applies five kinds of damage
at a strength given in the units a person would use (grey levels of noise, pixels of blur, ...); the damage ladder
of :mod:`gclib.metrics.validation` checks that FID through the offline extractor rises with every kind and leaves its
floor (two real samples) already at the faintest step. The extractor is trained to *measure* damage, not only to
spot it: besides what an image shows (wall material, storeys, window columns, striped or plain animal), it learns
which damage an image went through and how strong it was, from faint (1 grey level of noise) to gross.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts import load_artifact, save_artifact
from ..data import default_data_dir, generate_embedded, to_tensor
from ..progress import progress_bar

OFFLINE_VERSION = 3
# The kinds of damage, each with its range of strengths (faintest, strongest) in natural units.
DAMAGE = {
    "noise": (1.0, 32.0),    # standard deviation of Gaussian noise, grey levels (0..255)
    "blur": (0.3, 2.5),      # standard deviation of a Gaussian blur, pixels (of a 64x64 image)
    "colour": (2.0, 64.0),   # length of a random RGB shift of the whole image, grey levels
    "blocky": (0.05, 1.0),   # weight of the 4x4-block average blended into the image (1: fully blocky)
    "content": (2, 16),      # 16x16 tiles of the 4x4 grid put in the wrong place (right texture, wrong layout)
}
KINDS = ("clean",) + tuple(DAMAGE)
# What the extractor must recognise in a clean image, like Inception recognises ImageNet classes:
CONTENT = ("brick facade", "plaster facade", "stone facade", "facade label map", "plain animal", "striped animal")


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def damage(x: torch.Tensor, kind: str, strength: float, g: torch.Generator) -> torch.Tensor:
    """Float images (N, 3, H, W) in [-1, 1] with ``kind`` of damage at ``strength`` (units: see ``DAMAGE``)."""
    if kind == "clean" or strength <= 0:
        return x
    grey = 2.0 / 255                                            # one grey level in [-1, 1] units
    if kind == "noise":
        return (x + strength * grey * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    if kind == "blur":                                          # separable Gaussian, reflected borders
        k = _gaussian_kernel(strength)
        r = len(k) // 2
        c = x.shape[1]
        x = nn.functional.conv2d(nn.functional.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(
            c, 1, 1, -1), groups=c)
        return nn.functional.conv2d(nn.functional.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(
            c, 1, -1, 1), groups=c)
    if kind == "colour":                                        # one random direction per image, fixed length
        direction = torch.randn(x.shape[0], 3, 1, 1, generator=g)
        direction = direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return (x + strength * grey * direction).clamp(-1, 1)
    if kind == "blocky":
        h, w = x.shape[-2:]
        blocks = nn.functional.interpolate(nn.functional.avg_pool2d(x, 4), size=(h, w), mode="nearest")
        return (1 - strength) * x + strength * blocks
    if kind == "content":                                       # move `strength` of the 16 tiles
        n, c, h, w = x.shape
        th, tw = h // 4, w // 4
        tiles = x.reshape(n, c, 4, th, 4, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, 16, c, th, tw)
        out = tiles.clone()
        for i in range(n):                                      # a derangement of k tiles (a cycle moves them all)
            k = int(round(strength))
            chosen = torch.randperm(16, generator=g)[:k]
            out[i, chosen] = tiles[i, chosen.roll(1)] if k > 1 else tiles[i, chosen]
        return out.reshape(n, 4, 4, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
    raise ValueError(f"unknown damage {kind!r}; choose one of {KINDS}")


def strength_at(kind: str, level: float) -> float:
    """The strength at ``level`` in [0, 1] of the kind's range, spaced geometrically (faint steps are finer)."""
    lo, hi = DAMAGE[kind]
    value = lo * (hi / lo) ** level
    return float(round(value)) if kind == "content" else value


class OfflineFeatures(nn.Module):
    """uint8 images (N, 3, H, W), any size -> (N, 294) features, the role Inception's pool3 plays for FID.

    Four stride-2 convolution stages on a 64x64 resize (64 -> 32 -> 16 -> 8 -> 4 pixels). Features: the spatial
    mean of every stage (what is where, fine to coarse: 16+32+64+128), the spatial standard deviation of the
    first two (texture energy, where blur and blockiness show: 16+32), and six fixed fine-texture statistics
    (:meth:`fine_texture`, where noise shows). Each feature is then standardised by its mean and spread over clean
    real training images (``center``, ``scale``, set after training), so that no feature outweighs the others in FID
    merely by its units."""

    num_features = 294
    widths = (3, 16, 32, 64, 128)

    def __init__(self):
        super().__init__()
        w = self.widths
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU())
            for cin, cout in zip(w[:-1], w[1:]))
        self.heads = nn.ModuleDict({"kind": nn.Linear(self.num_features, len(KINDS)),
                                    "strength": nn.Linear(self.num_features, len(DAMAGE)),
                                    "content": nn.Linear(self.num_features, len(CONTENT)),
                                    "floors": nn.Linear(self.num_features, 3), "cols": nn.Linear(self.num_features, 3)})
        self.register_buffer("center", torch.zeros(self.num_features))
        self.register_buffer("scale", torch.ones(self.num_features))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """float in [-1, 1], (N, 3, 64, 64) -> the four stages' maps (N, C_i, H_i, W_i)."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    @staticmethod
    def fine_texture(x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 6): per colour channel, the 10th and 25th percentiles of |Laplacian| in
        grey levels. Most of a clean image is flat or smooth (sky, plaster, glass, a coat), where the Laplacian is
        near 0; speckle and noise lift exactly these low percentiles, which the learned features, averaged over
        whole images, barely notice. A fixed filter, not learned."""
        lap = x.new_tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).expand(3, 1, 3, 3)
        response = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), lap, groups=3)
        q = torch.quantile(response.abs().flatten(2) * 127.5, x.new_tensor([0.10, 0.25]), dim=2)  # (2, N, 3)
        return q.permute(1, 2, 0).flatten(1)

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:  # float in [-1, 1], (N, 3, 64, 64) -> (N, 294)
        maps = self.feature_maps(x)
        return torch.cat([m.mean(dim=(2, 3)) for m in maps] + [m.std(dim=(2, 3)) for m in maps[:2]]
                         + [self.fine_texture(x)], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features (N, 294): (raw - center) / scale."""
        return (self.raw_features(x) - self.center) / self.scale

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


def offline_extractor_path(data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir else default_data_dir()
    return root / "extractors" / f"offline_v{OFFLINE_VERSION}.pt"


def train_offline_extractor(steps: int = 500, n_images: int = 600, seed: int = 0, progress: bool = True
                            ) -> OfflineFeatures:
    """Train :class:`OfflineFeatures` on the *train* split of both embedded tasks at 64x64 (it never sees the
    held-out or test images it later scores). Five heads share the features:

    - content: brick / plaster / stone facade, label map, plain / striped animal;
    - storeys and window columns of a facade (label maps and photos);
    - which damage an image went through ('clean' included, one kind per image, drawn at random);
    - how strong it was: the level in [0, 1] of the kind's range (regression), so faint and strong damage of one
      kind land at different places in feature space.
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        return _train_offline(steps, n_images, seed, progress)


def _train_offline(steps: int, n_images: int, seed: int, progress: bool) -> OfflineFeatures:
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
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    ce = nn.functional.cross_entropy
    bar = progress_bar(range(steps), "offline extractor", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(images), (64,), generator=g)
        kinds = torch.randint(len(KINDS), (64,), generator=g)
        levels = torch.rand(64, generator=g)
        x = images[idx].clone()
        for i in range(64):
            kind = KINDS[int(kinds[i])]
            if kind != "clean":
                x[i:i + 1] = damage(x[i:i + 1], kind, strength_at(kind, float(levels[i])), g)
        f = net.raw_features(x)
        damaged = kinds > 0
        predicted = net.heads["strength"](f)[damaged].gather(1, (kinds[damaged] - 1).view(-1, 1)).squeeze(1)
        loss = (ce(net.heads["kind"](f), kinds) + 4 * nn.functional.mse_loss(predicted, levels[damaged])
                + ce(net.heads["content"](f), content[idx])
                + ce(net.heads["floors"](f), floors[idx], ignore_index=-100)
                + ce(net.heads["cols"](f), cols[idx], ignore_index=-100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    net.eval()
    with torch.no_grad():                               # standardise on clean real training images
        raw = torch.cat([net.raw_features(images[i:i + 256]) for i in range(0, len(images), 256)])
        net.center.copy_(raw.mean(0))
        # at least 1e-4, and 1 grey level for the fine-texture statistics (near 0 on flat renders)
        net.scale.copy_(torch.maximum(raw.std(0), torch.cat([torch.full((288,), 1e-4), torch.ones(6)])))
    return net


def load_offline_extractor(data_dir: str | Path | None = None, progress: bool = True) -> OfflineFeatures:
    """Load the cached offline extractor, training and caching it first if needed (about two minutes on 2 cores)."""
    path = offline_extractor_path(data_dir)
    net = OfflineFeatures()
    if path.exists():
        net.load_state_dict(load_artifact(path)["model"])
        return net.eval()
    net = train_offline_extractor(progress=progress)
    save_artifact(path, {"model": net.state_dict(), "settings": {"version": OFFLINE_VERSION, "damage": DAMAGE,
                                                                  "content": list(CONTENT)}})
    return net


# The TF-ported Inception-v3 weights that published FIDs use (torch-fidelity's release, 95,628,359 bytes; its name
# carries the first hex digits of this SHA-256). A file with another digest is not those weights.
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"


def inception_weights_path(data_dir: str | Path | None = None) -> Path:
    """Where the Inception weights are kept once downloaded (or where a user without internet copies them)."""
    return Path(data_dir or default_data_dir()) / "extractors" / Path(INCEPTION_URL).name


def load_inception_state(path: str | Path, sha256: str | None = INCEPTION_SHA256) -> dict:
    """The Inception-v3 state dict in ``path``, read without running any code from the file
    (:func:`load_checked_state`)."""
    return load_checked_state(path, sha256, "Inception", INCEPTION_URL, "inception_weights=PATH")


def load_checked_state(path: str | Path, sha256: str | None, name: str, url: str, option: str) -> dict:
    """The state dict of the official ``name`` weights (from ``url``) in ``path``, read without running code.

    ``torch.load(weights_only=True)`` accepts only tensors and plain containers, so a crafted pickle is refused
    instead of executed; the file's SHA-256 must be ``sha256`` (the official file's, all 64 digits; None: a file
    the caller vouches for). ``option`` says how a user points gclib at the file."""
    from ..data import DatasetError
    from ..data.download import sha256_of
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {name} weights at {path}: download {url} on a machine with "
                                f"internet and copy it there (or set {option})")
    if sha256 is not None and sha256_of(path) != sha256:
        raise DatasetError(f"{path} is not the official {name} weights: its SHA-256 is {sha256_of(path)}, the "
                           f"official file's is {sha256}. Download {url} again.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # pickle.UnpicklingError for anything beyond tensors and containers
        raise DatasetError(f"{path} is not a plain file of weights and was not loaded (it would have run code or "
                           f"holds objects other than tensors): {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DatasetError(f"{path} does not hold a state dict of tensors")
    return state


def inception_extractor(weights_path: str | Path | None = None, sha256: str | None = INCEPTION_SHA256) -> nn.Module:
    """Inception-v3 pool3 (2048-d) of the FID literature, its weights loaded safely (:func:`load_inception_state`).

    Without ``weights_path`` the official file is downloaded once (resumable, checked) to
    :func:`inception_weights_path`; offline, copy that file there or pass its path."""
    import tempfile

    from torchmetrics.image.fid import NoTrainInceptionV3

    from ..data.download import fetch
    if weights_path is None:
        weights_path = inception_weights_path()
        if not weights_path.exists():
            fetch(INCEPTION_URL, weights_path)
    state = load_inception_state(weights_path, sha256)
    # torch-fidelity builds the network from a file it unpickles in full; hand it a copy we wrote ourselves from the
    # checked tensors, so nothing of the user's file is ever unpickled that way
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "inception.pt"
        torch.save({k: v.contiguous() for k, v in state.items()}, clean)
        try:
            return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=str(clean))
        except RuntimeError as e:   # load_state_dict: missing or unexpected keys, wrong shapes
            from ..data import DatasetError
            raise DatasetError(f"{weights_path} holds tensors, but not Inception-v3's: "
                               f"{str(e).splitlines()[0]}") from None


# VGG19 (torchvision's ImageNet weights), the perceptual loss network of GauGAN; never downloaded by gclib.
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"    # 574,673,361 bytes
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"


class VGG19Features(nn.Module):
    """VGG19's convolutions up to relu5_1 (torchvision's ``features[:30]``): ``feature_maps(x)`` returns relu1_1,
    relu2_1, relu3_1, relu4_1 and relu5_1 of float images in [-1, 1], normalised as ImageNet was."""

    cuts = (2, 7, 12, 21, 30)   # features[0:2] -> relu1_1, [2:7] -> relu2_1, ... [21:30] -> relu5_1

    def __init__(self):
        super().__init__()
        from torchvision.models import vgg19
        self.features = vgg19(weights=None).features[:self.cuts[-1]]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        maps, start = [], 0
        for end in self.cuts:
            x = self.features[start:end](x)
            maps.append(x)
            start = end
        return maps


def vgg19_features(path: str | Path, sha256: str | None = VGG19_SHA256) -> VGG19Features:
    """VGG19's feature layers with the weights in ``path`` (torchvision's ``vgg19-dcbb9e9d.pth``, or a file of its
    ``features.*`` tensors), checked and read safely (:func:`load_checked_state`)."""
    from ..data import DatasetError
    state = load_checked_state(path, sha256, "VGG19", VGG19_URL, "the preset field spade.vgg_weights")
    net = VGG19Features()
    wanted = {k: v for k, v in state.items() if k.startswith("features.")
              and int(k.split(".")[1]) < VGG19Features.cuts[-1]}
    try:
        net.features.load_state_dict({k[len("features."):]: v for k, v in wanted.items()})
    except RuntimeError as e:
        raise DatasetError(f"{path} holds tensors, but not VGG19's: {str(e).splitlines()[0]}") from None
    return net.eval()


def get_extractor(name: str = "offline", inception_weights: str | None = None) -> nn.Module:
    if name == "offline":
        return load_offline_extractor()
    if name == "inception":
        return inception_extractor(inception_weights)
    raise ValueError(f"unknown feature extractor {name!r}; choose 'offline' or 'inception'")
