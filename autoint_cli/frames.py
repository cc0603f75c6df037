"""The viewer's frames: viser's camera convention, and images of a trained run drawn by its renderer, with empty space skipped.

viser's cameras follow OpenCV's axes (x right, y down, looking along +z) with
a quaternion w, x, y, z; this package's ``c2w`` uses OpenGL's (y up, looking
along −z): the two differ by a half turn about x.

Skipping empty space: a first pass renders one ray per ``block`` × ``block``
pixels; the full-size pass renders only the blocks where that pass, or a
neighbouring block's, saw something. Elsewhere the pixel is the background.
For the opacity and depth views "something" is an accumulated opacity of at
least 1/255: since a colour is Σ w_k c_k + (1 − acc)·background, it then moves
from the background by less than one 8-bit level where the first pass looked.
For the colour view it is a colour that differs from the background by at
least a level, so that a trained scene's faint haze of the background's colour
(common on white backgrounds) does not make every block count. What is smaller
than a block and falls between its rays can be missed, so this is for the
viewer only, never for ``autoint-render`` or ``autoint-eval``.
"""
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from .data.camera_path import focal_from_fov
from .chunks import render_chunks
from .media import to8b, turbo_depth
from .rays import Intrinsics, Rays
from .render import RenderOutput
from .renderer import Renderer, RenderSettings
from .run_loader import LoadedRun
from .views import timed, view_rays

# What the viewer can show, by the names its dropdown uses.
VIEW_OUTPUTS = ("rgb", "depth", "acc")
# OpenCV camera axes to OpenGL ones (and back): x kept, y and z flipped.
_FLIP = np.diag([1.0, -1.0, -1.0])
# Accumulated opacity below which the first pass calls a block empty: one level of an 8-bit image.
EMPTY_BELOW = 1.0 / 255.0
# The unit a compiled renderer's skipping pass is padded to: small enough to waste little, large enough to keep the GPU busy.
PAD_RAYS = 1 << 16


def c2w_from_viewer(wxyz, position) -> np.ndarray:
    """A viser camera (quaternion w, x, y, z of camera-to-world in OpenCV axes; position) as an OpenGL c2w [3, 4]."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64)
    rotation = Rotation.from_quat([x, y, z, w]).as_matrix() @ _FLIP
    return np.concatenate((rotation, np.asarray(position, dtype=np.float64)[:, None]), 1)


def viewer_from_c2w(c2w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`c2w_from_viewer`: (wxyz, position) of an OpenGL c2w [3, 4]."""
    x, y, z, w = Rotation.from_matrix(np.asarray(c2w, dtype=np.float64)[:, :3] @ _FLIP).as_quat()
    return np.array([w, x, y, z]), np.asarray(c2w, dtype=np.float64)[:, 3].copy()


def viewer_intrinsics(fov: float, aspect: float, height: int) -> Intrinsics:
    """The pinhole camera of a vertical field of view ``fov`` (radians), width/height ``aspect``, ``height`` lines."""
    width = max(1, int(round(height * aspect)))
    return Intrinsics.from_focal(height, width, focal_from_fov(float(np.degrees(fov)), height))


def occupied_pixels(seen: torch.Tensor, shape: Tuple[int, int], block: int) -> torch.Tensor:
    """Pixels [H, W] (bool) worth rendering, from what one ray per block (at rows and columns block/2, block/2 + block, ...)
    ``seen`` [h, w] (bool): those in a block that saw something, or next to one (3 × 3 blocks)."""
    near_seen = F.max_pool2d(seen.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    rows = (torch.arange(shape[0], device=seen.device) // block).clamp(max=seen.shape[0] - 1)
    cols = (torch.arange(shape[1], device=seen.device) // block).clamp(max=seen.shape[1] - 1)
    return near_seen[rows[:, None], cols[None, :]]


def first_pass_seen(coarse: RenderOutput, background: torch.Tensor, by: str, empty_below: float) -> torch.Tensor:
    """[h, w] bool: where the first pass saw something. ``acc``: an opacity of at least ``empty_below``. ``rgb``: a colour
    at least ``empty_below`` from the background in some channel (faint haze of the background's colour is not drawn)."""
    if by == "acc":
        return coarse.acc[..., 0] >= empty_below
    return (coarse.rgb.float() - background.float()).abs().amax(-1) >= empty_below


def _render_padded(renderer: Renderer, rays: Rays, pad_to_chunk: bool) -> RenderOutput:
    """Flat rays [n]; with ``pad_to_chunk``, rendered in pieces of exactly min(chunk, :data:`PAD_RAYS`) rays, so that a
    compiled renderer sees one shape whatever n is."""
    if not pad_to_chunk or renderer.chunk is None:
        return renderer.render(rays)
    return render_chunks(renderer, rays, min(renderer.chunk, PAD_RAYS), same_size=True)


def first_pass(renderer: Renderer, rays: Rays, block: int, by: str, empty_below: float = EMPTY_BELOW) -> Tuple[RenderOutput, torch.Tensor]:
    """(the first pass's output [h, w], the pixels [H, W] (bool) worth rendering at full size) for the rays [H, W]: one ray
    per ``block`` × ``block`` pixels, judged by :func:`first_pass_seen` and spread by :func:`occupied_pixels`."""
    coarse = renderer.render(rays[block // 2::block, block // 2::block])
    return coarse, occupied_pixels(first_pass_seen(coarse, renderer.background, by, empty_below), tuple(rays.shape), block)


def render_skipping_empty(renderer: Renderer, rays: Rays, block: int = 4, empty_below: float = EMPTY_BELOW,
                          by: str = "acc", pad_to_chunk: bool = False) -> RenderOutput:
    """The rays [H, W] rendered where a first pass of one ray per ``block`` × ``block`` pixels sees something (by opacity
    or by colour: see :func:`first_pass_seen`), and next to it (:func:`occupied_pixels`); elsewhere rgb is the renderer's
    background, acc and depth 0. ``pad_to_chunk``: for compiled renderers (see :func:`_render_padded`). Weights are not kept."""
    coarse, mask = first_pass(renderer, rays, block, by, empty_below)
    rgb = renderer.background.to(coarse.rgb.dtype).expand(*rays.shape, 3).clone()
    acc = torch.zeros(*rays.shape, 1, dtype=coarse.acc.dtype, device=rgb.device)
    depth = torch.zeros(*rays.shape, 1, dtype=coarse.depth.dtype, device=rgb.device)
    if bool(mask.any()):
        hit = _render_padded(renderer, rays[mask], pad_to_chunk)
        rgb[mask], acc[mask], depth[mask] = hit.rgb.to(rgb.dtype), hit.acc.to(acc.dtype), hit.depth.to(depth.dtype)
    return RenderOutput(rgb, acc, depth, weights=torch.empty(0))


class FrameRenderer:
    """Frames of one trained run for the viewer: a renderer per (N, renderer kind), kept once built."""

    def __init__(self, run: LoadedRun, settings: RenderSettings, device: torch.device, skip_block: int = 4):
        self.run, self.settings, self.device, self.skip_block = run, settings, device, skip_block
        self.background = torch.tensor(run.scene.background, device=device)
        self._renderers: Dict[Tuple[int, str], Renderer] = {}

    def renderer(self, n_sections: int, kind: str) -> Renderer:
        key = (n_sections, kind)
        if key not in self._renderers:
            self._renderers[key] = Renderer(self.run.model, self.background, replace(self.settings, n_sections=n_sections, renderer=kind))
        return self._renderers[key]

    def render(self, c2w: np.ndarray, camera: Intrinsics, output: str = "rgb", n_sections: Optional[int] = None,
               kind: str = "integral", skip_empty: bool = False) -> Tuple[np.ndarray, float]:
        """(uint8 image [H, W, 3] of ``output``, milliseconds from the pose to the image on the host) at the OpenGL pose
        ``c2w`` [3, 4]; with ``skip_empty``, empty space is skipped (see the module's docstring)."""
        return timed(lambda: self._image(c2w, camera, output, n_sections, kind, skip_empty), self.device)

    def _image(self, c2w: np.ndarray, camera: Intrinsics, output: str, n_sections: Optional[int], kind: str,
               skip_empty: bool) -> np.ndarray:
        renderer = self.renderer(n_sections or self.run.config.model.n_sections, kind)
        rays = view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera)
        if skip_empty:  # the colour view skips haze of the background's colour; the opacity and depth views show it
            out = render_skipping_empty(renderer, rays, self.skip_block, by="rgb" if output == "rgb" else "acc",
                                        pad_to_chunk=self.settings.compile_mode is not None)
        else:
            out = renderer.render(rays)
        if output == "depth":
            return turbo_depth([out.depth[..., 0].float().cpu().numpy()], [out.acc[..., 0].float().cpu().numpy()])[0]
        if output == "acc":
            return np.repeat(to8b(out.acc), 3, axis=-1)
        return to8b(out.rgb)
