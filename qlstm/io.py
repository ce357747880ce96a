"""File helpers: atomic writes and output folders that are either complete or absent.

Every file qlstm writes goes through :func:`atomic_write_bytes` (write to a temporary name in the
same folder, fsync, rename), so an interrupted or failed command never leaves a partial file that
looks complete. Multi-file outputs use :func:`staged_dir`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qlstm.errors import QlstmError


def _umask() -> int:
    """The process umask (there is no way to read it without setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700 entries; finished outputs get the usual umask-derived modes.


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library that writes files itself
    (``np.save``, ``h5py``, ``fig.savefig``, ``onnx.save``); renamed onto ``path`` only on success.
    The temporary name keeps the real suffix so libraries that dispatch on it still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def staged_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a multi-file output in a hidden sibling folder, then move it to ``final``.

    If ``final`` exists and is not empty it is refused unless ``overwrite``; on failure the
    staging folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise QlstmError(
            f"{final} already exists and is not empty; choose another folder or pass --overwrite"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging.", dir=final.parent))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib  # here: loading OpenSSL costs every command's start-up ~2 ms

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """The one hash of a set of weight arrays: sha256 over the sorted names, shapes and float64
    bytes (``name:shape;`` then the data), used by the C-simulation cache key and the exported
    files' ``qlstm.weights_sha256`` metadata to spot stale artifacts."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(weights):
        a = np.ascontiguousarray(weights[k], dtype=np.float64)
        h.update(f"{k}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()
