"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

# A write goes to ".<name>.<random>.tmp" beside its target, then is renamed over it. A kill leaves at
# most such a temp file: no reader opens it (they ask for exact names) and `remove_temps` clears it.
TMP_PREFIX, TMP_SUFFIX = ".", ".tmp"
LOW_DISK_BYTES = 256 * 2**20  # a failed write with less free space than this is reported as a full disk
_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        free = shutil.disk_usage(path.parent).free
        if isinstance(e, Exception) and free < LOW_DISK_BYTES:
            # A full disk surfaces as ENOSPC, or from torch.save as "enforce fail ... unexpected pos": say what it is.
            raise OSError(f"could not write {path}: its disk is full ({free / 2**20:.0f} MB free; {e}). "
                          "Free some space and run again (`--resume` continues a run; the batch resumes by itself)."
                          ) from e
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync, then rename."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | Path, array: Any) -> None:
    """np.save `array` to `path` atomically."""
    import numpy as np

    _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """torch.save `obj` to `path` atomically."""
    import torch

    # Straight into the temp file: a VGG16 checkpoint with Adam state is 1.6 GB, and a BytesIO copy first
    # would cost as much memory again, and the time of the copy, at every checkpoint.
    _atomic_write(path, lambda f: torch.save(obj, f))


def remove_temps(folder: str | Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temp files that killed atomic writes left in `folder` (older than `older_than_s`); return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for f in folder.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        try:
            if f.is_file() and now - f.stat().st_mtime >= older_than_s:
                f.unlink()
                removed.append(f)
        except FileNotFoundError:  # another process finished or removed it
            pass
    return removed
