"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain values (``torch.load(...,
weights_only=True)`` reads it): the model's state dict (the shared weights of
the integral and grad networks, and the sampler), the optimizer's, the step,
the random-number states and the resolved config as ``{key: value}``.
"""
import io
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..utils.atomic import atomic_write

CHECKPOINT_NAME = re.compile(r"^(\d{6,})\.pt$")


class CheckpointError(ValueError):
    """A missing or unusable checkpoint; the message names the file."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"{step:06d}.pt"


def saved_checkpoints(run_dir: Path) -> List[Path]:
    """The run's checkpoints named NNNNNN.pt, by step (temp files and anything else ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    steps = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(steps)]


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint of the highest step, ignoring anything not named NNNNNN.pt (such as unfinished temp files)."""
    saved = saved_checkpoints(run_dir)
    return saved[-1] if saved else None


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's name NNNNNN.pt."""
    return int(CHECKPOINT_NAME.match(Path(path).name).group(1))


def prune_checkpoints(run_dir: Path, keep: int, every: int = 0) -> List[Path]:
    """Removes the run's older checkpoints: all but the latest ``keep`` (0: none removed) and those whose step is a multiple of
    ``every`` (0: no such rule). Returns what was removed."""
    saved = saved_checkpoints(run_dir)
    if keep <= 0 or len(saved) <= keep:
        return []
    removed = [p for p in saved[:-keep] if not (every and checkpoint_step(p) % every == 0)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> Path:
    """Writes ``payload`` to ``path`` atomically (:func:`~autoint_cli.utils.atomic.atomic_write`: temp file, fsync, rename).

    A reader never sees a partial file: until the rename the previous
    checkpoints are the latest, and a crash leaves at most a temp file behind.
    The payload is serialised in memory and written by Python's own file
    I/O, so that a full disk raises OSError (ENOSPC) rather than the
    RuntimeError that torch.save's writer gives.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda temp: temp.write_bytes(buffer.getbuffer()))


def _read(path: Path) -> Dict[str, Any]:
    """The payload of ``path``, or CheckpointError naming it (without a hint about other checkpoints)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zips, pickles with code, plain junk: all unusable
        text = str(err).strip()
        # torch's messages run on for several sentences: the first says what is wrong.
        first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    required = ("model", "step", "config")
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise CheckpointError(f"{path}: not an autoint checkpoint (expected keys {', '.join(required)})")
    return payload


def _intact_before(path: Path) -> Optional[Path]:
    """The latest checkpoint of the same run folder before ``path`` that reads, if any."""
    match = CHECKPOINT_NAME.match(path.name)
    if match is None or path.parent.name != "checkpoints":
        return None
    for earlier in reversed(saved_checkpoints(path.parent.parent)):
        if checkpoint_step(earlier) < int(match.group(1)):
            try:
                _read(earlier)
                return earlier
            except CheckpointError:
                continue
    return None


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Reads a checkpoint on the CPU with ``weights_only=True``; refuses anything else in one line.

    When a run's checkpoint is unreadable (a truncated copy, a disk that
    failed), the message names the latest earlier one that is intact.
    """
    path = Path(path)
    try:
        return _read(path)
    except CheckpointError as err:
        intact = _intact_before(path)
        if intact is None:
            raise
        raise CheckpointError(f"{err}; the latest intact checkpoint is {intact}: render or evaluate it with --ckpt {intact}, "
                              f"or move {path.name} aside to resume from it") from None


def require_keys(path: Path, payload: Dict[str, Any], keys: Sequence[str], purpose: str) -> None:
    """Refuses a checkpoint without ``keys`` (such as the optimizer state a resume needs), naming the file and what is missing."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: has no {', '.join(missing)} state, which {purpose} needs")


def check_shapes(path: Path, module: nn.Module, weights: Dict[str, Any]) -> None:
    """Names the first parameters whose shapes differ between the checkpoint's ``weights`` and ``module`` (built from its config)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items() if torch.is_tensor(v)}
    if expected == found:
        return
    names = sorted(set(expected) | set(found))
    differ = [f"{k} {found.get(k, 'missing')} (expected {expected.get(k, 'none')})" for k in names if expected.get(k) != found.get(k)]
    more = f"; and {len(differ) - 3} more" if len(differ) > 3 else ""
    raise CheckpointError(f"{path}: weights do not fit the architecture in its config: {'; '.join(differ[:3])}{more}")
