"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain values (``torch.load(...,
weights_only=True)`` reads it): the model's state dict (the shared weights of
the integral and grad networks, and the sampler), the optimizer's, the step,
the random-number states and the resolved config as ``{key: value}``.
"""
import re
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .atomic import atomic_write

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
    """Writes ``payload`` to ``path`` atomically (:func:`~autoint_cli.atomic.atomic_write`: temp file, fsync, rename).

    A reader never sees a partial file: until the rename the previous
    checkpoints are the latest, and a crash leaves at most a temp file behind.
    """
    return atomic_write(path, lambda temp: torch.save(payload, temp))


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
