"""A trained run rebuilt from its checkpoint: the model, its config and its scene."""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..config import TrainConfig, unflatten
from ..models import SceneModel
from ..scene import Scene, scene_from_config
from .checkpoint import CheckpointError, check_shapes, latest_checkpoint, load_checkpoint


@dataclass(frozen=True)
class LoadedRun:
    """A trained model rebuilt from a run's checkpoint, with its scene."""

    config: TrainConfig
    model: SceneModel
    scene: Scene
    step: int
    checkpoint: Path


def load_run(expdir: Path, device: torch.device, ckpt: Optional[Path] = None, testskip: Optional[int] = None) -> LoadedRun:
    """Rebuilds the model from the checkpoint's own config (latest checkpoint unless ``ckpt``).

    ``testskip`` replaces the run's own (every k-th test and val view, Blender scenes).
    """
    expdir = Path(expdir)
    path = Path(ckpt) if ckpt is not None else latest_checkpoint(expdir)
    if path is None:
        raise CheckpointError(f"{expdir}: no checkpoints/NNNNNN.pt (is this a run folder, and has it saved a checkpoint?)")
    payload = load_checkpoint(path)
    try:
        config = unflatten(payload["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its config does not fit this version of autoint ({err})") from None
    model = SceneModel(config.model)
    check_shapes(path, model, payload["model"])
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    if testskip is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, testskip=testskip))
    return LoadedRun(config, model, scene_from_config(config.data), int(payload["step"]), path)
