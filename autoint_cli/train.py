"""Training the grad networks on a multi-view scene.

Each step draws N_rand random pixels of the training views, renders their rays
with the training renderer (grad networks at M stratified samples in each of
N sections), and minimises the mean squared error to the pixels. The weights
are those of the integral networks: a checkpoint serves rendering directly.
"""
import contextlib
import logging
import math
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, flatten, scene_from_config
from .data import Scene
from .distributed import SINGLE, Distributed
from .metrics import psnr
from .models import SceneModel
from .rays import pixel_rays
from .render import render_training
from .render_views import make_renderer, render_poses, split_poses, to8b, write_video, write_views

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path
    seconds: float
    loss: float
    interrupted_by: Optional[str] = None


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stays NaN); the message says what was kept."""


class StopRequest:
    """Turns SIGINT and SIGTERM into a flag the loop checks between steps, so a checkpoint is written before exiting."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: Optional[int] = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def learning_rate(config: TrainConfig, step: int) -> float:
    """lrate · 0.1^(step / (lrate_decay·1000)): NeRF's exponential decay."""
    return config.run.lrate * 0.1 ** (step / (config.run.lrate_decay * 1000))


def write_run_files(run_dir: Path, config: TrainConfig, config_text: Optional[str]) -> None:
    """config.txt (the file as given) and args.txt (every resolved value, sorted)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        (run_dir / "config.txt").write_text(config_text)
    lines = [f"{key} = {value}" for key, value in sorted(flatten(config).items())]
    (run_dir / "args.txt").write_text("\n".join(lines) + "\n")


def check_run_dir(run_dir: Path, model: SceneModel) -> None:
    """Before any training: the run folder can be written, and holds room for a few checkpoints.

    A checkpoint holds the weights and Adam's two moments: about 3x the parameter bytes.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write_check."):
            pass
    except OSError as err:
        raise ConfigError(f"{run_dir}: cannot write the run folder ({err.strerror}); check basedir") from None
    needed = 3 * 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise ConfigError(f"{run_dir}: {free / 2**20:.0f} MiB free, but checkpoints need about {needed / 2**20:.0f} MiB; free space or change basedir")


class PixelSampler:
    """Random (view, row, col) of the training views, from a seeded generator on the device."""

    def __init__(self, scene: Scene, device: torch.device, generator: torch.Generator):
        self.views = scene.i_train.to(device)
        self.H, self.W = scene.H, scene.W
        self.generator = generator

    def __call__(self, n: int):
        index = torch.randint(0, len(self.views) * self.H * self.W, (n,), generator=self.generator, device=self.generator.device)
        pixel = index % (self.H * self.W)
        return self.views[index // (self.H * self.W)], pixel // self.W, pixel % self.W


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
    saved, current = payload["config"], asdict(config.model)
    differ = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]
    if differ:
        raise CheckpointError(f"{path}: saved with a different architecture ({'; '.join(differ)}); use --no_reload or another expname")


# Steps between the host's reads of the device-side NaN/inf counters (and, under torchrun, of the stop decision).
HOST_CHECK_EVERY = 10


class _NonfiniteSteps:
    """Counts, on the device, the steps whose gradients hold a NaN or inf; the host reads the counts now and then.

    Each step's flag goes to fused Adam, which then leaves the weights and its
    moments untouched. Reading the counts synchronises with the device, so it
    happens every few steps, not every step.
    """

    def __init__(self, device: torch.device, limit: int, step: int):
        self.limit = limit
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        self.reported = 0
        self.since = step

    def flag(self, grads) -> Tensor:
        """1.0 when any of ``grads`` is not finite (their total norm is not), else 0.0; updates the counts."""
        found = (~torch.isfinite(torch.nn.utils.get_total_norm(grads))).float()
        self.skipped += found
        self.streak = (self.streak + 1) * found
        return found

    def check(self, step: int, last_saved: Optional[Path]) -> None:
        """Warns of steps skipped since the last check; stops when ``limit`` came in a row."""
        skipped, streak = (int(x) for x in torch.stack([self.skipped, self.streak]).tolist())
        if skipped > self.reported:
            logger.warning("steps %d-%d: %d with NaN or inf in the loss or gradients; skipped (weights unchanged)", self.since + 1, step, skipped - self.reported)
            self.reported = skipped
        self.since = step
        if streak >= self.limit:
            kept = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written"
            raise TrainingError(f"{streak} steps in a row with NaN/inf up to step {step}; stopped ({kept}); lower lrate or check the data")


class _TrainingForward(nn.Module):
    """The training renderer as a module's forward, so DistributedDataParallel can hook it; returns rgb [n_rays, 3]."""

    def __init__(self, model: SceneModel):
        super().__init__()
        self.model = model

    def forward(self, rays, background: Tensor, jitter: Tensor) -> Tensor:
        return render_training(self.model, rays, background, jitter=jitter).rgb


def train(config: TrainConfig, device: torch.device, config_text: Optional[str] = None, dist: Distributed = SINGLE) -> TrainResult:
    """Trains (or resumes) the run ``basedir/expname``; returns where it stopped.

    Under torchrun (``dist.world_size`` = K > 1) every rank draws the same
    global batch of N_rand rays and jitter from the shared seed and trains on
    its own K-th of it, with gradients averaged by DistributedDataParallel. The
    step is then the very step one process takes on the whole batch, so a run
    resumes under any K. Rank 0 alone writes the run folder.
    """
    # Installed first: a signal during setup must also end in a clean exit, not a default kill.
    with StopRequest() as stop:
        run = config.run
        run_dir = Path(run.basedir) / run.expname
        if run.N_rand % dist.world_size:
            raise ConfigError(f"N_rand {run.N_rand} does not split evenly over {dist.world_size} processes; make it a multiple of {dist.world_size}")
        scene = scene_from_config(config.data)
        torch.manual_seed(run.seed)
        model = SceneModel(config.model)
        if dist.is_main:
            check_run_dir(run_dir, model)
            write_run_files(run_dir, config, config_text)
        model.to(device)
        # Fused Adam takes the step's NaN/inf flag as a tensor and skips the update on the device, with no host synchronisation.
        optimizer = torch.optim.Adam(model.parameters(), lr=run.lrate, fused=True)
        generator = torch.Generator(device=device).manual_seed(run.seed)
        step = 0
        resume = None if run.no_reload else latest_checkpoint(run_dir)
        if resume is not None:
            payload = load_checkpoint(resume)
            _check_resumable(payload, config, resume)
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            _restore_rng(payload["rng"], generator)
            step = int(payload["step"])
            logger.info("resuming %s from step %d (%s)", run.expname, step, resume)
        if run.compile:
            model.field.compile_grad_networks()
        forward = _TrainingForward(model)
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            # Every trainable parameter gets a gradient each step (the model froze the ones that cannot), so DDP need not search for unused ones.
            forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
            if dist.is_main:
                logger.info("distributed: %d processes; N_rand %d rays per step in total (%d per process); lrate %g as configured",
                            dist.world_size, run.N_rand, run.N_rand // dist.world_size, run.lrate)
        local = dist.split(run.N_rand)
        n_local = local.stop - local.start
        jitter_shape = (run.N_rand, config.model.n_sections, config.model.samples_per_section)

        images = scene.images.to(device)
        c2w = scene.c2w.to(device)
        background = torch.tensor(scene.background, device=device)
        sample_pixels = PixelSampler(scene, device, generator)
        writer = _summary_writer(run_dir) if dist.is_main else None
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16")

        def save(at_step: int) -> Path:
            payload = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": at_step,
                "rng": _rng_state(generator),
                "config": flatten(config),
            }
            return save_checkpoint(checkpoint_path(run_dir, at_step), payload)

        params = [p for p in model.parameters() if p.requires_grad]
        progress = _progress(step, run) if dist.is_main else None
        start = time.perf_counter()
        last_print, last_print_step = start, step
        loss_value = float("nan")
        last_saved = resume
        nonfinite = _NonfiniteSteps(device, run.max_nonfinite_steps, step)
        total = None  # the last step's loss; stays None when the run is already complete
        if step >= run.n_iters:
            logger.info("%s is already at step %d (n_iters %d): nothing to train", run.expname, step, run.n_iters)
        while step < run.n_iters:
            # Under torchrun the stop decision is an all-reduce and a host synchronisation: taken every few steps only.
            if not dist.active or step % HOST_CHECK_EVERY == 0:
                out_of_time = bool(run.max_train_seconds) and time.perf_counter() - start >= run.max_train_seconds
                # Every rank stops at the same step, whichever of them was signalled or ran out of time.
                signalled, out_of_time = dist.max([stop.signal or 0, out_of_time])
                if signalled:
                    stop.signal = int(signalled)
                    break
                if out_of_time:
                    logger.info("stopping at step %d: max_train_seconds %g reached", step, run.max_train_seconds)
                    break
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # The whole batch is drawn on every rank (cheap), then each keeps its block.
            views, rows, cols = (x[local] for x in sample_pixels(run.N_rand))
            jitter = torch.rand(jitter_shape, generator=generator, device=device)[local]
            rays = pixel_rays(c2w[views], rows, cols, scene.intrinsics, scene.near, scene.far, scene.ndc)
            target = images[views, rows, cols]
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=device)
            starts = range(0, n_local, run.chunk)
            for lo in starts:
                part = slice(lo, lo + run.chunk)
                # Gradients are all-reduced once per step, on the last chunk.
                sync = contextlib.nullcontext() if lo == starts[-1] or not dist.active else forward.no_sync()
                with sync:
                    with autocast:
                        rgb = forward(rays[part], background, jitter[part])
                    # This chunk's share of the rank's mean; DDP then averages the ranks' gradients.
                    loss = torch.sum((rgb.float() - target[part]) ** 2) / (3 * n_local)
                    loss.backward()
                total += loss.detach() / dist.world_size
            # Read by Adam.step as torch.amp.GradScaler would set it. The gradients are the same on every rank after the
            # all-reduce, so every rank takes the same decision.
            optimizer.found_inf = nonfinite.flag([p.grad for p in params if p.grad is not None])
            optimizer.step()
            step += 1
            printing = step % run.i_print == 0 or step == run.n_iters
            if printing or step % HOST_CHECK_EVERY == 0:
                nonfinite.check(step, last_saved)

            if printing:
                loss_value = dist.sum(total).item()
                now = time.perf_counter()
                rays_per_sec = run.N_rand * (step - last_print_step) / max(now - last_print, 1e-9)
                last_print, last_print_step = now, step
                train_psnr = -10 * math.log10(max(loss_value, 1e-12))
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, step)
                    writer.add_scalar("train/psnr", train_psnr, step)
                    writer.add_scalar("train/lrate", lr, step)
                    writer.add_scalar("train/rays_per_sec", rays_per_sec, step)
                if progress is not None:
                    progress.set_postfix(loss=f"{loss_value:.4g}", psnr=f"{train_psnr:.2f}", refresh=False)
                else:
                    logger.info("step %d loss %.4g psnr %.2f rays/s %.0f", step, loss_value, train_psnr, rays_per_sec)
            if progress is not None:
                progress.update(1)
            if not dist.is_main:
                continue
            if step % run.i_img == 0 and writer is not None and len(scene.i_val):
                _log_validation_view(model, scene, background, run.chunk, device, writer, step)
            if step % run.i_weights == 0:
                last_saved = save(step)
            if run.i_testset and step % run.i_testset == 0:
                _render_split(model, scene, background, run.chunk, device, run_dir / f"testset_{step:06d}", "test")
            if run.i_video and step % run.i_video == 0:
                _render_video(model, scene, background, run.chunk, device, run_dir / f"{run.expname}_spiral_{step:06d}")

        if dist.is_main and (last_saved is None or last_saved != checkpoint_path(run_dir, step)):
            last_saved = save(step)
        dist.barrier()
        if not dist.is_main:
            last_saved = checkpoint_path(run_dir, step)
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        if total is not None and math.isnan(loss_value):
            loss_value = dist.sum(total).item()
        interrupted = signal.Signals(stop.signal).name if stop.signal is not None else None
        return TrainResult(run_dir, step, last_saved, time.perf_counter() - start, loss_value, interrupted)


def _summary_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed; no TensorBoard events will be written")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _progress(step: int, run):
    if run.quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=run.n_iters, initial=step, desc=run.expname, dynamic_ncols=True, smoothing=0.05)


def _render_integral(model: SceneModel, scene: Scene, poses: Tensor, background: Tensor, chunk: int, device, warmup: bool = True):
    """Renders ``poses`` with the integral renderer in eval mode, then returns the model to training."""
    model.eval()
    try:
        return render_poses(scene, poses, make_renderer(model, background, "integral"), chunk, device, warmup)
    finally:
        model.train()


def _log_validation_view(model: SceneModel, scene: Scene, background: Tensor, chunk: int, device, writer, step: int) -> None:
    view = int(scene.i_val[0])  # the same view every time, so its PSNR curve is comparable
    rendered = _render_integral(model, scene, scene.c2w[view : view + 1], background, chunk, device, warmup=False)
    rgb = rendered.rgb[0]
    writer.add_scalar("val/psnr_integral", psnr(rgb, scene.images[view].numpy()), step)
    writer.add_image("val/rgb", to8b(rgb), step, dataformats="HWC")
    writer.add_image("val/disparity", to8b(rendered.disparity[0]), step, dataformats="HW")


def _render_split(model, scene, background, chunk, device, out_dir: Path, split: str) -> None:
    views = _render_integral(model, scene, split_poses(scene, split), background, chunk, device)
    write_views(views, out_dir, video=False)
    targets = scene.images[scene.split(split)].numpy()
    scores = [psnr(v, t) for v, t in zip(views.rgb, targets)]
    logger.info("%s: %d %s views, mean PSNR %.2f dB (integral renderer)", out_dir, len(scores), split, float(np.mean(scores)))


def _render_video(model, scene, background, chunk, device, stem: Path) -> None:
    views = _render_integral(model, scene, scene.render_c2w, background, chunk, device)
    write_video(stem.with_name(stem.name + "_rgb.mp4"), [to8b(x) for x in views.rgb])
    write_video(stem.with_name(stem.name + "_disp.mp4"), [np.repeat(to8b(x)[..., None], 3, -1) for x in views.disparity])
