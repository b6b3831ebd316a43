"""Datasets (notebook 01): two embedded, generated tasks and loaders for the real pix2pix/CycleGAN datasets.

Embedded tasks (the default: no download, deterministic from a seed, any resolution 32..256):

- ``facades`` (paired, in the spirit of CMP facades / cityscapes): a colour-coded label map -> a rendered building.
  The rendering is a deterministic function of the label map, but it needs context a small network struggles with:
  brick courses anchored to the building's outline, window frames and a mullion cross at each window's centre,
  glass shaded by the position inside its window, shadows cast under sills and cornices.
- ``stripes`` (unpaired, in the spirit of horse2zebra): domain A holds plain brown animals on grass, domain B
  striped ones, drawn from independent seeds so no pair exists.

Every image is an ``uint8`` array (H, W, 3); the torch datasets return float tensors in [-1, 1], (3, H, W).
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .checkpoint import atomic_write_bytes

SPLITS = ("train", "heldout", "test")
EMBEDDED_TASKS = {"facades": "paired", "stripes": "unpaired"}
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def default_data_dir() -> Path:
    """``$GCLIB_DATA`` if set, else the repository's ``data/`` folder (next to ``gclib/``)."""
    env = os.environ.get("GCLIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


# ----------------------------------------------------------------------------------------------------------------
# Embedded paired task: label map -> rendered facade
# ----------------------------------------------------------------------------------------------------------------
# Label colours (the network's input). Three wall classes tell the renderer which material the wall is made of.
LABELS = {
    "sky": (10, 20, 120),
    "brick": (230, 60, 60),
    "plaster": (240, 200, 60),
    "stone": (150, 150, 150),
    "window": (40, 200, 240),
    "door": (160, 60, 200),
    "balcony": (60, 220, 90),
    "cornice": (250, 130, 20),
}
WALLS = ("brick", "plaster", "stone")


def _box(mask: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
    h, w = mask.shape
    return max(0, y0), min(h, y1), max(0, x0), min(w, x1)


def _facade(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """One (label map, photo) pair, both (size, size, 3) uint8, and its (wall material, storeys, columns)."""
    s = size / 64.0                                   # every length below is in 64-pixel units, scaled by s
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = np.zeros((size, size), np.int16)           # index into CLASSES
    classes = list(LABELS)
    cls = {name: i for i, name in enumerate(classes)}
    photo = np.zeros((size, size, 3), np.float32)

    # Building outline: sky above and maybe at the sides, wall down to the bottom edge.
    top = int(rng.integers(4, 16) * s)
    left = int(rng.integers(0, 10) * s) if rng.random() < 0.6 else 0
    right = size - (int(rng.integers(0, 10) * s) if rng.random() < 0.6 else 0)
    wall = WALLS[rng.integers(len(WALLS))]
    label[:] = cls["sky"]
    label[top:, left:right] = cls[wall]

    # Sky: blue, lighter towards the horizon (the building's top).
    t = np.clip(yy / max(top, 1), 0, 1)[..., None]
    photo[:] = (1 - t) * np.array([70, 120, 200]) + t * np.array([170, 200, 235])

    # Wall material, anchored to the building's top-left corner.
    wy, wx = yy - top, xx - left
    if wall == "brick":
        course = 4 * s                                 # brick height; bricks are twice as long as high
        row = np.floor(wy / course)
        offset = (row % 2) * course                    # every other course shifted by half a brick
        mortar = (np.mod(wy, course) < s) | (np.mod(wx + offset, 2 * course) < s)
        color = np.where(mortar[..., None], np.array([205, 195, 180]), np.array([160, 65, 45]))
    elif wall == "plaster":
        band = np.mod(wy, 16 * s) / (16 * s)           # soft horizontal bands between storeys
        color = np.array([225, 205, 160])[None, None] * (0.92 + 0.08 * np.cos(2 * np.pi * band))[..., None]
    else:  # stone: large blocks with dark joints, alternate courses shifted by a third
        course = 8 * s
        row = np.floor(wy / course)
        offset = np.mod(row, 3) * course
        joint = (np.mod(wy, course) < s) | (np.mod(wx + offset, 3 * course) < s)
        color = np.where(joint[..., None], np.array([90, 90, 95]), np.array([165, 165, 170]))
    on_wall = label == cls[wall]
    photo[on_wall] = color[on_wall] if color.ndim == 3 else color

    # Storeys and window columns.
    n_floors = int(rng.integers(2, 5))
    n_cols = int(rng.integers(2, 5))
    floor_h = (size - top) / n_floors
    col_w = (right - left) / n_cols
    win_h = floor_h * rng.uniform(0.45, 0.65)
    win_w = col_w * rng.uniform(0.4, 0.65)
    door_col = int(rng.integers(n_cols))
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    for f in range(n_floors):
        fy0 = top + f * floor_h
        if f > 0 and rng.random() < 0.5:                # a cornice line between storeys
            boxes.append(("cornice", _box(label, int(fy0), int(fy0 + 2 * s), left, right)))
        balcony = f < n_floors - 1 and rng.random() < 0.35
        for c in range(n_cols):
            cx = left + (c + 0.5) * col_w
            if f == n_floors - 1 and c == door_col:    # the door, on the ground floor
                dw, dh = win_w * 1.1, floor_h * 0.8
                boxes.append(("door", _box(label, int(size - dh), size, int(cx - dw / 2), int(cx + dw / 2))))
                continue
            wy0 = fy0 + (floor_h - win_h) * 0.45
            boxes.append(("window", _box(label, int(wy0), int(wy0 + win_h), int(cx - win_w / 2),
                                         int(cx + win_w / 2))))
            if balcony:
                by1 = int(wy0 + win_h + 1 * s)
                boxes.append(("balcony", _box(label, int(by1 - win_h * 0.35), by1, int(cx - win_w * 0.7),
                                              int(cx + win_w * 0.7))))
    if rng.random() < 0.7:                              # a roof cornice along the top
        boxes.append(("cornice", _box(label, top, int(top + 3 * s), left, right)))

    frame = max(1, round(s))
    for kind, (y0, y1, x0, x1) in boxes:
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        label[y0:y1, x0:x1] = cls[kind]
        region = photo[y0:y1, x0:x1]
        ly, lx = yy[y0:y1, x0:x1] - y0, xx[y0:y1, x0:x1] - x0
        h, w = y1 - y0, x1 - x0
        if kind == "window":
            # Glass darkens towards the top of the window; a white frame and a centred mullion cross.
            g = (ly / max(h - 1, 1))[..., None]
            region[:] = (1 - g) * np.array([25, 40, 80]) + g * np.array([90, 130, 175])
            edge = (ly < frame) | (ly >= h - frame) | (lx < frame) | (lx >= w - frame)
            cross = (np.abs(lx - (w - 1) / 2) < frame / 2 + 0.01) | (np.abs(ly - (h - 1) / 2) < frame / 2 + 0.01)
            region[edge | cross] = (235, 235, 228)
            # The sill casts a shadow on the wall just below the window.
            sy0, sy1 = y1, min(size, y1 + 2 * frame)
            under = label[sy0:sy1, x0:x1] == cls[wall]
            photo[sy0:sy1, x0:x1][under] *= 0.55
        elif kind == "door":
            planks = np.mod(lx, 3 * s) < max(s * 0.7, 0.7)
            region[:] = np.where(planks[..., None], np.array([80, 45, 20]), np.array([125, 75, 35]))
            edge = (ly < frame) | (lx < frame) | (lx >= w - frame)
            region[edge] = (60, 35, 20)
            knob = (np.abs(ly - h * 0.55) < frame) & (np.abs(lx - w * 0.8) < frame)
            region[knob] = (220, 190, 60)
        elif kind == "balcony":
            bars = np.mod(lx, 2 * s) < max(0.8 * s, 0.8)
            rail = ly < frame
            region[:] = np.where((bars | rail)[..., None], np.array([40, 40, 45]), region * 0.75)
        else:  # cornice: lit top half, shaded underside
            region[:] = np.where((ly < h / 2)[..., None], np.array([230, 225, 215]), np.array([140, 135, 125]))
            sy0, sy1 = y1, min(size, y1 + frame)
            under = label[sy0:sy1, x0:x1] == cls[wall]
            photo[sy0:sy1, x0:x1][under] *= 0.7

    palette = np.array([LABELS[c] for c in classes], np.uint8)
    return palette[label], np.clip(photo, 0, 255).astype(np.uint8), (WALLS.index(wall), n_floors, n_cols)


# ----------------------------------------------------------------------------------------------------------------
# Embedded unpaired task: plain animals (A) -> striped animals (B)
# ----------------------------------------------------------------------------------------------------------------
def _animal(rng: np.random.Generator, size: int, striped: bool) -> np.ndarray:
    """A four-legged animal on grass under sky; plain brown (domain A) or with zebra stripes (domain B)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size        # coordinates in [0, 1)
    horizon = rng.uniform(0.25, 0.45)
    img = np.empty((size, size, 3), np.float32)
    sky_t = np.clip(yy / horizon, 0, 1)[..., None]
    img[:] = (1 - sky_t) * np.array([110, 160, 225]) + sky_t * np.array([190, 215, 240])
    grass_t = np.clip((yy - horizon) / (1 - horizon), 0, 1)[..., None]
    grass = (1 - grass_t) * np.array([120, 170, 70]) + grass_t * np.array([60, 120, 40])
    blades = 0.9 + 0.1 * np.sin(xx * size * 1.7 + np.sin(yy * size * 0.9) * 3)  # a fixed grass texture
    img = np.where((yy >= horizon)[..., None], grass * blades[..., None], img)

    # Body: an ellipse; neck and head: a slanted ellipse and a circle; four legs: thin boxes.
    cx, cy = rng.uniform(0.35, 0.65), rng.uniform(horizon + 0.05, 0.6)
    bw, bh = rng.uniform(0.18, 0.26), rng.uniform(0.09, 0.13)
    facing = 1 if rng.random() < 0.5 else -1
    body = ((xx - cx) / bw) ** 2 + ((yy - cy) / bh) ** 2 <= 1
    nx, ny = cx + facing * bw * 0.95, cy - bh * 1.2
    neck = (((xx - nx) * 0.8 + (yy - ny) * 0.6 * facing) / (bh * 0.55)) ** 2 + \
           (((yy - ny) * 0.8 - (xx - nx) * 0.6 * facing) / (bh * 1.3)) ** 2 <= 1
    hx, hy = nx + facing * bh * 0.5, ny - bh * 0.9
    head = ((xx - hx) / (bh * 0.75)) ** 2 + ((yy - hy) / (bh * 0.55)) ** 2 <= 1
    legs = np.zeros_like(body)
    for k in (-0.75, -0.45, 0.45, 0.75):
        lx = cx + k * bw
        legs |= (np.abs(xx - lx) < 0.022) & (yy > cy) & (yy < cy + bh + rng.uniform(0.12, 0.18))
    animal = body | neck | head | legs
    # Shade: lit from above, darker at the belly.
    shade = (0.75 + 0.35 * np.clip((cy + bh - yy) / (2 * bh), 0, 1))[..., None]
    if striped:
        # Stripes run across the body, bending with the distance from its centre like a zebra's.
        phase = (xx - cx) * 28 + 4 * np.sin((yy - cy) * 18)
        stripe = np.sin(phase * np.pi / 2) > 0
        coat = np.where(stripe[..., None], np.array([240, 240, 235]), np.array([25, 25, 25]))
    else:
        browns = np.array([[140, 90, 50], [110, 70, 40], [165, 120, 75]])
        coat = np.broadcast_to(browns[rng.integers(3)], img.shape)
    img = np.where(animal[..., None], coat * shade, img)
    return np.clip(img, 0, 255).astype(np.uint8)


def split_seed(seed: int, split: str, stream: int = 0) -> np.random.SeedSequence:
    """Independent random streams per (seed, split, stream): splits never share an image."""
    return np.random.SeedSequence([seed, SPLITS.index(split), stream])


def generate_embedded(task: str, split: str, n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` examples of an embedded task. Returns uint8 arrays ``A`` and ``B`` of shape (n, size, size, 3)
    (for ``facades`` also int arrays ``wall``, ``floors``, ``cols`` describing each building).

    For ``facades`` row i of A and B is a pair; for ``stripes`` A and B come from independent streams (unpaired).
    """
    if task not in EMBEDDED_TASKS:
        raise ValueError(f"unknown embedded task {task!r}; choose one of {sorted(EMBEDDED_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 32 <= size <= 256:
        raise ValueError(f"embedded datasets are generated at 32..256 pixels, got {size}")
    if task == "facades":
        rng = np.random.default_rng(split_seed(seed, split))
        pairs = [_facade(rng, size) for _ in range(n)]
        attrs = np.array([p[2] for p in pairs], np.int64).reshape(n, 3)
        # A, B: images; wall/floors/cols: what the renderer drew (the offline FID extractor learns to see these)
        return {"A": np.stack([p[0] for p in pairs]), "B": np.stack([p[1] for p in pairs]),
                "wall": attrs[:, 0], "floors": attrs[:, 1], "cols": attrs[:, 2]}
    rng_a = np.random.default_rng(split_seed(seed, split, 1))
    rng_b = np.random.default_rng(split_seed(seed, split, 2))
    return {"A": np.stack([_animal(rng_a, size, False) for _ in range(n)]),
            "B": np.stack([_animal(rng_b, size, True) for _ in range(n)])}


def load_embedded(task: str, split: str, n: int, size: int, seed: int = 0,
                  data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Like :func:`generate_embedded`, cached as ``data/embedded/{task}_{split}_{size}px_{n}_s{seed}.npz``."""
    root = Path(data_dir) if data_dir else default_data_dir()
    path = root / "embedded" / f"{task}_{split}_{size}px_{n}_s{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    arrays = generate_embedded(task, split, n, size, seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return arrays


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float (N, 3, H, W) or (3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.array(images, copy=True)).float().div(127.5).sub(1.0)
    return t.movedim(-1, -3)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1], (..., 3, H, W) -> uint8 (..., 3, H, W), the form FID/KID expect."""
    return ((images.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Real datasets: the official pix2pix (aligned) and CycleGAN (unaligned) layouts
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealDataset:
    name: str
    layout: str            # "aligned" (pix2pix: A|B side by side) or "unaligned" (CycleGAN: trainA/trainB/...)
    url: str
    sha256: str | None     # None: not yet pinned; the first download records its digest next to the archive


# The archives the pix2pix and CycleGAN authors host. Their SHA-256 digests are not published upstream; we pin none
# we have not computed ourselves, and `download_dataset` records and then enforces the digest of the first download.
REAL_DATASETS = {
    d.name: d for d in [
        RealDataset("edges2shoes", "aligned", "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz", None),
        RealDataset("facades", "aligned", "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz", None),
        RealDataset("cityscapes", "aligned", "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/cityscapes.tar.gz", None),
        RealDataset("maps", "aligned", "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz", None),
        RealDataset("horse2zebra", "unaligned", "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip", None),
    ]
}

ALIGNED_LAYOUT = "ROOT/{train,val,test}/*.jpg, each image the input A and the target B side by side (A|B)"
UNALIGNED_LAYOUT = "ROOT/{trainA,trainB,testA,testB}/*.jpg, the two domains in separate folders (no pairing)"


class DatasetError(RuntimeError):
    """A dataset is missing, empty, laid out wrongly or holds an unreadable file. The message says how to fix it."""


def _download_hint(root: Path) -> str:
    name = root.name if root.name in REAL_DATASETS else "NAME"
    return (f"Download it with `python -m gclib data download {name} --root {root.parent}` "
            f"(NAME one of {', '.join(REAL_DATASETS)}), or use an embedded task (task='facades' or 'stripes').")


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # PIL raises several types for truncated or non-image files
        raise DatasetError(f"cannot read image {path}: {e}. Delete or replace this file and try again.") from e


def paper_transform(img: Image.Image, load_size: int, crop_size: int, flip: bool,
                    rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int, bool]]:
    """The paper's augmentation: resize to load_size (286), random crop crop_size (256), random flip.

    Returns the image and the (top, left, flipped) draw so the partner image of a pair gets the same one."""
    img = img.resize((load_size, load_size), Image.BICUBIC)
    top = int(rng.integers(0, load_size - crop_size + 1))
    left = int(rng.integers(0, load_size - crop_size + 1))
    flipped = bool(flip and rng.random() < 0.5)
    return _apply(img, crop_size, (top, left, flipped)), (top, left, flipped)


def _apply(img: Image.Image, crop_size: int, draw: tuple[int, int, bool]) -> Image.Image:
    top, left, flipped = draw
    img = img.crop((left, top, left + crop_size, top + crop_size))
    return img.transpose(Image.FLIP_LEFT_RIGHT) if flipped else img


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    return to_tensor(np.asarray(img, dtype=np.uint8))


class AlignedFolder(Dataset):
    """pix2pix's aligned layout: each file holds A|B side by side; ``direction`` 'AtoB' or 'BtoA'."""

    def __init__(self, root: str | Path, phase: str = "train", direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, seed: int = 0):
        root = Path(root)
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        folder = root / phase
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
            if {"trainA", "trainB"} & set(found):
                raise DatasetError(f"{root} holds the unaligned (CycleGAN) layout {found}; the aligned loader "
                                   f"expects {ALIGNED_LAYOUT}. Use UnalignedFolder for this dataset.")
            raise DatasetError(f"no folder {folder}. Expected layout: {ALIGNED_LAYOUT}. " + _download_hint(root))
        self.files = _list_images(folder)
        if not self.files:
            raise DatasetError(f"{folder} holds no images ({', '.join(IMG_EXTENSIONS)}). Expected: {ALIGNED_LAYOUT}")
        self.direction, self.load_size, self.crop_size, self.flip = direction, load_size, crop_size, flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path = self.files[i]
        ab = _open_rgb(path)
        w, h = ab.size
        if w < 2 or w % 2:
            raise DatasetError(f"{path} is {w}x{h}: an aligned image must be two equal halves side by side (A|B)")
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        if self.direction == "BtoA":
            a, b = b, a
        a, draw = paper_transform(a, self.load_size, self.crop_size, self.flip, self.rng)
        b = _apply(b.resize((self.load_size, self.load_size), Image.BICUBIC), self.crop_size, draw)
        return {"A": _pil_to_tensor(a), "B": _pil_to_tensor(b), "path": str(path)}


class UnalignedFolder(Dataset):
    """CycleGAN's unaligned layout: ``{phase}A`` and ``{phase}B`` folders; item i is A[i] with a random B."""

    def __init__(self, root: str | Path, phase: str = "train", load_size: int = 286, crop_size: int = 256,
                 flip: bool = True, seed: int = 0):
        root = Path(root)
        dirs = [root / f"{phase}A", root / f"{phase}B"]
        missing = [d for d in dirs if not d.is_dir()]
        if missing:
            if (root / phase).is_dir():
                raise DatasetError(f"{root} holds the aligned (pix2pix) layout; the unaligned loader expects "
                                   f"{UNALIGNED_LAYOUT}. Use AlignedFolder for this dataset.")
            raise DatasetError(f"missing {', '.join(map(str, missing))}. Expected layout: {UNALIGNED_LAYOUT}. "
                               + _download_hint(root))
        self.files_A, self.files_B = _list_images(dirs[0]), _list_images(dirs[1])
        for d, files in zip(dirs, (self.files_A, self.files_B)):
            if not files:
                raise DatasetError(f"{d} holds no images ({', '.join(IMG_EXTENSIONS)}). Expected: {UNALIGNED_LAYOUT}")
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return max(len(self.files_A), len(self.files_B))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pa = self.files_A[i % len(self.files_A)]
        pb = self.files_B[int(self.rng.integers(len(self.files_B)))]
        a, _ = paper_transform(_open_rgb(pa), self.load_size, self.crop_size, self.flip, self.rng)
        b, _ = paper_transform(_open_rgb(pb), self.load_size, self.crop_size, self.flip, self.rng)
        return {"A": _pil_to_tensor(a), "B": _pil_to_tensor(b), "path": str(pa)}


def open_real_dataset(root: str | Path, phase: str = "train", **kwargs) -> Dataset:
    """Open a real dataset folder, picking the loader from its layout; a clear error if it is neither."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist. Expected either {ALIGNED_LAYOUT} or "
                           f"{UNALIGNED_LAYOUT}. " + _download_hint(root))
    if (root / f"{phase}A").is_dir() or (root / f"{phase}B").is_dir():
        kwargs.pop("direction", None)
        return UnalignedFolder(root, phase, **kwargs)
    return AlignedFolder(root, phase, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Download: resumable, atomic, SHA-256 verified
# ----------------------------------------------------------------------------------------------------------------
def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    The file appears at ``dest`` only once complete and verified (an atomic rename), so an interrupted download
    never leaves a truncated archive behind. Without a pinned ``sha256`` the digest of the first download is written
    to ``dest.sha256`` and enforced on every later call."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    pin_file = dest.with_name(dest.name + ".sha256")
    if sha256 is None and pin_file.exists():
        sha256 = pin_file.read_text().split()[0]
    if dest.exists():
        _verify(dest, sha256)
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        status = getattr(resp, "status", 200)
        mode = "ab" if have and status == 206 else "wb"    # a server that ignores Range sends it all again
        total = resp.headers.get("Content-Length")
        total = int(total) + (have if mode == "ab" else 0) if total else None
        from tqdm.auto import tqdm
        with open(part, mode) as f, tqdm(total=total, initial=have if mode == "ab" else 0, unit="B",
                                         unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while block := resp.read(1 << 16):
                f.write(block)
                bar.update(len(block))
    _verify(part, sha256, final=dest)
    os.replace(part, dest)
    if sha256 is None:
        atomic_write_bytes(pin_file, f"{sha256_of(dest)}  {dest.name}\n".encode())
    return dest


def _verify(path: Path, sha256: str | None, final: Path | None = None) -> None:
    if sha256 is None:
        return
    digest = sha256_of(path)
    if digest != sha256.lower():
        bad = path.with_name(path.name + ".corrupt")
        os.replace(path, bad)
        raise DatasetError(f"checksum mismatch for {final or path}: expected sha256 {sha256}, got {digest}. "
                           f"The file was moved to {bad}; download again.")


def extract(archive: str | Path, into: str | Path) -> Path:
    """Unpack a .tar.gz or .zip into ``into`` atomically: into a temporary folder first, then renamed."""
    archive, into = Path(archive), Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}."))
    try:
        if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        elif archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise DatasetError(f"{archive} holds an unsafe path {member!r}")
                zf.extractall(tmp)
        else:
            raise DatasetError(f"unknown archive type: {archive}")
        # Official archives hold one top folder named like the dataset; unwrap it.
        entries = list(tmp.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if into.exists():
            shutil.rmtree(into)
        os.replace(content, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return into


def download_dataset(name: str, root: str | Path | None = None, url: str | None = None,
                     sha256: str | None = None) -> Path:
    """Download and unpack one of :data:`REAL_DATASETS` into ``root/name`` (default ``data/NAME``)."""
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(REAL_DATASETS)}")
    spec = REAL_DATASETS[name]
    root = Path(root) if root else default_data_dir()
    url = url or spec.url
    archive = fetch(url, root / "archives" / Path(url).name, sha256 or spec.sha256)
    return extract(archive, root / name)


# ----------------------------------------------------------------------------------------------------------------
# One entry point for the notebooks: a task's three splits at a preset's scale
# ----------------------------------------------------------------------------------------------------------------
def load_task(task: str, preset, seed: int = 0) -> dict:
    """Splits of ``task`` for a :class:`~gclib.presets.Preset`: ``{'paired', 'train', 'heldout', 'test'}``.

    ``task`` is an embedded task (``facades``, ``stripes``) or, with ``preset.real_dataset_root`` set, the real
    dataset there. Embedded splits are dicts of float tensors ``A``, ``B`` (N, 3, H, W) in [-1, 1]; a real training
    split is a Dataset with the paper's augmentation, real evaluation splits are tensors (resize, no crop or flip)."""
    if preset.real_dataset_root:
        root = Path(preset.real_dataset_root)
        train = open_real_dataset(root, "train", load_size=preset.load_size, crop_size=preset.image_size, seed=seed)
        paired = isinstance(train, AlignedFolder)

        def eval_split(phase: str) -> dict[str, torch.Tensor]:
            ds = open_real_dataset(root, phase, load_size=preset.image_size, crop_size=preset.image_size,
                                   flip=False, seed=seed)
            items = [ds[i] for i in range(len(ds))]
            return {k: torch.stack([it[k] for it in items]) for k in ("A", "B")}
        test_phase = "test" if (root / "test").is_dir() or (root / "testA").is_dir() else "val"
        # The held-out split for the search comes from the val folder when there is one, else from test's twin.
        held_phase = "val" if (root / "val").is_dir() else test_phase
        return {"paired": paired, "train": train, "heldout": eval_split(held_phase), "test": eval_split(test_phase)}
    if task not in EMBEDDED_TASKS:
        raise ValueError(f"unknown task {task!r}; the embedded tasks are {sorted(EMBEDDED_TASKS)} "
                         f"(set the preset's real_dataset_root for a downloaded dataset)")
    sizes = {"train": preset.n_train, "heldout": preset.n_heldout, "test": preset.n_test}
    out: dict = {"paired": EMBEDDED_TASKS[task] == "paired"}
    for split, n in sizes.items():
        arrays = load_embedded(task, split, n, preset.image_size, seed)
        out[split] = {"A": to_tensor(arrays["A"]), "B": to_tensor(arrays["B"])}
    return out
