"""Real datasets in the official layouts: pix2pix's aligned folders and CycleGAN's unaligned ones."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import to_tensor
from ..progress import progress_bar

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

ALIGNED_LAYOUT = "ROOT/{train,val,test}/*.jpg, each image the input A and the target B side by side (A|B)"
UNALIGNED_LAYOUT = "ROOT/{trainA,trainB,testA,testB}/*.jpg, the two domains in separate folders (no pairing)"


class DatasetError(RuntimeError):
    """A dataset is missing, empty, laid out wrongly or holds an unreadable file. The message says how to fix it."""


def _download_hint(root: Path) -> str:
    from .download import REAL_DATASETS
    name = root.name if root.name in REAL_DATASETS else "NAME"
    return (f"Download it with `python -m gclib data download {name} --root {root.parent}` "
            f"(NAME one of {', '.join(REAL_DATASETS)}), or use an embedded task (task='facades' or 'stripes').")


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)


PARTS = ("all", "train", "heldout")


def carve(files: list[Path], holdout: int, part: str) -> list[Path]:
    """``part`` of a training folder whose ``holdout`` files are set apart as the held-out split: the ``holdout`` files
    whose names hash lowest (SHA-1 of the file name), the same on every machine, for every seed and listing order.
    ``part``: "all" (no carving), "train" (the rest) or "heldout"."""
    import hashlib
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if part == "all" or holdout <= 0:
        return [] if part == "heldout" else list(files)
    if holdout >= len(files):
        raise DatasetError(f"cannot set {holdout} of the {len(files)} training images of {files[0].parent} apart as "
                           f"the held-out split and still train on some: add training images, or set the preset "
                           f"field data.n_heldout (--set data.n_heldout=N) below {len(files)}")
    ranked = sorted(files, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
    held = set(ranked[:holdout])
    return [f for f in files if (f in held) == (part == "heldout")]


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


class _Folder(Dataset):
    """What both layouts share: a training batch drawn from one step's random stream (crops, flips and, unaligned,
    the B partners), so a resumed training sees exactly the batches an uninterrupted one would."""

    in_memory = False  # images are read from disk per batch (no precomputed teacher outputs, see TeacherCache)
    paired: bool

    def item(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batch(self, index: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(2 ** 62, (), generator=g)))
        items = [self.item(int(i), rng) for i in index]
        return {k: torch.stack([it[k] for it in items]) for k in ("A", "B")}


class AlignedFolder(_Folder):
    """pix2pix's aligned layout: each file holds A|B side by side; ``direction`` 'AtoB' or 'BtoA'. ``holdout`` and
    ``part`` carve a held-out split out of a folder (see :func:`carve`)."""

    paired = True

    def __init__(self, root: str | Path, phase: str = "train", direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, seed: int = 0, holdout: int = 0, part: str = "all"):
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
        self.files = carve(self.files, holdout, part)
        self.direction, self.load_size, self.crop_size, self.flip = direction, load_size, crop_size, flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.item(i, self.rng)

    def item(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        path = self.files[i]
        ab = _open_rgb(path)
        w, h = ab.size
        if w < 2 or w % 2:
            raise DatasetError(f"{path} is {w}x{h}: an aligned image must be two equal halves side by side (A|B)")
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        if self.direction == "BtoA":
            a, b = b, a
        a, draw = paper_transform(a, self.load_size, self.crop_size, self.flip, rng)
        b = _apply(b.resize((self.load_size, self.load_size), Image.BICUBIC), self.crop_size, draw)
        return {"A": _pil_to_tensor(a), "B": _pil_to_tensor(b), "path": str(path)}


class UnalignedFolder(_Folder):
    """CycleGAN's unaligned layout: ``{phase}A`` and ``{phase}B`` folders; item i is A[i] with a random B."""

    paired = False

    def __init__(self, root: str | Path, phase: str = "train", load_size: int = 286, crop_size: int = 256,
                 flip: bool = True, seed: int = 0, holdout: int = 0, part: str = "all"):
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
        self.files_A, self.files_B = carve(self.files_A, holdout, part), carve(self.files_B, holdout, part)
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return max(len(self.files_A), len(self.files_B))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.item(i, self.rng)

    def item(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        pa = self.files_A[i % len(self.files_A)]
        pb = self.files_B[int(rng.integers(len(self.files_B)))]
        a, _ = paper_transform(_open_rgb(pa), self.load_size, self.crop_size, self.flip, rng)
        b, _ = paper_transform(_open_rgb(pb), self.load_size, self.crop_size, self.flip, rng)
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



SCAN_STAMP = ".gclib-scan.json"   # written into a dataset folder once every image in it was read successfully


def scan_dataset(root: str | Path, progress: bool = True) -> dict:
    """Read every image of a real dataset once, up front, so that a corrupt file, a square image in the aligned layout
    or a missing split stops the run *now* with the file and the fix, not hours into training.

    Returns ``{"layout", "splits": {folder: n_images}}``. A successful scan is remembered in ``root/.gclib-scan.json``
    (with the folders' file names, sizes and times) and skipped while nothing changed."""
    import json

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist. Expected either {ALIGNED_LAYOUT} or "
                           f"{UNALIGNED_LAYOUT}. " + _download_hint(root))
    unaligned = (root / "trainA").is_dir() or (root / "trainB").is_dir()
    if unaligned:
        folders = ["trainA", "trainB"] + [f for f in ("testA", "testB", "valA", "valB") if (root / f).is_dir()]
        need = [("trainA",), ("trainB",), ("testA", "valA"), ("testB", "valB")]
    else:
        folders = ["train"] + [f for f in ("val", "test") if (root / f).is_dir()]
        need = [("train",), ("test", "val")]
    for options in need:
        if not any((root / o).is_dir() for o in options):
            layout = UNALIGNED_LAYOUT if unaligned else ALIGNED_LAYOUT
            raise DatasetError(f"{root} has no {' or '.join(options)} folder: every split must be there. "
                               f"Expected layout: {layout}")
    files = {f: _list_images(root / f) for f in folders}
    empty = [f for f, fs in files.items() if not fs]
    if empty:
        raise DatasetError(f"{', '.join(str(root / f) for f in empty)} holds no images ({', '.join(IMG_EXTENSIONS)})")
    signature = {f: [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in fs] for f, fs in files.items()}
    found = {"layout": "unaligned" if unaligned else "aligned", "splits": {f: len(v) for f, v in files.items()}}
    stamp = root / SCAN_STAMP
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("signature") == signature:
                return found
        except ValueError:
            pass
    problems = []
    every = [p for fs in files.values() for p in fs]
    for path in progress_bar(every, f"checking {root.name}", unit="img", disable=not progress):
        try:
            with Image.open(path) as im:
                im.load()                      # decodes the whole file: finds truncated images too
                w, h = im.size
        except Exception as e:
            problems.append(f"{path}: unreadable ({type(e).__name__}: {e}); delete or replace it")
            continue
        if not unaligned and (w == h or w % 2):
            problems.append(f"{path}: {w}x{h}, but an aligned image holds A and B side by side (A|B: an even width, "
                            f"wider than high); a square image is one picture, not a pair. For A and B in separate "
                            f"images use {UNALIGNED_LAYOUT}")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DatasetError(f"{len(problems)} of the {len(every)} images of {root} cannot be used:\n  {shown}")
    from ..artifacts import atomic_write_json
    atomic_write_json(stamp, {"signature": signature})
    return found
