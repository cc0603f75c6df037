"""Whole views of a scene: the rays of a camera, rendered frames with their times, shared out over processes."""
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..scene import Scene, SceneError
from ..utils.distributed import SINGLE, Distributed, merge_shards
from ..volume.rays import Intrinsics, Rays, camera_rays, to_ndc
from ..volume.rendering import RenderOutput
from .renderer import Renderer


def view_rays(scene: Scene, c2w: Tensor, device: torch.device, intrinsics: Optional[Intrinsics] = None) -> Rays:
    """The rays [H, W] of the scene's camera (or ``intrinsics``) at pose ``c2w`` [3, 4], on ``device``.

    In an NDC scene the rays of another camera still map to NDC through the
    scene's own camera: that mapping defines the space the field lives in.
    """
    if intrinsics is None or not scene.ndc:
        return camera_rays(c2w.to(device), intrinsics or scene.intrinsics, scene.near, scene.far, scene.ndc)
    world = camera_rays(c2w.to(device), intrinsics, scene.near, scene.far)
    return to_ndc(world.origins, world.directions, scene.intrinsics)


def split_poses(scene: Scene, split: str) -> Tensor:
    """Poses of ``test``, ``val``, ``train`` or the video ``path``; a split without views is refused (SceneError)."""
    poses = scene.render_c2w if split == "path" else scene.c2w[scene.split(split)]
    if len(poses) == 0:
        raise SceneError(f"{scene.name}: the {split} split has no views (for an LLFF scene, llffhold = 0 holds none out); choose another --split")
    return poses


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


def disparity_image(output: RenderOutput) -> np.ndarray:
    """Disparity scaled to [0, 1] by its maximum over the view, as a grey image [H, W]."""
    disp = output.disparity[..., 0].float().cpu().numpy()
    top = disp.max()
    return disp / top if top > 0 else disp


@dataclass
class RenderedViews:
    """Frames of a split or path with their render times: rgb [H, W, 3], disparity scaled to [0, 1], and the expected depth
    Σ w_k t̄_k and accumulated opacity Σ w_k as float32 [H, W] each.

    ``seconds`` is the wall time of the whole set after warm-up, gathering
    included, so that n / seconds is the frame rate of all processes together.
    """

    rgb: List[np.ndarray]
    disparity: List[np.ndarray]
    depth: List[np.ndarray]
    acc: List[np.ndarray]
    ms_per_frame: List[float]
    seconds: float = 0.0

    @property
    def frames_per_sec(self) -> float:
        return len(self.rgb) / self.seconds if self.seconds > 0 else float("nan")


def render_poses(scene: Scene, poses: Tensor, renderer: Renderer, warmup: bool = True, dist: Distributed = SINGLE,
                 intrinsics: Optional[Sequence[Intrinsics]] = None) -> Optional[RenderedViews]:
    """Renders every pose (with its own camera from ``intrinsics`` when given, else the scene's); each process first renders
    its first pose once untimed, to warm up kernels and caches.

    Under several processes each renders every K-th pose and rank 0 gathers
    them all, in order; the other ranks get None.
    """
    device = renderer.device
    cameras = list(intrinsics) if intrinsics is not None else [None] * len(poses)
    mine = [(poses[i], cameras[i]) for i in dist.shard(len(poses))]
    if warmup and mine:
        renderer.warm_up(view_rays(scene, mine[0][0], device, mine[0][1]))
    dist.barrier()
    start = time.perf_counter()
    lists = ([], [], [], [], [])  # rgb, disparity, depth, acc, ms per frame
    for c2w, camera in mine:
        out, ms = timed(lambda: renderer.render(view_rays(scene, c2w, device, camera)), device)
        values = (out.rgb.float().cpu().numpy(), disparity_image(out), out.depth[..., 0].float().cpu().numpy(),
                  out.acc[..., 0].float().cpu().numpy(), ms)
        for kept, value in zip(lists, values):
            kept.append(value)
    # One process gathers its own lists back; several gather on rank 0.
    shards = dist.gather(lists)
    if shards is None:
        return None
    parts = [merge_shards([shard[k] for shard in shards], dist.world_size) for k in range(len(lists))]
    return RenderedViews(*parts, seconds=time.perf_counter() - start)


def depth_meaning(scene: Scene) -> dict:
    """What the depth maps of ``scene`` hold, for the sidecar JSON beside them."""
    unit = ("t in normalised device coordinates: 0 at the near plane, 1 at infinity" if scene.ndc else
            "t along the camera's viewing axis (-z), in the scene's units: z-depth, not distance along the ray")
    return {"depth": "expected depth sum_k w_k t_k over the sections (0 where nothing is hit)", "acc": "accumulated opacity sum_k w_k",
            "depth_given_a_hit": "depth / acc where acc > 0", "unit": unit, "ndc": scene.ndc, "near": scene.near, "far": scene.far,
            "dtype": "float32", "shape": [scene.H, scene.W]}
