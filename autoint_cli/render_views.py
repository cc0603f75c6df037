"""Rendering whole views from a trained run: frames, PNGs and videos, timed around rendering only."""
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from .autoint.fused import available as fused_available
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from .config import TrainConfig, scene_from_config, unflatten
from .data import Scene
from .distributed import SINGLE, Distributed, merge_shards
from .models import SceneModel, compile_module
from .rays import Rays, camera_rays
from .render import RenderOutput, render_chunks, render_integral, render_quadrature

logger = logging.getLogger(__name__)


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
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in payload["model"].items() if torch.is_tensor(v)}
    if expected != found:
        differ = [f"{k} {found.get(k, 'missing')} (expected {expected.get(k, 'none')})" for k in sorted(set(expected) | set(found)) if expected.get(k) != found.get(k)]
        raise CheckpointError(f"{path}: weights do not fit the architecture in its config: {'; '.join(differ[:3])}" + (f"; and {len(differ) - 3} more" if len(differ) > 3 else ""))
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    if testskip is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, testskip=testskip))
    return LoadedRun(config, model, scene_from_config(config.data), int(payload["step"]), path)


def make_renderer(
    model: SceneModel,
    background: Tensor,
    renderer: str,
    n_sections: Optional[int] = None,
    n_samples: int = 128,
    bf16: bool = False,
    compile_mode: Optional[str] = None,
    fused_mlp: bool = False,
) -> Callable[[Rays], RenderOutput]:
    """A function of rays for the integral renderer (at ``n_sections``) or the quadrature renderer (at ``n_samples``).

    With ``bf16`` the networks run under bf16 autocast; Φ's output layer and
    the section differences stay in float32. With ``bf16`` and ``fused_mlp``,
    where Triton can run, Φ's MLP is one fused kernel (same precision). With
    ``compile_mode`` (one of :data:`~autoint_cli.models.COMPILE_MODES`) the
    whole chunk renderer, sampler, networks and compositing, is compiled at
    a static shape: one graph, or two around the fused kernel's launch.
    """
    if renderer not in ("integral", "quadrature"):
        raise ValueError(f"unknown renderer {renderer!r}; expected integral or quadrature")
    fuse = bf16 and fused_mlp and renderer == "integral"
    if fuse and not fused_available(background.device):
        logger.info("fused MLP kernel: not on %s here (it needs Triton and a CUDA device); Phi runs as separate layers", background.device)
        fuse = False
    why = model.field.use_fused_mlp(fuse)
    if why:
        logger.info("fused MLP kernel: not for this model (%s); Phi runs as separate layers", why)

    def render(rays: Rays) -> RenderOutput:
        with torch.autocast(background.device.type, dtype=torch.bfloat16, enabled=bf16):
            if renderer == "integral":
                return render_integral(model, rays, background, n_sections)
            return render_quadrature(model, rays, background, n_samples)

    return render if compile_mode is None else compile_module(render, compile_mode, padding=False)


class ChunkSize:
    """The chunk size a render uses, halved for good when the GPU runs out of memory."""

    def __init__(self, rays: int):
        self.rays = rays

    def render(self, render: Callable[[Rays], RenderOutput], rays: Rays) -> RenderOutput:
        """render_chunks, retried with half the chunk after an out-of-memory error (said once per halving)."""
        while True:
            try:
                with torch.no_grad():
                    return render_chunks(render, rays, self.rays)
            except torch.cuda.OutOfMemoryError:
                if self.rays <= 1:
                    raise
                self.rays = max(1, self.rays // 2)
                torch.cuda.empty_cache()
                logger.warning("out of GPU memory while rendering; retrying with chunk %d", self.rays)


def chunk_for_memory(bytes_per_ray: float, free_bytes: float, fraction: float = 0.5, smallest: int = 1024, largest: int = 1 << 18) -> int:
    """The largest power of two n with n · bytes_per_ray ≤ fraction · free_bytes, clamped to [smallest, largest].

    A power of two keeps chunks a multiple of the GEMM tile sizes; the upper
    bound is where larger chunks stop paying on current GPUs.
    """
    if bytes_per_ray <= 0:
        return largest
    fits = fraction * free_bytes / bytes_per_ray
    n = 1 << max(0, math.floor(math.log2(fits))) if fits >= 1 else 1
    return int(min(max(n, smallest), largest))


CPU_CHUNK = 32768


def measure_chunk(render: Callable[[Rays], RenderOutput], rays: Rays, device: torch.device, probe: int = 4096, fraction: float = 0.5) -> int:
    """A chunk size for ``render`` on this device, chosen by measuring.

    On CUDA: renders ``probe`` of ``rays`` eagerly (compiled networks too, so
    that no second shape is compiled), takes the peak memory it needed per
    ray, and fits the chunk in ``fraction`` of what is free (free on the
    device plus PyTorch's cached blocks). On the CPU memory is rarely the
    limit: :data:`CPU_CHUNK`.
    """
    if device.type != "cuda":
        return CPU_CHUNK
    flat = rays.reshape(-1)
    flat = flat[torch.arange(min(probe, flat.shape[0]), device=flat.origins.device)]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        render(flat)
    torch.cuda.synchronize(device)
    per_ray = (torch.cuda.max_memory_allocated(device) - before) / flat.shape[0]
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    chunk = chunk_for_memory(per_ray, free + cached, fraction)
    logger.info("chunk %d rays (%.1f KiB per ray measured, %.1f GiB free)", chunk, per_ray / 1024, (free + cached) / 2**30)
    return chunk


def view_rays(scene: Scene, c2w: Tensor, device: torch.device) -> Rays:
    """The rays [H, W] of the scene's camera at pose ``c2w`` [3, 4], on ``device``."""
    return camera_rays(c2w.to(device), scene.intrinsics, scene.near, scene.far, scene.ndc)


def chunk_for_view(scene: Scene, c2w: Tensor, render: Callable[[Rays], RenderOutput], device: torch.device) -> int:
    """:func:`measure_chunk` on the rays of the view from ``c2w`` [3, 4]."""
    return measure_chunk(render, view_rays(scene, c2w, device), device)


def render_camera(scene: Scene, c2w: Tensor, render: Callable[[Rays], RenderOutput], chunk, device: torch.device) -> RenderOutput:
    """One full view [H, W] from pose ``c2w`` [3, 4]; ``chunk`` is an int or a shared :class:`ChunkSize`."""
    rays = view_rays(scene, c2w, device)
    size = chunk if isinstance(chunk, ChunkSize) else ChunkSize(chunk)
    return size.render(render, rays)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], RenderOutput], device: torch.device):
    """(fn(), milliseconds) with the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, (time.perf_counter() - start) * 1e3


def to8b(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def disparity_image(output: RenderOutput) -> np.ndarray:
    """Disparity scaled to [0, 1] by its maximum over the view, as a grey image [H, W]."""
    disp = output.disparity[..., 0].float().cpu().numpy()
    top = disp.max()
    return disp / top if top > 0 else disp


def write_video(path: Path, frames: List[np.ndarray], fps: int = 30) -> Path:
    """An MP4 of 8-bit frames (needs imageio-ffmpeg)."""
    try:
        iio.imwrite(path, np.stack(frames), fps=fps, codec="libx264", quality=8, macro_block_size=1)
    except (ImportError, RuntimeError, OSError) as err:
        raise RuntimeError(f"{path}: cannot write MP4 ({str(err).splitlines()[0]}); is imageio-ffmpeg installed?") from None
    return path


@dataclass
class RenderedViews:
    """Frames of a split or path with their render times.

    ``seconds`` is the wall time of the whole set after warm-up, gathering
    included, so that n / seconds is the frame rate of all processes together.
    """

    rgb: List[np.ndarray]
    disparity: List[np.ndarray]
    ms_per_frame: List[float]
    seconds: float = 0.0

    @property
    def frames_per_sec(self) -> float:
        return len(self.rgb) / self.seconds if self.seconds > 0 else float("nan")


def render_poses(
    scene: Scene,
    poses: Tensor,
    render: Callable[[Rays], RenderOutput],
    chunk: int,
    device: torch.device,
    warmup: bool = True,
    dist: Distributed = SINGLE,
) -> Optional[RenderedViews]:
    """Renders every pose; each process first renders its first pose once untimed, to warm up kernels and caches.

    Under several processes each renders every K-th pose and rank 0 gathers
    them all, in order; the other ranks get None.
    """
    chunk = chunk if isinstance(chunk, ChunkSize) else ChunkSize(chunk)
    mine = [poses[i] for i in dist.shard(len(poses))]
    if warmup and mine:
        render_camera(scene, mine[0], render, chunk, device)
    dist.barrier()
    start = time.perf_counter()
    rgb, disparity, ms_per_frame = [], [], []
    for c2w in mine:
        out, ms = timed(lambda: render_camera(scene, c2w, render, chunk, device), device)
        rgb.append(out.rgb.float().cpu().numpy())
        disparity.append(disparity_image(out))
        ms_per_frame.append(ms)
    # One process gathers its own lists back; several gather on rank 0.
    shards = dist.gather((rgb, disparity, ms_per_frame))
    if shards is None:
        return None
    parts = [merge_shards([shard[k] for shard in shards], dist.world_size) for k in range(3)]
    return RenderedViews(*parts, seconds=time.perf_counter() - start)


def write_views(views: RenderedViews, out_dir: Path, video: bool, names: Optional[List[str]] = None) -> List[Path]:
    """rgb_XXX.png and disp_XXX.png per view; rgb.mp4 and disp.mp4 with ``video``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (rgb, disp) in enumerate(zip(views.rgb, views.disparity)):
        name = names[i] if names else f"{i:03d}"
        for kind, image in (("rgb", rgb), ("disp", disp)):
            path = out_dir / f"{kind}_{name}.png"
            iio.imwrite(path, to8b(image))
            written.append(path)
    if video:
        written.append(write_video(out_dir / "rgb.mp4", [to8b(x) for x in views.rgb]))
        written.append(write_video(out_dir / "disp.mp4", [np.repeat(to8b(x)[..., None], 3, -1) for x in views.disparity]))
    return written


def split_poses(scene: Scene, split: str) -> Tensor:
    """Poses of ``test``, ``val``, ``train`` or the video ``path``."""
    if split == "path":
        return scene.render_c2w
    return scene.c2w[scene.split(split)]
