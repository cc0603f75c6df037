"""What a training run does every so many steps besides training: report, checkpoint, validate, render tests and videos.

Each action is a small function of the step with its own interval
(:class:`Periodic`); the loop asks each whether it is due after every step.
"""
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from ..render.media import to8b, write_frames, write_videos
from ..render.renderer import Renderer, RenderSettings
from ..render.views import RenderedViews, render_poses, split_poses
from ..scene import Scene
from ..utils.metrics import psnr
from .state import TrainState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    """``action(step)`` every ``every`` steps (never when ``every`` is 0).

    An ``optional`` action (a render for the logs) that fails is logged with
    a warning and training goes on: an auxiliary output must not cost the run.
    """

    every: int
    action: Callable[[int], None]
    name: str = ""
    optional: bool = False

    def __call__(self, step: int) -> None:
        if not self.every or step % self.every:
            return
        if not self.optional:
            self.action(step)
            return
        try:
            self.action(step)
        except Exception as err:  # noqa: BLE001 - any failure of an optional output is reported, never fatal
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            logger.warning("step %d: %s failed (%s); training goes on", step, self.name, first)


def summary_writer(run_dir: Path):
    """A TensorBoard writer in run_dir/tensorboard, or None (said once) when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed; no TensorBoard events will be written")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class Reporter:
    """Training scalars to TensorBoard and the progress bar (or the log when there is none)."""

    def __init__(self, writer, progress, n_rays: int, step: int):
        self.writer, self.progress, self.n_rays = writer, progress, n_rays
        self.last_time, self.last_step = time.perf_counter(), step

    def report(self, step: int, loss: float, lr: float) -> None:
        now = time.perf_counter()
        rays_per_sec = self.n_rays * (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        train_psnr = -10 * math.log10(max(loss, 1e-12))
        if self.writer is not None:
            for name, value in (("loss", loss), ("psnr", train_psnr), ("lrate", lr), ("rays_per_sec", rays_per_sec)):
                self.writer.add_scalar(f"train/{name}", value, step)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{loss:.4g}", psnr=f"{train_psnr:.2f}", refresh=False)
        else:
            logger.info("step %d loss %.4g psnr %.2f rays/s %.0f", step, loss, train_psnr, rays_per_sec)

    def close(self) -> None:
        for item in (self.progress, self.writer):
            if item is not None:
                item.close()


class ViewRenders:
    """Integral renders of the current weights during training: a validation view, test sets and path videos.

    Rendered as ``autoint-render`` would at the run's own N, layer by layer:
    float32 products for fp32 runs, TF32 for tf32 and bf16 runs.
    """

    def __init__(self, state: TrainState, scene: Scene, background: Tensor, precision: str, chunk: int):
        self.state, self.scene = state, scene
        settings = RenderSettings(precision="fp32" if precision == "fp32" else "tf32", chunk=chunk)
        self.renderer = Renderer(state.model, background, settings)

    def render(self, poses: Tensor, warmup: bool = True) -> RenderedViews:
        """``poses`` with the model in eval mode, then back to training."""
        self.state.model.eval()
        try:
            return render_poses(self.scene, poses, self.renderer, warmup)
        finally:
            self.state.model.train()

    def validation(self, writer, step: int) -> None:
        view = int(self.scene.i_val[0])  # the same view every time, so its PSNR curve is comparable
        rendered = self.render(self.scene.c2w[view : view + 1], warmup=False)
        rgb = rendered.rgb[0]
        writer.add_scalar("val/psnr_integral", psnr(rgb, self.scene.images[view].numpy()), step)
        writer.add_image("val/rgb", to8b(rgb), step, dataformats="HWC")
        writer.add_image("val/disparity", to8b(rendered.disparity[0]), step, dataformats="HW")

    def test_set(self, out_dir: Path, split: str = "test") -> None:
        views = self.render(split_poses(self.scene, split))
        write_frames(out_dir, views.rgb, views.disparity, video=False)
        targets = self.scene.images[self.scene.split(split)].numpy()
        scores = [psnr(v, t) for v, t in zip(views.rgb, targets)]
        logger.info("%s: %d %s views, mean PSNR %.2f dB (integral renderer)", out_dir, len(scores), split, float(np.mean(scores)))

    def video(self, stem: Path) -> None:
        views = self.render(self.scene.render_c2w)
        write_videos(stem, views.rgb, views.disparity)


def progress_bar(step: int, n_iters: int, name: str, quiet: bool):
    """A tqdm bar from ``step`` to ``n_iters``, or None when ``quiet``."""
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=n_iters, initial=step, desc=name, dynamic_ncols=True, smoothing=0.05)

