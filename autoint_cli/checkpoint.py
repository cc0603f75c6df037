"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain values (``torch.load(...,
weights_only=True)`` reads it): the model's state dict (the shared weights of
the integral and grad networks, and the sampler), the optimizer's, the step,
the random-number states and the resolved config as ``{key: value}``.
"""
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

CHECKPOINT_NAME = re.compile(r"^(\d{6,})\.pt$")


class CheckpointError(ValueError):
    """A missing or unusable checkpoint; the message names the file."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"{step:06d}.pt"


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint of the highest step, ignoring anything not named NNNNNN.pt (such as unfinished temp files)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.match(p.name))]
    return max(steps)[1] if steps else None


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> Path:
    """Writes ``payload`` to ``path`` via a temp file in the same folder, fsync and rename.

    A reader never sees a partial file: until the rename the previous
    checkpoints are the latest, and a crash leaves at most a temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Reads a checkpoint on the CPU with ``weights_only=True``; refuses anything else in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zips, pickles with code, plain junk: all unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    required = ("model", "step", "config")
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise CheckpointError(f"{path}: not an autoint checkpoint (expected keys {', '.join(required)})")
    return payload
