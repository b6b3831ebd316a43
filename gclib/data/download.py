"""Downloads of the official archives: resumable, atomic, SHA-256 verified."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import atomic_write_bytes, set_aside
from .embedded import default_data_dir
from .folders import DatasetError
from ..progress import progress_bar


@dataclass(frozen=True)
class RealDataset:
    name: str
    layout: str            # "aligned" (pix2pix: A|B side by side) or "unaligned" (CycleGAN: trainA/trainB/...)
    url: str
    sha256: str | None     # None: not yet pinned; the first download records its digest next to the archive


# The archives the pix2pix and CycleGAN authors host. Their SHA-256 digests are not published upstream; we pin none
# we have not computed ourselves, and `download_dataset` records the digest of the first download that unpacks, and
# enforces it afterwards.
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


# The first bytes of each archive kind we unpack: a web page or an error message sent with status 200 has none.
MAGIC = {".gz": (b"\x1f\x8b",), ".tgz": (b"\x1f\x8b",), ".zip": (b"PK\x03\x04",), ".tar": ()}


def fetch(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    The file appears at ``dest`` only once complete and checked (an atomic rename), so an interrupted download never
    leaves a truncated archive where a loader would find it:

    - a connection that closes before ``Content-Length`` bytes keeps the ``.part`` and says to run again (resume);
    - a ``.part`` the server answers with HTTP 416 (nothing past its end) is complete: it is checked, not re-fetched;
    - a body that is not an archive of ``dest``'s kind (an HTML error page sent with status 200) is refused and set
      aside, and so is a file whose SHA-256 differs from ``sha256`` or from the digest recorded in ``dest.sha256``.

    Network failures and refusals raise :class:`DatasetError` with the URL and what to do. No digest is recorded
    here: :func:`download_dataset` records it once the archive has been unpacked."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    pinned = sha256 is None and recorded_digest(dest) is not None
    sha256 = sha256 or recorded_digest(dest)
    if dest.exists():
        _verify(dest, sha256, pinned=pinned)
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            _receive(resp, part, have, url, dest.name, progress)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):       # 416 on a resume: the .part already holds the whole file
            raise DatasetError(f"downloading {url} failed: HTTP {e.code} {e.reason}. Check the URL (or pass --url), "
                               f"or download the file by hand to {dest}.") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DatasetError(f"could not download {url}: {reason}. Check the network and run the same command again "
                           f"(a partial download resumes), or download the file by hand to {dest}.") from None
    _check_kind(part, dest)
    _verify(part, sha256, final=dest, pinned=pinned)
    os.replace(part, dest)
    return dest


def _receive(resp, part: Path, have: int, url: str, name: str, progress: bool) -> None:
    """Write the response body to ``part`` (appended after ``have`` bytes when the server honoured the Range)."""
    status = getattr(resp, "status", 200)
    kind = resp.headers.get("Content-Type", "")
    if kind.startswith("text/html"):
        raise DatasetError(f"{url} answered with a web page (Content-Type {kind}), not an archive: the URL is wrong "
                           f"or the host is down. Nothing was saved.")
    mode = "ab" if have and status == 206 else "wb"    # a server that ignores Range sends it all again
    expected = resp.headers.get("Content-Length")
    expected = int(expected) if expected else None
    start = have if mode == "ab" else 0
    got = 0
    with open(part, mode) as f, progress_bar(None, name, total=start + expected if expected is not None else None,
                                             initial=start, unit="B", unit_scale=True, disable=not progress) as bar:
        while block := resp.read(1 << 16):
            f.write(block)
            got += len(block)
            bar.update(len(block))
    if expected is not None and got < expected:
        raise DatasetError(f"the connection to {url} closed after {start + got:,} of {start + expected:,} bytes; "
                           f"run the same command again to resume from {part}.")


def _check_kind(path: Path, final: Path) -> None:
    """Refuse (and set aside) a download whose first bytes are not those of ``final``'s archive kind."""
    magics = next((m for ext, m in MAGIC.items() if final.name.endswith(ext)), ())
    with open(path, "rb") as f:
        head = f.read(8)
    if magics and not any(head.startswith(m) for m in magics):
        bad = set_aside(path, "not-an-archive")
        raise DatasetError(f"the download of {final.name} is not a {final.suffix} archive (it starts with {head!r}); "
                           f"set aside as {bad}. Check the URL, or download the file by hand to {final}.")


def recorded_digest(archive: str | Path) -> str | None:
    """The SHA-256 recorded next to ``archive`` by an earlier, successful download (``archive.sha256``), if any."""
    pin = Path(archive).with_name(Path(archive).name + ".sha256")
    return pin.read_text().split()[0] if pin.exists() else None


def record_digest(archive: str | Path, digest: str | None = None) -> str:
    """Record ``archive``'s SHA-256 (``digest``, if already computed) next to it; later downloads must match it."""
    archive = Path(archive)
    digest = digest or sha256_of(archive)
    atomic_write_bytes(archive.with_name(archive.name + ".sha256"), f"{digest}  {archive.name}\n".encode())
    return digest


def _verify(path: Path, sha256: str | None, final: Path | None = None, pinned: bool = False) -> None:
    if sha256 is None:
        return
    digest = sha256_of(path)
    if digest != sha256.lower():
        bad = set_aside(path, "corrupt")
        pin = (final or path).with_name((final or path).name + ".sha256")
        advice = (f" The expected digest was recorded by an earlier download ({pin}): if the host has replaced the "
                  f"archive and you trust the new one, move that file away and run again." if pinned else "")
        raise DatasetError(f"checksum mismatch for {final or path}: expected sha256 {sha256}, got {digest}. "
                           f"The file was set aside as {bad}; download again.{advice}")


def verify_archive(archive: str | Path) -> None:
    """Read ``archive`` to its end before anything is unpacked or pinned: a gzip stream's CRC-32 and length are only
    checked at its end, and ``tarfile`` takes a damaged header for the end of the archive, quietly unpacking part of
    it; a zip's members are checked against their CRCs. A damaged archive (a byte flipped in transit, a download
    joined from two versions of the file) raises :class:`DatasetError`."""
    archive = Path(archive)
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise DatasetError(f"{archive} is damaged: its member {bad!r} does not match its CRC")
            return
        if not archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise DatasetError(f"unknown archive type: {archive}")
        opener = (lambda: gzip.open(archive, "rb")) if archive.name.endswith((".gz", ".tgz")) else \
            (lambda: open(archive, "rb"))
        with opener() as f:                              # the whole stream: gzip checks its CRC at the end
            total = 0
            while block := f.read(1 << 20):
                total += len(block)
        with opener() as f:                              # every tar header, up to the last member's data
            with tarfile.open(fileobj=f, mode="r|") as tf:
                for _ in tf:
                    pass
                end = tf.offset
        with opener() as f:                              # after it, only the zero blocks that end an archive
            f.seek(end)
            rest = f.read()
        if rest.strip(b"\0"):
            raise DatasetError(f"{archive} is damaged: a tar header at byte {end:,} of {total:,} is unreadable, so "
                               f"only part of the archive would unpack")
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{archive} is damaged ({type(e).__name__}: {e})") from None


UNPACKED_FROM = ".unpacked-from"   # written into an unpacked dataset folder: the digest of its archive


def extract(archive: str | Path, into: str | Path, digest: str | None = None) -> Path:
    """Unpack a .tar.gz or .zip into ``into`` atomically: into a temporary folder first, then renamed. An existing
    ``into`` is set aside under a unique name, never deleted. The folder records which archive it came from."""
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
        (content / UNPACKED_FROM).write_text(f"{digest or sha256_of(archive)}  {archive.name}\n")
        if into.exists():   # a folder the user may have added to: kept under a new name, never deleted
            moved = set_aside(into, "replaced")
            print(f"{into} already existed; set aside as {moved}")
        os.replace(content, into)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DatasetError(f"could not unpack {archive}: {e}. The archive is damaged: delete it (or move it away) and "
                           f"download again.") from None
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
    into = root / name
    digest = sha256_of(archive)                   # once: archives run to gigabytes
    marker = into / UNPACKED_FROM
    if marker.exists() and marker.read_text().split()[0] == digest:
        return into                               # unpacked from this very archive already: nothing to do
    try:
        verify_archive(archive)                   # before anything is unpacked or pinned
    except DatasetError as e:
        bad = set_aside(archive, "damaged")
        raise DatasetError(f"{e}; set aside as {bad.name}, nothing was unpacked or recorded. Run the same command "
                           f"again to download it anew.") from None
    extract(archive, into, digest)
    if recorded_digest(archive) is None:          # only an archive that unpacked is worth pinning
        record_digest(archive, digest)
    return into

