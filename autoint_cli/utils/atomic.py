"""Files and folders that appear whole or not at all: written under a temporary name beside the target, then renamed.

A reader (or a user after Ctrl-C, a crash or a full disk) sees either the
previous file or the new one, never a partial one; a temporary left by a
crash starts with a dot and is ignored by everything that looks for outputs.
New files get the mode the user's umask gives, as ``open`` would.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(temp)`` for a temporary path beside ``path``, then flushes it to disk and renames it to ``path``.

    The temporary ends in ``.tmp``, never in the target's suffix, so that
    nothing that globs for outputs (``*.pt``, ``*.png``) takes a partial one
    for the real thing; writers that pick a format by suffix must be told it.
    On any error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)``, atomically."""
    return atomic_write(path, lambda temp: temp.write_text(text))


@contextlib.contextmanager
def staged_files(folder: Path) -> Iterator[Path]:
    """Yields a staging folder beside ``folder``; when the body ends without error, its files move into ``folder``.

    Each file is renamed into place (replacing one of the same name); other
    files of ``folder`` stay. An interrupted body moves nothing and removes the
    staging folder, so a partial set of outputs never appears under the final names.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        yield staging
        for item in sorted(staging.iterdir()):
            os.chmod(item, 0o666 & ~_umask())
            os.replace(item, folder / item.name)
        _fsync_folder(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def replaced_folder(folder: Path) -> Iterator[Path]:
    """Yields a staging folder beside ``folder``; when the body ends without error, it becomes ``folder`` whole.

    An earlier ``folder`` is removed only then, just before the rename; an
    interrupted body leaves ``folder`` as it was and removes the staging folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        yield staging
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
