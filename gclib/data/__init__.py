"""Data for every notebook: the embedded tasks, real dataset folders, downloads, image conversions.

One entry point, :func:`load_task`, returns one type, :class:`TaskData`, whatever the source: its ``train`` split is
always a ``Dataset`` with a ``batch(index, generator)`` method (the trainers draw every batch from a step's own
random stream), its ``heldout`` and ``test`` splits are :class:`TensorSplit` s of float tensors in [-1, 1].

- :mod:`.embedded`: the generated ``facades`` (paired) and ``stripes`` (unpaired) tasks.
- :mod:`.folders`: the official pix2pix (aligned) and CycleGAN (unaligned) folder layouts.
- :mod:`.download`: the official archives, resumable and checksummed.
- :mod:`.images`: uint8 <-> float conversions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .download import REAL_DATASETS, download_dataset, extract, fetch, sha256_of
from .embedded import (ANIMAL_CLASSES, EMBEDDED_TASKS, LABELS, SPLITS, coat_variants, default_data_dir,
                       generate_embedded, load_embedded)
from .folders import (ALIGNED_LAYOUT, UNALIGNED_LAYOUT, AlignedFolder, DatasetError, UnalignedFolder, scan_dataset,
                      open_real_dataset, paper_transform)
from .images import to_tensor, to_uint8


class TensorSplit(Dataset):
    """A split held in memory: ``A`` (N, 3, H, W) and ``B`` (M, 3, H, W), float in [-1, 1].

    ``paired``: row i of ``A`` and of ``B`` belong together. As a training split, :meth:`batch` draws B partners
    (unpaired) and random horizontal flips from the step's generator."""

    in_memory = True

    def __init__(self, A: torch.Tensor, B: torch.Tensor, paired: bool, label_A: torch.Tensor | None = None,
                 label_B: torch.Tensor | None = None, label_target: torch.Tensor | None = None,
                 target: torch.Tensor | None = None):
        if paired and len(A) != len(B):
            raise ValueError(f"a paired split needs as many A as B images, got {len(A)} and {len(B)}")
        self.A, self.B, self.paired = A, B, paired
        # What G(A) should be, image by image: B itself when paired; for the embedded unpaired task the oracle
        # translation (A redrawn in domain B), which no training recipe sees; None where nobody knows it.
        self.target = B if paired else target
        # Label maps (N, H, W) of class indices, where the data knows them (the embedded tasks): what A and B show,
        # and what G(A) should show (a segmenter reads G(A) back and is scored against it).
        self.label_A, self.label_B, self.label_target = label_A, label_B, label_target
        self.replaced = 0       # an embedded test split: how many copies of training or held-out examples it replaced

    def __len__(self) -> int:
        return len(self.A)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"A": self.A[i], "B": self.B[i % len(self.B)]}

    def batch(self, index: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Images ``index`` of A with random flips. Paired: the same images and flips of B. Unpaired: B gets its own
        random images and flips, so no pairing can leak into training. ``index``/``flip_a`` say which training image
        each A is, so a frozen teacher's outputs can be looked up (``TeacherCache``)."""
        n = len(index)
        idx_b = index if self.paired else torch.randint(len(self.B), (n,), generator=g)
        flip_a = torch.rand(n, generator=g) < 0.5
        flip_b = flip_a if self.paired else torch.rand(n, generator=g) < 0.5
        a, b = self.A[index].clone(), self.B[idx_b].clone()
        a[flip_a] = a[flip_a].flip(-1)
        b[flip_b] = b[flip_b].flip(-1)
        return {"A": a, "B": b, "index": index, "flip_a": flip_a}


def embedded_labels(task: str, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The label maps of an embedded split: facades: one map for the pair (A is its colour picture); stripes: A's
    and B's, and the target of a translation, A's map with its plain animal turned striped."""
    if task == "facades":
        label = torch.from_numpy(arrays["label"].astype(np.int64))
        return {"label_A": label, "label_B": label, "label_target": label}
    label_a = torch.from_numpy(arrays["label_A"].astype(np.int64))
    plain, striped = ANIMAL_CLASSES.index("plain animal"), ANIMAL_CLASSES.index("striped animal")
    return {"label_A": label_a, "label_B": torch.from_numpy(arrays["label_B"].astype(np.int64)),
            "label_target": torch.where(label_a == plain, striped, label_a)}


@dataclass
class TaskData:
    """A task's three splits. ``heldout`` is for monitoring and the search; ``test`` only for final numbers."""

    task: str
    paired: bool
    train: Dataset        # TensorSplit (embedded) or a folder Dataset (real data)
    heldout: TensorSplit
    test: TensorSplit
    seed: int = 0         # which images were generated (embedded) and how they are crops (real): in the stage keys

    def describe(self) -> str:
        return (f"task {self.task!r} ({'paired' if self.paired else 'unpaired'}): {len(self.train)} train, "
                f"{len(self.heldout)} held-out, {len(self.test)} test images")


def one_hot(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """Class indices (N, H, W) -> one-hot label maps (N, label_nc, H, W) of 0.0 / 1.0: a SPADE generator's input."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= label_nc):
        raise ValueError(f"label maps hold classes {int(labels.min())}..{int(labels.max())} but label_nc is "
                         f"{label_nc}: set the preset's spade.label_nc to the number of classes")
    return nn.functional.one_hot(labels.long(), label_nc).permute(0, 3, 1, 2).float()


def label_map_task(data: TaskData, label_nc: int) -> TaskData:
    """``data`` with every A replaced by its one-hot label map (N, label_nc, H, W): the input of GauGAN (notebook
    06). B, the targets and the label maps stay; the colour pictures of A are in ``data`` itself. Needs a task whose
    label maps are known (the embedded ``facades``)."""
    if not data.paired or getattr(data.train, "label_A", None) is None:
        raise ValueError(f"task {data.task!r} has no label maps to feed a SPADE generator; use the embedded "
                         f"'facades' task (its label maps are known)")

    def relabel(split: TensorSplit) -> TensorSplit:
        return TensorSplit(one_hot(split.label_A, label_nc), split.B, True, split.label_A, split.label_B,
                           split.label_target)
    return TaskData(data.task, True, relabel(data.train), relabel(data.heldout), relabel(data.test), data.seed)


def _digests(split: "TensorSplit") -> list[str]:
    """One digest per example of ``split``, by content (a pair's two images together when paired, else A's)."""
    import hashlib
    return [hashlib.sha1(x.numpy().tobytes() + (y.numpy().tobytes() if split.paired else b"")).hexdigest()
            for x, y in zip(split.A, split.B)]


def _shared_images(a: "TensorSplit", b: "TensorSplit") -> int:
    """How many examples of ``a`` are also in ``b``, by content (a pair's two images together when paired)."""
    return len(set(_digests(a)) & set(_digests(b)))


def _rows(split: "TensorSplit", keep: torch.Tensor) -> "TensorSplit":
    """The examples ``keep`` (a mask or indices of A's rows) of ``split``, with their labels; an unpaired split keeps
    all its B images (only A is a row)."""
    def rows(t):
        return None if t is None else t[keep]
    return TensorSplit(rows(split.A), rows(split.B) if split.paired else split.B, split.paired, rows(split.label_A),
                       rows(split.label_B) if split.paired else split.label_B, rows(split.label_target),
                       target=None if split.paired else rows(split.target))


def _embedded_split(task: str, split: str, n: int, size: int, seed: int, paired: bool) -> "TensorSplit":
    arrays = load_embedded(task, split, n, size, seed)
    return TensorSplit(to_tensor(arrays["A"]), to_tensor(arrays["B"]), paired, **embedded_labels(task, arrays),
                       target=to_tensor(arrays["target"]) if "target" in arrays else None)


def _distinct_test(task: str, n: int, size: int, seed: int, paired: bool, *others: "TensorSplit") -> "TensorSplit":
    """The embedded test split: its first ``n`` examples that are not also training or held-out ones. Each split
    has its own seed, and at 32x32 a few facades come out identical to one of another split (6 of 500 test pairs),
    which would score memory, not generalisation; the generator is a stream, so drawing more keeps the first ones
    and replaces each copy by the next example. ``.replaced``: how many were."""
    seen = set().union(*(_digests(o) for o in others))
    drawn = n
    while True:
        split = _embedded_split(task, "test", drawn, size, seed, paired)
        kept = [i for i, d in enumerate(_digests(split)) if d not in seen]
        if len(kept) >= n:
            test = _rows(split, torch.tensor(kept[:n]))
            test.replaced = kept[n - 1] + 1 - n            # the copies among the examples it drew
            return test
        drawn += n - len(kept)


def load_task(task: str, preset, seed: int = 0) -> TaskData:
    """The splits of ``task`` at a :class:`~gclib.presets.Preset`'s scale.

    ``task`` is an embedded task (``facades``, ``stripes``) or, with ``preset.data.dataset_root`` set, the name given
    to the real dataset there. Real evaluation splits are resized, neither cropped nor flipped."""
    data = preset.data
    if data.dataset_root:
        root = Path(data.dataset_root)
        scanned = scan_dataset(root)  # every image read once, up front: a bad file stops the run now, named
        test_phase = "test" if (root / "test").is_dir() or (root / "testA").is_dir() else "val"
        # The held-out split (what the search decides on) is never the test split: the val folder when the dataset
        # has one besides its test folder (facades), else images carved out of train, always the same ones
        # (edges2shoes, maps and cityscapes ship train/val only, horse2zebra trainA/B and testA/B only).
        # a val folder of the dataset's own layout (valA/valB for CycleGAN's): a stray aligned val/ is not a split
        own_val = test_phase != "val" and ((root / "valA").is_dir() if scanned["layout"] == "unaligned"
                                           else (root / "val").is_dir())
        holdout = 0
        if not own_val:
            counts = scanned["splits"]
            n_train = counts["train"] if "train" in counts else max(counts["trainA"], counts["trainB"])
            holdout = data.n_heldout or max(1, min(500, n_train // 10))
        train = open_real_dataset(root, "train", load_size=data.load_size or data.image_size,
                                  crop_size=data.image_size, seed=seed, holdout=holdout, part="train")

        def eval_split(phase: str, part: str = "all") -> TensorSplit:
            ds = open_real_dataset(root, phase, load_size=data.image_size, crop_size=data.image_size, flip=False,
                                   seed=seed, holdout=holdout if part != "all" else 0, part=part)
            items = [ds[i] for i in range(len(ds))]
            return TensorSplit(torch.stack([it["A"] for it in items]), torch.stack([it["B"] for it in items]),
                               train.paired)
        heldout = eval_split("val") if own_val else eval_split("train", "heldout")
        test = eval_split(test_phase)
        shared = _shared_images(heldout, test)
        if shared:
            where = f"{root / 'val'}" if own_val else f"the images carved out of {root / 'train'}"
            raise DatasetError(f"{shared} held-out images ({where}) are also test images ({root / test_phase}): "
                               f"decisions taken on held-out would be read on test. Remove the copies"
                               + (", or the val folder (held-out images are then carved out of train)" if own_val
                                  else ""))
        return TaskData(task, train.paired, train, heldout, test, seed)
    if task not in EMBEDDED_TASKS:
        raise ValueError(f"unknown task {task!r}; the embedded tasks are {sorted(EMBEDDED_TASKS)} "
                         f"(set the preset's data.dataset_root for a real dataset)")
    sizes = {"train": data.n_train, "heldout": data.n_heldout, "test": data.n_test}
    if min(sizes.values()) < 2:
        raise ValueError(f"preset {preset.name!r} sets data.n_train/n_heldout/n_test = {tuple(sizes.values())}: the "
                         f"embedded task {task!r} needs at least 2 images per split. The 'paper' preset is for a real "
                         f"dataset: set data.dataset_root (download one with `python -m gclib data download NAME`)")
    paired = EMBEDDED_TASKS[task] == "paired"
    train, heldout = (_embedded_split(task, split, sizes[split], data.image_size, seed, paired)
                      for split in ("train", "heldout"))
    return TaskData(task, paired, train, heldout,
                    _distinct_test(task, sizes["test"], data.image_size, seed, paired, train, heldout), seed)


__all__ = ["ANIMAL_CLASSES", "coat_variants", "ALIGNED_LAYOUT", "embedded_labels", "AlignedFolder", "DatasetError", "EMBEDDED_TASKS", "LABELS", "REAL_DATASETS", "SPLITS",
           "TaskData", "TensorSplit", "UNALIGNED_LAYOUT", "UnalignedFolder", "default_data_dir", "download_dataset",
           "extract", "fetch", "generate_embedded", "label_map_task", "load_embedded", "load_task", "one_hot", "open_real_dataset", "scan_dataset",
           "paper_transform", "sha256_of", "to_tensor", "to_uint8"]
