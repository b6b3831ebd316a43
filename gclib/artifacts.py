"""Artifacts on disk: one file per trained thing (weights *and* the settings that made them), written atomically,
read with ``weights_only=True``, never overwritten or deleted without being set aside under a unique name.

- :func:`atomic_write_bytes`: temporary file in the same folder, fsync, rename. A kill at any moment leaves the old
  file or the new one, never half of one, and never weights paired with another run's settings.
- :func:`save_artifact` / :func:`load_artifact`: tensors and plain containers only, so loading never runs code from
  the file.
- :func:`set_aside`: a stale, mismatched or unreadable file is renamed ``NAME.<reason>-<time>-<n>.pt``, kept for the
  user to inspect or delete.
- :func:`artifact_lock`: one run at a time trains a given artifact; a second run into the same runs folder is
  refused with a message naming the first run's process.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode())


def save_artifact(path: str | Path, content: dict[str, Any]) -> None:
    """Weights, settings and history in one file, written atomically."""
    buffer = io.BytesIO()
    import torch     # here, not at import: the notebook runner uses this module's writers without PyTorch
    torch.save(content, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_artifact(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a file written by :func:`save_artifact`; ``weights_only=True``: nothing in it can run code."""
    import torch
    return torch.load(path, map_location=map_location, weights_only=True)


def set_aside(path: str | Path, reason: str) -> Path:
    """Rename ``path`` to a name no other file has (``NAME.<reason>-<time>[-n].SUFFIX``) and return it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = path.with_name(f"{path.stem}.{reason}-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if not target.exists():
            os.replace(path, target)
            return target
    raise FileExistsError(f"could not find a free name to set {path} aside")


def remove_partial_writes(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left for ``path`` (``.NAME.*.tmp``): never
    a finished file, only the halves of ones that were never renamed into place. Call it holding the artifact's lock
    (:func:`artifact_lock`), so no live writer's file is taken."""
    path = Path(path)
    leftovers = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)
    return leftovers


class ArtifactBusy(RuntimeError):
    """Another process is training this artifact right now."""


@contextlib.contextmanager
def artifact_lock(path: str | Path) -> Iterator[None]:
    """Hold ``.locks/NAME.lock`` next to ``path`` while training it; refuse at once if another process holds it. The operating system
    drops the lock when its holder exits, even when killed, so a stale lock file blocks nothing."""
    import fcntl
    lock = Path(path).parent / ".locks" / f"{Path(path).name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            raise ArtifactBusy(f"{Path(path).name} is being trained by another run (process {holder}) in "
                               f"{Path(path).parent}; wait for it to finish, or give this run another runs_dir"
                               ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock
