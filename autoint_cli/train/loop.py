"""The training loop: set a run up (or resume it), take steps, run the periodic actions, stop cleanly.

Each step draws N_rand random pixels of the training views and takes one
:class:`~autoint_cli.train.step.TrainStep`. The weights are those of the
integral networks: a checkpoint serves rendering directly.
"""
import logging
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from ..config import ConfigError, TrainConfig
from ..render.media import video_writer_missing
from ..runs.checkpoint import checkpoint_path, prune_checkpoints
from ..scene import scene_from_config
from ..utils.distributed import SINGLE, Distributed
from .guards import NonfiniteSteps, RunLock, StopRequest, TrainingError, check_batch, check_run_dir, set_aside_checkpoints, write_run_files
from .periodic import Periodic, Reporter, ViewRenders, progress_bar, summary_writer
from .state import build_model, resolve_for_scene, save_state, setup_state
from .step import BatchSampler, Penalties, StepInterrupted, StepResult, TrainStep

logger = logging.getLogger(__name__)

# Steps between the host's reads of the device-side NaN/inf counters (and, under torchrun, of the stop decision).
HOST_CHECK_EVERY = 10


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path
    seconds: float
    loss: float
    interrupted_by: Optional[str] = None


class Training:
    """One run of the loop: its state, its step, its periodic actions; rank 0 alone writes the run folder."""

    def __init__(self, config: TrainConfig, device: torch.device, config_text: Optional[str], dist: Distributed, resources: ExitStack):
        run = config.run
        self.dist = dist
        self.run_dir = Path(run.basedir) / run.expname
        if run.sample_by_error > 0 and dist.active:
            raise ConfigError(f"sample_by_error {run.sample_by_error:g} keeps the pixels' errors in one process: it does not run under "
                              f"torchrun ({dist.world_size} processes); set it to 0")
        if run.N_rand % dist.world_size:
            raise ConfigError(f"N_rand {run.N_rand} does not split evenly over {dist.world_size} processes; make it a multiple of {dist.world_size}")
        scene = scene_from_config(config.data)
        check_batch(run, config.model, scene, device)
        if run.viewer and dist.is_main:
            check_viewer(run.viewer_port)
        self.config = config = resolve_for_scene(config, scene)
        model = build_model(config)
        if dist.is_main:
            check_run_dir(self.run_dir, sum(p.numel() * p.element_size() for p in model.parameters()), run)
            resources.enter_context(RunLock(self.run_dir))
            if run.no_reload:
                set_aside_checkpoints(self.run_dir)
        self.state = setup_state(config, model, device, self.run_dir)
        finished = self.state.step >= run.n_iters  # a finished run is left exactly as it was
        if dist.is_main and not finished:  # only once every check has passed (the resume's included)
            write_run_files(self.run_dir, config, config_text)
        background = torch.tensor(scene.background, device=device)
        penalties = Penalties(run.smooth_rgb, run.negative_sigma, run.sigma_consistency, run.distortion, run.strata_loss, run.sampler_fit,
                              run.coarse_loss)
        self.step = TrainStep(model, background, run.precision, run.compile_mode if run.compile else None, run.chunk, dist, penalties)
        if dist.active and dist.is_main:
            logger.info("distributed: %d processes; N_rand %d rays per step in total (%d per process); lrate %g as configured",
                        dist.world_size, run.N_rand, run.N_rand // dist.world_size, run.lrate)
        self.sample = BatchSampler(scene, device, run.N_rand, config.model.n_sections, config.model.samples_per_section, dist,
                                   run.precrop_iters, run.precrop_frac, run.raw_noise_std, run.random_bkgd, run.post_shift,
                                   run.sigma_consistency > 0, run.sample_by_error, run.error_alpha,
                                   run.error_iters)
        self.nonfinite = NonfiniteSteps(device, run.max_nonfinite_steps, self.state.step)
        self.last_saved = self.state.resumed_from
        self.last: Optional[StepResult] = None
        writer = summary_writer(self.run_dir) if dist.is_main and not finished else None
        progress = progress_bar(self.state.step, run.n_iters, run.expname, run.quiet) if dist.is_main else None
        self.reporter = Reporter(writer, progress, run.N_rand, self.state.step)
        self.actions = self._actions(ViewRenders(self.state, scene, background, run.precision, run.chunk), writer, len(scene.i_val) > 0)
        if run.viewer and dist.is_main and not finished:
            resources.callback(self._start_viewer(scene, device).stop)

    def _start_viewer(self, scene, device: torch.device):
        """autoint-view's page on 127.0.0.1, drawn from the weights as they train (a frame per browser at most every 0.5 s; a still
        view is drawn again every 2 s, so that it follows the training)."""
        from ..render.renderer import RenderSettings
        from ..runs.loader import LoadedRun
        from ..viewer.frames import FrameRenderer
        from ..viewer.server import ViewerOptions, start_viewer

        run = self.config.run
        live = LoadedRun(self.config, self.state.model, scene, self.state.step, self.run_dir)
        frames = FrameRenderer(live, RenderSettings(precision=run.precision, chunk=run.chunk), device)
        options = ViewerOptions(max_height=256 if device.type == "cuda" else 64, min_interval=0.5, refresh_seconds=2.0)
        server = start_viewer(frames, "127.0.0.1", run.viewer_port, options, self.run_dir / "camera_paths")
        logger.info("viewer: http://127.0.0.1:%d, drawn from the weights as they train", run.viewer_port)
        return server

    def _actions(self, views: ViewRenders, writer, has_val: bool) -> List[Periodic]:
        """Rank 0's periodic actions, in the order they run after a step."""
        run = self.config.run
        if not self.dist.is_main:
            return []
        i_video = run.i_video
        if i_video and video_writer_missing():
            logger.warning("i_video %d: no videos will be written (%s)", i_video, video_writer_missing())
            i_video = 0
        return [
            Periodic(run.i_img if writer is not None and has_val else 0, lambda step: views.validation(writer, step), "the validation render", True),
            Periodic(run.i_weights, lambda step: self.save(), "the checkpoint"),
            Periodic(run.i_testset, lambda step: views.test_set(self.run_dir / f"testset_{step:06d}"), "the test-set render", True),
            Periodic(i_video, lambda step: views.video(self.run_dir / f"{run.expname}_spiral_{step:06d}"), "the path video", True),
        ]

    def save(self) -> Path:
        """The checkpoint of this step, then the older ones that ``keep_checkpoints``/``i_keep`` do not keep are removed.

        A failed write (a full disk) stops the run in one line naming the latest checkpoint on disk, which is intact.
        """
        run = self.config.run
        try:
            self.last_saved = save_state(self.state, self.config, self.run_dir)
        except OSError as err:
            kept = f"the latest checkpoint on disk is {self.last_saved}" if self.last_saved else "no checkpoint was written"
            raise TrainingError(f"{self.run_dir}: could not write the checkpoint of step {self.state.step} ({err.strerror or err}); "
                                f"{kept}; free space and run the same command to resume") from None
        removed = prune_checkpoints(self.run_dir, run.keep_checkpoints, run.i_keep)
        if removed:
            logger.debug("removed %d older checkpoints (keep_checkpoints %d)", len(removed), run.keep_checkpoints)
        return self.last_saved

    def should_stop(self, stop: StopRequest, start: float) -> bool:
        """Whether a signal came or time ran out (decided together under torchrun: every few steps only, as it synchronises)."""
        run = self.config.run
        if self.dist.active and self.state.step % HOST_CHECK_EVERY:
            return False
        out_of_time = bool(run.max_train_seconds) and time.perf_counter() - start >= run.max_train_seconds
        # Every rank stops at the same step, whichever of them was signalled or ran out of time.
        signalled, out_of_time = self.dist.max([stop.signal or 0, out_of_time])
        if signalled:
            stop.signal = int(signalled)
            return True
        if out_of_time:
            logger.info("stopping at step %d: max_train_seconds %g reached", self.state.step, run.max_train_seconds)
        return bool(out_of_time)

    def after_step(self, result: StepResult) -> None:
        """Counts a skipped step, reports at print steps, then runs the periodic actions."""
        run, step = self.config.run, self.state.step
        self.nonfinite.record(result.skipped)
        printing = step % run.i_print == 0 or step == run.n_iters
        if printing or step % HOST_CHECK_EVERY == 0:
            self.nonfinite.check(step, self.last_saved)
        if printing:
            self.reporter.report(step, self.dist.sum(result.loss).item(), self.state.schedule(step - 1))
        if self.reporter.progress is not None:
            self.reporter.progress.update(1)
        for action in self.actions:
            action(step)

    def run(self, stop: StopRequest) -> TrainResult:
        run, start = self.config.run, time.perf_counter()
        if self.state.step >= run.n_iters:
            logger.info("%s is already at step %d (n_iters %d): nothing to train", run.expname, self.state.step, run.n_iters)
        while self.state.step < run.n_iters and not self.should_stop(stop, start):
            batch = self.sample(self.state.generator, self.state.step)
            try:
                self.last = self.step(self.state, batch, lambda: stop.signal is not None)
                self.sample.record(batch, self.last.ray_errors)
            except StepInterrupted:
                # A step of many sub-batches can take long: a signal ends it between two of them, and the last whole step is saved.
                logger.info("step %d abandoned on a signal; the weights are those of step %d", self.state.step + 1, self.state.step)
                break
            self.after_step(self.last)
        return self.finish(stop, start)

    def finish(self, stop: StopRequest, start: float) -> TrainResult:
        """The final checkpoint (unless this step's exists), then the result."""
        step = self.state.step
        if self.dist.is_main and self.last_saved != checkpoint_path(self.run_dir, step):
            self.save()
        self.dist.barrier()
        saved = self.last_saved if self.dist.is_main else checkpoint_path(self.run_dir, step)
        self.reporter.close()
        loss = self.dist.sum(self.last.loss).item() if self.last is not None else float("nan")
        interrupted = signal.Signals(stop.signal).name if stop.signal is not None else None
        return TrainResult(self.run_dir, step, saved, time.perf_counter() - start, loss, interrupted)


def check_viewer(port: int) -> None:
    """The training viewer's needs, checked before the run folder is touched: viser, and a free port on 127.0.0.1."""
    from ..viewer.server import check_port, viser_module

    viser_module()
    check_port("127.0.0.1", port)


def train(config: TrainConfig, device: torch.device, config_text: Optional[str] = None, dist: Distributed = SINGLE) -> TrainResult:
    """Trains (or resumes) the run ``basedir/expname``; returns where it stopped.

    Under torchrun (``dist.world_size`` = K > 1) every rank draws the same
    global batch of N_rand rays and jitter from the shared seed and trains on
    its own K-th of it, with gradients averaged by DistributedDataParallel. The
    step is then the very step one process takes on the whole batch, so a run
    resumes under any K. Rank 0 alone writes the run folder.
    """
    # Installed first: a signal during setup must also end in a clean exit, not a default kill.
    with StopRequest() as stop, ExitStack() as resources:
        return Training(config, device, config_text, dist, resources).run(stop)
