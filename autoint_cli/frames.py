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
import logging
import threading
import time
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from .data.camera_path import focal_from_fov, vertical_fov
from .chunks import join_outputs, render_chunks
from .media import to8b, turbo_depth
from .rays import Intrinsics, Rays
from .render import RenderOutput
from .renderer import Renderer, RenderSettings
from .run_loader import LoadedRun
from .views import timed, view_rays

logger = logging.getLogger(__name__)

# What the viewer can show, by the names its dropdown uses.
VIEW_OUTPUTS = ("rgb", "depth", "acc")
# OpenCV camera axes to OpenGL ones (and back): x kept, y and z flipped.
_FLIP = np.diag([1.0, -1.0, -1.0])
# Accumulated opacity below which the first pass calls a block empty: one level of an 8-bit image.
EMPTY_BELOW = 1.0 / 255.0
# The two sizes of the pieces a compiled or CUDA-graph renderer gets (see render_in_pieces): the bulk of a pass in large
# pieces, which keep an H200 busy, and the rest in small ones, so that little is padded. Two shapes, whatever the view.
PIECE_RAYS = (1 << 15, 1 << 13)


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


def render_in_pieces(renderer: Renderer, rays: Rays) -> RenderOutput:
    """The rays [*rays] in pieces of exactly ``large`` rays and then, for what is left, of exactly ``small`` (the last one
    padded), where (large, small) are :data:`PIECE_RAYS` or the renderer's chunk if smaller: a compiled or CUDA-graph renderer
    meets two shapes, whatever the number of rays. Weights are not kept."""
    flat = rays.reshape(-1)
    chunk = renderer.measure_chunk(flat)
    large, small = (min(chunk, size) for size in PIECE_RAYS)
    bulk = flat.shape[0] - flat.shape[0] % large
    parts = [render_chunks(renderer, flat[start:stop], size, same_size=True)
             for start, stop, size in ((0, bulk, large), (bulk, flat.shape[0], small)) if stop > start]
    return join_outputs(parts, rays.shape)


def _render(renderer: Renderer, rays: Rays, pieces: bool) -> RenderOutput:
    return render_in_pieces(renderer, rays) if pieces else renderer.render(rays)


def first_pass(renderer: Renderer, rays: Rays, block: int, by: str, empty_below: float = EMPTY_BELOW,
               pieces: bool = False) -> Tuple[RenderOutput, torch.Tensor]:
    """(the first pass's output [h, w], the pixels [H, W] (bool) worth rendering at full size) for the rays [H, W]: one ray
    per ``block`` × ``block`` pixels, judged by :func:`first_pass_seen` and spread by :func:`occupied_pixels`. ``pieces``:
    see :func:`render_in_pieces`."""
    coarse = _render(renderer, rays[block // 2::block, block // 2::block], pieces)
    return coarse, occupied_pixels(first_pass_seen(coarse, renderer.background, by, empty_below), tuple(rays.shape), block)


def render_skipping_empty(renderer: Renderer, rays: Rays, block: int = 4, empty_below: float = EMPTY_BELOW,
                          by: str = "acc", pieces: bool = False) -> RenderOutput:
    """The rays [H, W] rendered where a first pass of one ray per ``block`` × ``block`` pixels sees something (by opacity
    or by colour: see :func:`first_pass_seen`), and next to it (:func:`occupied_pixels`); elsewhere rgb is the renderer's
    background, acc and depth 0. The first pass's own pixels are not rendered twice. ``pieces``: for compiled or CUDA-graph
    renderers (see :func:`render_in_pieces`). Weights are not kept."""
    coarse, mask = first_pass(renderer, rays, block, by, empty_below, pieces)
    own = (slice(block // 2, None, block),) * 2  # the pixels the first pass rendered
    kept = mask[own][..., None]
    images = []
    for name, empty in (("rgb", renderer.background), ("acc", 0.0), ("depth", 0.0)):
        part = getattr(coarse, name)
        image = torch.as_tensor(empty, dtype=part.dtype, device=part.device).expand(*rays.shape, part.shape[-1]).clone()
        image[own] = torch.where(kept, part, image[own])
        images.append(image)
    todo = mask.clone()
    todo[own] = False
    # The one wait for the GPU in this pass: how many pixels to render (boolean indexing would wait once per use).
    index = todo.reshape(-1).nonzero()[:, 0]
    if index.numel():
        hit = _render(renderer, rays.reshape(-1)[index], pieces)
        for image, name in zip(images, ("rgb", "acc", "depth")):
            image.view(-1, image.shape[-1]).index_copy_(0, index, getattr(hit, name).to(image.dtype))
    return RenderOutput(*images, weights=torch.empty(0))


class FrameRenderer:
    """Frames of one trained run for the viewer: a renderer per (N, renderer kind), kept once built."""

    def __init__(self, run: LoadedRun, settings: RenderSettings, device: torch.device, skip_block: int = 4,
                 warm_in_background: bool = False):
        """``warm_in_background``: a compiled or CUDA-graph renderer for an (N, kind) not drawn before is compiled and
        captured on a thread of its own while an eager renderer draws the frames (see :meth:`warming`); otherwise the
        first frame waits for it."""
        self.run, self.settings, self.device, self.skip_block = run, settings, device, skip_block
        self.background = torch.tensor(run.scene.background, device=device)
        # Compiled and CUDA-graph renderers get rays in pieces of two sizes only: one compilation and capture each.
        self.pieces = settings.compile_mode is not None or settings.cuda_graphs
        self.warm_in_background = warm_in_background and self.pieces
        self._renderers: Dict[Tuple[int, str], Renderer] = {}
        self._stand_ins: Dict[Tuple[int, str], Renderer] = {}
        self._warming: Dict[Tuple[int, str], threading.Thread] = {}
        # One frame at a time, whichever browser asks: a CUDA-graph renderer replays from one set of input buffers.
        self._lock = threading.Lock()

    @property
    def n_sections(self) -> int:
        """The N a frame has unless told otherwise: the settings' (autoint-view --n_sections), else the trained one."""
        return self.settings.n_sections or self.run.config.model.n_sections

    def renderer(self, n_sections: int, kind: str) -> Renderer:
        """The renderer of the settings for (N, kind), built now if need be (compiled, if so, by its first frame)."""
        key = (n_sections, kind)
        if key not in self._renderers:
            self._renderers[key] = self._build(key)
        return self._renderers[key]

    def _build(self, key: Tuple[int, str], **changes) -> Renderer:
        return Renderer(self.run.model, self.background, replace(self.settings, n_sections=key[0], renderer=key[1], **changes))

    def warming(self, n_sections: int, kind: str = "integral") -> bool:
        """Whether frames at (N, kind) are drawn by an eager stand-in while the settings' renderer is compiled and captured."""
        thread = self._warming.get((n_sections, kind))
        return thread is not None and thread.is_alive()

    def _drawing(self, key: Tuple[int, str]) -> Tuple[Renderer, bool]:
        """(the renderer that draws a frame at ``key`` now, whether it takes rays in pieces): with ``warm_in_background``,
        an eager stand-in until the settings' renderer is ready (its warm-up is started on first use)."""
        if not self.warm_in_background or key in self._renderers:
            return self.renderer(*key), self.pieces
        if key not in self._warming:
            self._warming[key] = threading.Thread(target=self._warm, args=(key,), daemon=True, name=f"warm-up N={key[0]} {key[1]}")
            self._warming[key].start()
        if key not in self._stand_ins:
            self._stand_ins[key] = self._build(key, compile_mode=None, cuda_graphs=False)
        return self._stand_ins[key], False

    def _warm(self, key: Tuple[int, str]) -> None:
        """Compiles the settings' renderer for ``key`` at both piece sizes while frames go on, then captures its CUDA graphs
        between two frames (nothing else may use the GPU during a capture) and hands it over. A failure leaves the stand-in."""
        start = time.perf_counter()
        try:
            renderer = self._build(key)
            rays = self._warm_up_rays()
            with self._lock:  # measured between frames: their memory would count in its peak
                chunk = renderer.measure_chunk(rays)
            sizes = sorted({min(chunk, size) for size in PIECE_RAYS}, reverse=True)
            pieces = [rays[torch.arange(size, device=rays.origins.device) % rays.shape[0]] for size in sizes]
            for piece in pieces:
                renderer.probe(piece)  # compiles; captures nothing
            with self._lock:
                for piece in pieces:
                    renderer(piece)  # captures, if CUDA graphs are on
                self._renderers[key] = renderer
        except Exception:  # the viewer keeps drawing with the eager stand-in
            logger.exception("N=%d (%s): the compiled renderer failed to warm up; frames stay eager", *key)
            return
        logger.info("N=%d (%s): compiled renderer ready in %.0f s", key[0], key[1], time.perf_counter() - start)

    def _first_view(self, height: int) -> Tuple[np.ndarray, Intrinsics]:
        """(c2w [3, 4], camera ``height`` lines high) of the scene's first path view at the scene's field of view."""
        scene = self.run.scene
        return scene.render_c2w[0].double().numpy(), viewer_intrinsics(np.radians(vertical_fov(scene.intrinsics)), scene.W / scene.H, height)

    def _warm_up_rays(self) -> Rays:
        """The flat rays of the first path view at the scene's size: what a background warm-up feeds a renderer."""
        c2w, camera = self._first_view(self.run.scene.H)
        return view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera).reshape(-1)

    def warm_up(self, height: int) -> float:
        """Renders the scene's first path view, ``height`` lines high, once with and once without skipping, so that a
        compiled or CUDA-graph renderer at the settings' N has compiled and captured its pieces (both sizes, if the view has
        a large piece's rays) before anyone waits for a frame; returns the seconds taken."""
        c2w, camera = self._first_view(height)
        start = time.perf_counter()
        self.renderer(self.n_sections, "integral")  # built here, so these frames wait for it (no stand-in)
        for skip_empty in (True, False):
            self.render(c2w, camera, skip_empty=skip_empty)
        return time.perf_counter() - start

    def render(self, c2w: np.ndarray, camera: Intrinsics, output: str = "rgb", n_sections: Optional[int] = None,
               kind: str = "integral", skip_empty: bool = False) -> Tuple[np.ndarray, float]:
        """(uint8 image [H, W, 3] of ``output``, milliseconds from the pose to the image on the host) at the OpenGL pose
        ``c2w`` [3, 4]; with ``skip_empty``, empty space is skipped (see the module's docstring)."""
        with self._lock:
            return timed(lambda: self._image(c2w, camera, output, n_sections, kind, skip_empty), self.device)

    def _image(self, c2w: np.ndarray, camera: Intrinsics, output: str, n_sections: Optional[int], kind: str,
               skip_empty: bool) -> np.ndarray:
        renderer, pieces = self._drawing((n_sections or self.n_sections, kind))
        rays = view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera)
        if skip_empty:  # the colour view skips haze of the background's colour; the opacity and depth views show it
            out = render_skipping_empty(renderer, rays, self.skip_block, by="rgb" if output == "rgb" else "acc", pieces=pieces)
        else:
            out = _render(renderer, rays, pieces)
        if output == "depth":
            return turbo_depth([out.depth[..., 0].float().cpu().numpy()], [out.acc[..., 0].float().cpu().numpy()])[0]
        if output == "acc":
            return np.repeat(to8b(out.acc), 3, axis=-1)
        return to8b(out.rgb)
