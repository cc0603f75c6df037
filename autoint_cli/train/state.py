"""What a training run is at a given step: model, optimizer, step, random generator, learning-rate schedule.

:func:`setup_state` builds it fresh or from the run's latest checkpoint;
:func:`save_state` writes it back. A killed run resumes from the last
checkpoint to the very weights an uninterrupted run reaches.
"""
import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import ModelConfig, RunConfig, TrainConfig, flatten
from ..models import SceneModel
from ..runs.checkpoint import CheckpointError, check_shapes, checkpoint_path, latest_checkpoint, load_checkpoint, require_keys, save_checkpoint
from ..scene import Scene

logger = logging.getLogger(__name__)


def learning_rate(run: RunConfig, step: int) -> float:
    """lrate · 0.1^(step / (lrate_decay·1000)): NeRF's exponential decay."""
    return run.lrate * 0.1 ** (step / (run.lrate_decay * 1000))


def parameter_groups(model: SceneModel, run: RunConfig) -> list:
    """Adam's parameter groups: a grid's feature tables on their own (``lr_scale`` = grid_lrate / lrate), when it has any.

    The scale, not a fixed rate, is stored so that one schedule drives every group: the step sets
    lr = schedule(step) · lr_scale.
    """
    tables = [p for name, p in model.named_parameters() if name.endswith(".table")]
    others = [p for name, p in model.named_parameters() if not name.endswith(".table")]
    if not tables:
        return [{"params": others, "lr_scale": 1.0}]
    return [{"params": others, "lr_scale": 1.0}, {"params": tables, "lr_scale": (run.grid_lrate or run.lrate) / run.lrate}]


@dataclass
class TrainState:
    """A run at step ``step``; :class:`~autoint_cli.train.step.TrainStep` advances it by one.

    Attributes:
        model: the networks (their weights are the integral networks').
        optimizer: fused Adam over the model's trainable parameters.
        generator: the seeded generator of rays and sample jitter, on the training device.
        schedule: the learning rate at a step.
        step: steps taken so far.
        resumed_from: the checkpoint this state was loaded from, if any.
    """

    model: SceneModel
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    schedule: Callable[[int], float]
    step: int = 0
    resumed_from: Optional[Path] = None


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resumable(payload: dict, config: TrainConfig, path: Path) -> None:
    """Refuses to resume into a different architecture; other keys (iterations, logging) may change."""
    # Keys newer than the checkpoint take their defaults, as the checkpoint's model was built with them.
    saved, current, defaults = payload["config"], asdict(config.model), asdict(ModelConfig())
    differ = [f"{k} {saved.get(k, defaults[k])!r} -> {v!r}" for k, v in current.items() if saved.get(k, defaults[k]) != v]
    if differ:
        raise CheckpointError(f"{path}: saved with a different architecture ({'; '.join(differ)}); use --no_reload or another expname")


def resolve_for_scene(config: TrainConfig, scene: Scene) -> TrainConfig:
    """``config`` with the keys it leaves to the scene filled in: a grid's ``bound`` (0: the scene's)."""
    model = config.model
    if model.encoding == "hashgrid" and model.bound == 0:
        return dataclasses.replace(config, model=dataclasses.replace(model, bound=scene.bound))
    return config


def build_model(config: TrainConfig) -> SceneModel:
    """The untrained model, its weights drawn from ``seed``."""
    torch.manual_seed(config.run.seed)
    return SceneModel(config.model)


def setup_state(config: TrainConfig, model: SceneModel, device: torch.device, run_dir: Optional[Path]) -> TrainState:
    """The state to train from: ``model`` (moved to ``device``) with a new optimizer, or the latest checkpoint of ``run_dir``.

    ``run_dir`` None (or ``no_reload``) starts afresh.
    """
    run = config.run
    model.to(device)
    # Fused Adam takes the step's NaN/inf flag as a tensor and skips the update on the device, with no host synchronisation.
    optimizer = torch.optim.Adam(parameter_groups(model, run), lr=run.lrate, eps=run.adam_eps, fused=True)
    generator = torch.Generator(device=device).manual_seed(run.seed)
    state = TrainState(model, optimizer, generator, lambda step: learning_rate(run, step))
    resume = None if run.no_reload or run_dir is None else latest_checkpoint(run_dir)
    if resume is None:
        return state
    payload = load_checkpoint(resume)
    _check_resumable(payload, config, resume)
    require_keys(resume, payload, ("optimizer", "rng"), "resuming")
    check_shapes(resume, model, payload["model"])
    model.load_state_dict(payload["model"])
    try:
        optimizer.load_state_dict(payload["optimizer"])
        _restore_rng(payload["rng"], generator)
        # The checkpoint's hyper-parameters came back with its state; this run's config decides them.
        for group, fresh in zip(optimizer.param_groups, parameter_groups(model, run)):
            group.update(lr_scale=fresh["lr_scale"], eps=run.adam_eps)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise CheckpointError(f"{resume}: its optimizer or random state does not fit this model ({type(err).__name__}: {err})") from None
    state.step, state.resumed_from = int(payload["step"]), resume
    logger.info("resuming %s from step %d (%s)", run.expname, state.step, resume)
    return state


def save_state(state: TrainState, config: TrainConfig, run_dir: Path) -> Path:
    """Writes the checkpoint of ``state.step`` atomically; returns its path."""
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "step": state.step,
        "rng": _rng_state(state.generator),
        "config": flatten(config),
    }
    return save_checkpoint(checkpoint_path(run_dir, state.step), payload)
