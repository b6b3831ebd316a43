"""Downloads of the official archives: resumable, atomic, SHA-256 verified."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import atomic_write_bytes
from .embedded import default_data_dir
from .folders import DatasetError


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

