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

Section windows (optional): the first pass's rays also say where along them
their weight lies. A pixel whose 3 × 3 blocks' rays all carry their weight,
but for half an 8-bit level at each end, within K consecutive sections is
drawn on those K sections alone: Φ at K + 1 posts instead of N + 1, with the
transmittance taken as 1 where the window starts. An empty ray among the nine
means no window: past a silhouette the pixel may see farther than any of them.
Like skipping, it can miss what lies between the first pass's rays (a thin
thing in front of a surface).
"""
import logging
import threading
import time
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from ..render.chunks import join_outputs, output_parts, render_chunks
from ..render.media import to8b, turbo_depth
from ..render.renderer import Renderer, RenderSettings
from ..render.views import timed, view_rays
from ..runs.loader import LoadedRun
from ..scene.camera_path import focal_from_fov, vertical_fov
from ..volume.rays import Intrinsics, Rays
from ..volume.rendering import RenderOutput

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
# Weight a first-pass ray's section window may leave out at each end (see section_window): half an 8-bit level.
WINDOW_LEFT_OUT = 0.5 / 255.0


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


def _spread(blocks: torch.Tensor, shape: Tuple[int, int], block: int) -> torch.Tensor:
    """Values [h, w] of the first pass's blocks (rays at rows and columns block/2, block/2 + block, …) -> [H, W]: each
    pixel takes its block's."""
    rows = (torch.arange(shape[0], device=blocks.device) // block).clamp(max=blocks.shape[0] - 1)
    cols = (torch.arange(shape[1], device=blocks.device) // block).clamp(max=blocks.shape[1] - 1)
    return blocks[rows[:, None], cols[None, :]]


def occupied_pixels(seen: torch.Tensor, shape: Tuple[int, int], block: int) -> torch.Tensor:
    """Pixels [H, W] (bool) worth rendering, from what one ray per block (at rows and columns block/2, block/2 + block, ...)
    ``seen`` [h, w] (bool): those in a block that saw something, or next to one (3 × 3 blocks)."""
    near_seen = F.max_pool2d(seen.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    return _spread(near_seen, shape, block)


def first_pass_seen(coarse: RenderOutput, background: torch.Tensor, by: str, empty_below: float) -> torch.Tensor:
    """[h, w] bool: where the first pass saw something. ``acc``: an opacity of at least ``empty_below``. ``rgb``: a colour
    at least ``empty_below`` from the background in some channel (faint haze of the background's colour is not drawn)."""
    if by == "acc":
        return coarse.acc[..., 0] >= empty_below
    return (coarse.rgb.float() - background.float()).abs().amax(-1) >= empty_below


def section_window(weights: torch.Tensor, left_out: float = WINDOW_LEFT_OUT) -> Tuple[torch.Tensor, torch.Tensor]:
    """(first, last) [*rays] (long): the run of sections a ray needs, from its weights [*rays, N].

    first = #{k : Σ_{j≤k} w_j ≤ left_out} and last = #{k : Σ_{j>k} w_j > left_out}: at most ``left_out`` of the weight
    lies before ``first`` and at most that after ``last``. A ray with almost no weight can get first > last (it needs none).
    """
    before = weights.cumsum(-1)
    after = before[..., -1:] - before
    return (before <= left_out).sum(-1), (after > left_out).sum(-1)


def pixel_windows(weights: torch.Tensor, shape: Tuple[int, int], block: int, kept: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(first section [H, W] (long), fits [H, W] (bool)) of each pixel's section window, from the first pass's weights
    [h, w, N]: the sections its 3 × 3 blocks' rays need (:func:`section_window`), first to last; ``fits`` where those are at
    most ``kept``, the window then starting at the first (moved back so that it ends by section N − 1). A ray that needs
    no section counts as needing all N: next to a silhouette, a pixel between an empty ray and an occluded one can see
    something farther that neither ray sees."""
    first, last = section_window(weights.float())
    empty = first > last
    first, last = first.masked_fill(empty, 0), last.masked_fill(empty, weights.shape[-1] - 1)
    first = -F.max_pool2d(-first.float()[None], 3, stride=1, padding=1)[0]
    last = F.max_pool2d(last.float()[None], 3, stride=1, padding=1)[0]
    start = first.clamp(max=weights.shape[-1] - kept).long()
    return _spread(start, shape, block), _spread(last - first + 1 <= kept, shape, block)


def render_in_pieces(renderer: Renderer, rays: Rays, first: Optional[torch.Tensor] = None, keep_weights: bool = False) -> RenderOutput:
    """The rays [*rays] in pieces of exactly ``large`` rays and then, for what is left, of exactly ``small`` (the last one
    padded), where (large, small) are :data:`PIECE_RAYS` or the renderer's chunk if smaller: a compiled or CUDA-graph renderer
    meets two shapes, whatever the number of rays. ``renderer`` may be a :class:`SectionWindows`, given each ray's
    ``first`` section [*rays]. Weights are kept if asked for."""
    flat = rays.reshape(-1)
    values = None if first is None else first.reshape(-1)
    chunk = renderer.measure_chunk(flat)
    large, small = (min(chunk, size) for size in PIECE_RAYS)
    bulk = flat.shape[0] - flat.shape[0] % large
    parts = [output_parts(render_chunks(renderer, flat[start:stop], size, same_size=True, keep_weights=keep_weights,
                                  per_ray=None if values is None else values[start:stop]), keep_weights)
             for start, stop, size in ((0, bulk, large), (bulk, flat.shape[0], small)) if stop > start]
    return join_outputs(parts, rays.shape)


def _render(renderer: Renderer, rays: Rays, pieces: bool, first: Optional[torch.Tensor] = None, keep_weights: bool = False) -> RenderOutput:
    if pieces:
        return render_in_pieces(renderer, rays, first, keep_weights)
    if first is None:
        return renderer.render(rays, keep_weights=keep_weights)
    return renderer.render(rays, first)  # a section window (whose weights are never kept)


def first_pass(renderer: Renderer, rays: Rays, block: int, by: str, empty_below: float = EMPTY_BELOW,
               pieces: bool = False, keep_weights: bool = False) -> Tuple[RenderOutput, torch.Tensor]:
    """(the first pass's output [h, w], the pixels [H, W] (bool) worth rendering at full size) for the rays [H, W]: one ray
    per ``block`` × ``block`` pixels, judged by :func:`first_pass_seen` and spread by :func:`occupied_pixels`. ``pieces``:
    see :func:`render_in_pieces`."""
    coarse = _render(renderer, rays[block // 2::block, block // 2::block], pieces, keep_weights=keep_weights)
    return coarse, occupied_pixels(first_pass_seen(coarse, renderer.background, by, empty_below), tuple(rays.shape), block)


def _pixel_groups(todo: torch.Tensor, fits: Optional[torch.Tensor]) -> List[torch.Tensor]:
    """Flat indices of the pixels to render [H, W] (bool): [all] without windows; [those whose window fits, the others]
    with. The one wait for the GPU in the full pass: how many there are (boolean indexing would wait once per use)."""
    flat = todo.reshape(-1)
    if fits is None:
        return [flat.nonzero()[:, 0]]
    group = torch.where(flat, torch.where(fits.reshape(-1), 0, 1), 2)
    counts = torch.bincount(group, minlength=3).tolist()
    order = torch.argsort(group, stable=True)
    return [order[:counts[0]], order[counts[0]:counts[0] + counts[1]]]


def render_skipping_empty(renderer: Renderer, rays: Rays, block: int = 4, empty_below: float = EMPTY_BELOW,
                          by: str = "acc", pieces: bool = False, window: Optional[int] = None) -> RenderOutput:
    """The rays [H, W] rendered where a first pass of one ray per ``block`` × ``block`` pixels sees something (by opacity
    or by colour: see :func:`first_pass_seen`), and next to it (:func:`occupied_pixels`); elsewhere rgb is the renderer's
    background, acc and depth 0. The first pass's own pixels are not rendered twice. ``pieces``: for compiled or CUDA-graph
    renderers (see :func:`render_in_pieces`). ``window`` K: a pixel whose 3 × 3 blocks' rays need at most K consecutive
    sections (:func:`pixel_windows`) is rendered on those K only (K + 1 posts instead of N + 1). Weights are not kept."""
    window = renderer.useful_window(window)
    coarse, mask = first_pass(renderer, rays, block, by, empty_below, pieces, keep_weights=window is not None)
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
    first, fits = pixel_windows(coarse.weights, tuple(rays.shape), block, window) if window is not None else (None, None)
    groups = _pixel_groups(todo, fits)
    draws = [(renderer.window(window), first.reshape(-1)), (renderer, None)] if window is not None else [(renderer, None)]
    for index, (draw, firsts) in zip(groups, draws):
        if index.numel():
            hit = _render(draw, rays.reshape(-1)[index], pieces, None if firsts is None else firsts[index])
            for image, name in zip(images, ("rgb", "acc", "depth")):
                image.view(-1, image.shape[-1]).index_copy_(0, index, getattr(hit, name).to(image.dtype))
    return RenderOutput(*images, weights=torch.empty(0))


class TurnLock:
    """A lock taken in the order it was asked for. threading.Lock is not fair: a draw loop that takes it again at once
    can keep a warm-up thread waiting for it frame after frame."""

    def __init__(self):
        self._changed = threading.Condition()
        self._next_ticket = self._serving = 0

    def __enter__(self) -> "TurnLock":
        with self._changed:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            self._changed.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()


class FrameRenderer:
    """Frames of one trained run for the viewer: a renderer per (N, renderer kind), kept once built."""

    def __init__(self, run: LoadedRun, settings: RenderSettings, device: torch.device, skip_block: int = 4,
                 warm_in_background: bool = False, window: Optional[int] = None):
        """``warm_in_background``: a compiled or CUDA-graph renderer for an (N, kind) not drawn before is compiled and
        captured on a thread of its own while an eager renderer draws the frames (see :meth:`warming`); otherwise the
        first frame waits for it. ``window`` K: frames that skip empty space render a pixel on K sections where that is
        enough (see :func:`render_skipping_empty`)."""
        self.run, self.settings, self.device, self.skip_block, self.window = run, settings, device, skip_block, window
        self.background = torch.tensor(run.scene.background, device=device)
        # Compiled and CUDA-graph renderers get rays in pieces of two sizes only: one compilation and capture each.
        self.pieces = settings.compile_mode is not None or settings.cuda_graphs
        self.warm_in_background = warm_in_background and self.pieces
        self._renderers: Dict[Tuple[int, str], Renderer] = {}
        self._stand_ins: Dict[Tuple[int, str], Renderer] = {}
        self._warming: Dict[Tuple[int, str], threading.Thread] = {}
        # One frame at a time, whichever browser asks: a CUDA-graph renderer replays from one set of input buffers. Taken
        # in turn, so that a warm-up waiting to capture between two frames gets its turn while frames keep coming.
        self._lock = TurnLock()

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
        # The settings' refinement is the integral renderer's: the quadrature reference has no sections to cut.
        refine = {} if key[1] == "integral" else {"refine": 1}
        return Renderer(self.run.model, self.background, replace(self.settings, n_sections=key[0], renderer=key[1], **refine, **changes))

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
            with self._lock:  # measured between frames: their memory would count in its peak
                pieces = self._warm_up_pieces(renderer)
            self._call_pieces(renderer, pieces, capture=False)  # compiles; captures nothing
            with self._lock:
                self._call_pieces(renderer, pieces, capture=True)
                self._renderers[key] = renderer
        except Exception:  # the viewer keeps drawing with the eager stand-in
            logger.exception("N=%d (%s): the compiled renderer failed to warm up; frames stay eager", *key)
            return
        logger.info("N=%d (%s): compiled renderer ready in %.0f s", key[0], key[1], time.perf_counter() - start)

    def _first_view(self, height: int) -> Tuple[np.ndarray, Intrinsics]:
        """(c2w [3, 4], camera ``height`` lines high) of the scene's first path view at the scene's field of view."""
        scene = self.run.scene
        return scene.render_c2w[0].double().numpy(), viewer_intrinsics(np.radians(vertical_fov(scene.intrinsics)), scene.W / scene.H, height)

    def _warm_up_pieces(self, renderer: Renderer) -> List[Rays]:
        """Rays of the first path view at the scene's size, repeated to fill a piece of each size ``renderer`` takes."""
        c2w, camera = self._first_view(self.run.scene.H)
        rays = view_rays(self.run.scene, torch.as_tensor(c2w, dtype=torch.float32), self.device, camera).reshape(-1)
        sizes = sorted({min(renderer.measure_chunk(rays), size) for size in PIECE_RAYS}, reverse=True)
        return [rays[torch.arange(size, device=self.device) % rays.shape[0]] for size in sizes]

    def _window_of(self, renderer: Renderer) -> Optional[int]:
        """The section window frames of ``renderer`` use (None: all N sections)."""
        return renderer.useful_window(self.window)

    def _call_pieces(self, renderer: Renderer, pieces: List[Rays], capture: bool) -> None:
        """``renderer``, and its section window if frames use one, once on each piece: compiling what is compiled, and with
        ``capture`` through the CUDA graphs too (between frames: nothing else may use the GPU during a capture)."""
        window = self._window_of(renderer)
        windowed = renderer.window(window) if window is not None else None
        for piece in pieces:
            first = torch.zeros(piece.shape[0], dtype=torch.long, device=self.device)
            if capture:
                renderer(piece)
                if windowed is not None:
                    windowed(piece, first)
            else:
                renderer.probe(piece)
                if windowed is not None:
                    windowed.probe(piece, first)

    def warm_up(self, height: int) -> float:
        """Renders the scene's first path view, ``height`` lines high, once with and once without skipping, so that a
        compiled or CUDA-graph renderer at the settings' N has compiled and captured its pieces (both sizes, if the view has
        a large piece's rays) before anyone waits for a frame; returns the seconds taken."""
        c2w, camera = self._first_view(height)
        start = time.perf_counter()
        renderer = self.renderer(self.n_sections, "integral")  # built here, so these frames wait for it (no stand-in)
        for skip_empty in (True, False):
            self.render(c2w, camera, skip_empty=skip_empty)
        with self._lock:  # both piece sizes, section windows included, whatever this view needed
            self._call_pieces(renderer, self._warm_up_pieces(renderer), capture=True)
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
            out = render_skipping_empty(renderer, rays, self.skip_block, by="rgb" if output == "rgb" else "acc", pieces=pieces,
                                        window=self._window_of(renderer))
        else:
            out = _render(renderer, rays, pieces)
        if output == "depth":
            return turbo_depth([out.depth[..., 0].float().cpu().numpy()], [out.acc[..., 0].float().cpu().numpy()])[0]
        if output == "acc":
            return np.repeat(to8b(out.acc), 3, axis=-1)
        return to8b(out.rgb)
