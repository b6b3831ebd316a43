"""The segmentation score: can a segmenter read the right label map back out of G(A)?

pix2pix scored cityscapes photos with an FCN (the "FCN-score"), GAN Compression and GauGAN score with a segmenter
too: a generated image is good if a network trained on *real* images finds in it the layout it was asked to draw.
On the embedded tasks the renderer knows every pixel's class, so gclib trains its own segmenter on real training
renders (:func:`train_segmenter`, under a minute on 2 cores, cached under ``data/extractors/``) and scores

    mIoU = mean over classes c of  |pred = c and target = c| / |pred = c or target = c|

(pixels summed over the whole evaluation set, over the classes the targets contain). Facades: the target is A's label
map. Stripes: A's map with the animal turned striped, so both "kept the animal's shape" and "gave it stripes" count.
The segmenter's own score on real B images is the ceiling a generator can reach by this instrument.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts import load_artifact, save_artifact, set_aside
from ..data import ANIMAL_CLASSES, LABELS, default_data_dir, generate_embedded, to_tensor
from ..data.embedded import data_version
from ..progress import progress_bar
from .distribution import Score

SEGMENTER_VERSION = 2
# coats: class 3 is the animal in a coloured coat (the stripes task's striped animal)
CLASSES = {"facades": tuple(LABELS), "stripes": ANIMAL_CLASSES,
           "coats": ANIMAL_CLASSES[:3] + ("coated animal",)}
SIZE = 32  # the segmenter works at 32x32 (every class is still several pixels wide); other sizes are resized


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.SiLU())


class Segmenter(nn.Module):
    """float images (N, 3, H, W) in [-1, 1] -> class logits (N, K, H, W). A small U-Net on a 32x32 resize: 32 -> 16
    -> 8 pixels and back, with skip connections, so both a window's outline and the wall around it are in view."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        w = width
        self.down1, self.down2, self.bottom = _block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.up2, self.up1 = _block(4 * w + 2 * w, 2 * w), _block(2 * w + w, w)
        self.head = nn.Conv2d(w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = _resized(x)
        d1 = self.down1(x)                                                  # (N, w, 32, 32)
        d2 = self.down2(nn.functional.max_pool2d(d1, 2))                    # (N, 2w, 16, 16)
        b = self.bottom(nn.functional.max_pool2d(d2, 2))                    # (N, 4w, 8, 8)
        u2 = self.up2(torch.cat([nn.functional.interpolate(b, scale_factor=2), d2], 1))
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2), d1], 1))
        logits = self.head(u1)                                              # (N, K, 32, 32)
        if tuple(size) != (SIZE, SIZE):
            logits = nn.functional.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> class indices (N, H, W)."""
        device = next(self.parameters()).device
        return torch.cat([self(images[i:i + batch_size].to(device).float().div(127.5).sub(1)).argmax(1).cpu()
                          for i in range(0, len(images), batch_size)])


def _resized(images: torch.Tensor) -> torch.Tensor:
    """float images to the segmenter's size, antialiased as a camera would (what :class:`Segmenter` does)."""
    if tuple(images.shape[-2:]) == (SIZE, SIZE):
        return images
    return nn.functional.interpolate(images, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)


def _training_set(task: str, n_images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders at the segmenter's size and renders at twice that size shrunk to it (images are scored at both
    sizes), with their label maps."""
    xs, ys = [], []
    for size, n in ((SIZE, n_images // 2), (2 * SIZE, n_images - n_images // 2)):
        arrays = generate_embedded(task, "train", n, size, seed)
        if task == "facades":                                   # photos and their label maps
            images, labels = arrays["B"], arrays["label"]
        else:                                                   # plain and striped animals, to tell them apart
            images = np.concatenate([arrays["A"], arrays["B"]])
            labels = np.concatenate([arrays["label_A"], arrays["label_B"]])
        step = size // SIZE                                     # labels: every step-th pixel (nearest)
        xs.append(_resized(to_tensor(images)))
        ys.append(torch.from_numpy(labels[:, ::step, ::step].astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)


def train_segmenter(task: str, steps: int = 300, n_images: int = 400, seed: int = 0, progress: bool = True
                    ) -> Segmenter:
    """Train the segmenter of an embedded ``task`` on real renders of its *train* split (it never sees the images it
    later scores), with flips and faint noise so that it reads photos, not the renderer's exact pixels."""
    if task not in CLASSES:
        raise ValueError(f"no segmenter for task {task!r}; the embedded tasks are {sorted(CLASSES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images, labels = _training_set(task, n_images, seed)
        net = Segmenter(len(CLASSES[task]))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(seed)
        for _ in progress_bar(range(steps), f"{task} segmenter", disable=not progress):
            idx = torch.randint(len(images), (16,), generator=g)
            x, y = images[idx].clone(), labels[idx].clone()
            flip = torch.rand(16, generator=g) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            x = (x + 0.03 * torch.rand((16, 1, 1, 1), generator=g) * torch.randn(x.shape, generator=g)).clamp(-1, 1)
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    return net.eval()


def segmenter_path(task: str, data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir else default_data_dir()
    return root / "extractors" / f"segmenter_{task}_v{SEGMENTER_VERSION}.pt"


def load_segmenter(task: str, data_dir: str | Path | None = None, progress: bool = True) -> Segmenter:
    """The cached segmenter of ``task``, trained and cached first if needed."""
    path = segmenter_path(task, data_dir)
    if path.exists():
        state = load_artifact(path)
        if state["settings"].get("data_version", 3) == data_version(task):   # files before the field: version 3
            net = Segmenter(len(state["settings"]["classes"]), state["settings"]["width"])
            net.load_state_dict(state["model"])
            return net.eval()
        moved = set_aside(path, "other-data")
        print(f"{path.name} was trained on another version of the {task} task's images; set aside as {moved.name}")
    net = train_segmenter(task, progress=progress)
    save_artifact(path, {"model": net.state_dict(), "settings": {"version": SEGMENTER_VERSION, "task": task,
                                                                  "data_version": data_version(task),
                                                                  "classes": list(CLASSES[task]),
                                                                  "width": net.head.in_channels}})
    return net


def confusion(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> np.ndarray:
    """Per-image confusion matrices (N, K, K): entry [i, t, p] counts image i's pixels of class t predicted p."""
    flat = (target * n_classes + pred).flatten(1)
    return np.stack([np.bincount(row.numpy(), minlength=n_classes ** 2).reshape(n_classes, n_classes)
                     for row in flat])


def miou(conf: np.ndarray) -> float:
    """Mean IoU of a summed confusion matrix (K, K) over the classes present in the target (a class the target lacks
    but the prediction shows still costs: its pixels are missing from the right class's intersection)."""
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float((inter[present] / union[present]).mean())


def segmentation_score(segmenter: Segmenter, images: torch.Tensor, target: torch.Tensor, resamples: int = 200,
                       seed: int = 0) -> Score:
    """mIoU of the segmenter's reading of uint8 ``images`` against label maps ``target`` (N, H, W), with a 95%
    bootstrap interval over images."""
    n_classes = segmenter.head.out_channels
    per_image = confusion(segmenter.predict(images), target, n_classes)
    value = miou(per_image.sum(0))
    if not resamples:
        return Score(value, value, value)
    rng = np.random.default_rng(seed)
    boots = [miou(per_image[rng.integers(0, len(per_image), len(per_image))].sum(0)) for _ in range(resamples)]
    low, high = np.percentile(boots, [2.5, 97.5])
    return Score(value, float(low), float(high))
