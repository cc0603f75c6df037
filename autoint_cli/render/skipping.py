"""Frames drawn only where something is: a first pass of one ray per block, then the full size where it saw something.

Skipping empty space: a first pass renders one ray per ``block`` × ``block``
pixels; the full-size pass renders only the blocks where that pass, or a
neighbouring block's, saw something. Elsewhere the pixel is the background.
For the opacity and depth views "something" is an accumulated opacity of at
least 1/255: since a colour is Σ w_k c_k + (1 − acc)·background, it then moves
from the background by less than one 8-bit level where the first pass looked.
For the colour view it is a colour that differs from the background by at
least a level, so that a trained scene's faint haze of the background's colour
(common on white backgrounds) does not make every block count. What is smaller
than a block and falls between its rays can be missed: the viewer skips by
default, ``autoint-eval`` only when asked (``--skip_empty``), scoring the
skipped frames like any other, and ``autoint-render`` never.

Section windows (optional): the first pass's rays also say where along them
their weight lies. A pixel whose 3 × 3 blocks' rays all carry their weight,
but for half an 8-bit level at each end, within K consecutive sections is
drawn on those K sections alone: Φ at K + 1 posts instead of N + 1, with the
transmittance taken as 1 where the window starts. An empty ray among the nine
means no window: past a silhouette the pixel may see farther than any of them.
Like skipping, it can miss what lies between the first pass's rays (a thin
thing in front of a surface).
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..volume.rays import Rays
from ..volume.rendering import RenderOutput
from .chunks import join_outputs, output_parts, render_chunks
from .renderer import Renderer, RenderSettings

# Accumulated opacity below which the first pass calls a block empty: one level of an 8-bit image.
EMPTY_BELOW = 1.0 / 255.0
# The two sizes of the pieces a compiled or CUDA-graph renderer gets (see render_in_pieces): the bulk of a pass in large
# pieces, which keep an H200 busy, and the rest in small ones, so that little is padded. Two shapes, whatever the view.
PIECE_RAYS = (1 << 15, 1 << 13)
# Weight a first-pass ray's section window may leave out at each end (see section_window): half an 8-bit level.
WINDOW_LEFT_OUT = 0.5 / 255.0


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


def takes_pieces(settings: RenderSettings) -> bool:
    """Whether a renderer with these settings must get rays in pieces of two sizes (:func:`render_in_pieces`): a compiled or
    CUDA-graph one, so that it compiles and captures once per size."""
    return settings.compile_mode is not None or settings.cuda_graphs


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


def filled_pieces(renderer: Renderer, rays: Rays) -> List[Rays]:
    """One piece of each size that ``renderer`` takes (:func:`render_in_pieces`), largest first, filled with ``rays``
    [*rays] repeated in order."""
    flat = rays.reshape(-1)
    sizes = sorted({min(renderer.measure_chunk(flat), size) for size in PIECE_RAYS}, reverse=True)
    return [flat[torch.arange(size, device=flat.origins.device) % flat.shape[0]] for size in sizes]


def call_pieces(renderer: Renderer, pieces: List[Rays], window: Optional[int], capture: bool = True) -> None:
    """``renderer``, and its section window of ``window`` sections unless None, once on each of ``pieces``
    (:func:`filled_pieces`), each window starting at section 0: what is compiled compiles for every shape a skipping
    frame can meet, and with ``capture`` the CUDA graphs are captured too (without, they are left alone: ``probe``).
    A frame that met one of those shapes for the first time would compile inside it."""
    windowed = renderer.window(window) if window is not None else None
    for piece in pieces:
        first = torch.zeros(piece.shape[0], dtype=torch.long, device=piece.origins.device)
        if capture:
            renderer(piece)
            if windowed is not None:
                windowed(piece, first)
        else:
            renderer.probe(piece)
            if windowed is not None:
                windowed.probe(piece, first)


def render_rays(renderer: Renderer, rays: Rays, pieces: bool, first: Optional[torch.Tensor] = None, keep_weights: bool = False) -> RenderOutput:
    """``rays`` through ``renderer``: in pieces (:func:`render_in_pieces`) or as they are; on a section window from ``first``
    when the renderer is a :class:`~autoint_cli.render.renderer.SectionWindows`."""
    if pieces:
        return render_in_pieces(renderer, rays, first, keep_weights)
    if first is None:
        return renderer.render(rays, keep_weights=keep_weights)
    return renderer.render(rays, first)  # a section window (whose weights are never kept)


def first_pass(renderer: Renderer, rays: Rays, block: int, by: str, empty_below: float = EMPTY_BELOW,
               pieces: bool = False, keep_weights: bool = False, whole: bool = False) -> Tuple[RenderOutput, torch.Tensor]:
    """(the first pass's output [h, w], the pixels [H, W] (bool) worth rendering at full size) for the rays [H, W]: one ray
    per ``block`` × ``block`` pixels, judged by :func:`first_pass_seen` and spread by :func:`occupied_pixels`. ``pieces``:
    see :func:`render_in_pieces`; with ``whole`` too, the first pass is one piece of exactly its h·w rays where the
    renderer's chunk holds them (a third shape, one per frame size: no padding)."""
    coarse_rays = rays[block // 2::block, block // 2::block]
    n = coarse_rays.shape.numel()
    if pieces and whole and n <= renderer.measure_chunk(coarse_rays.reshape(-1)):
        coarse = render_chunks(renderer, coarse_rays, n, same_size=True, keep_weights=keep_weights)
    else:
        coarse = render_rays(renderer, coarse_rays, pieces, keep_weights=keep_weights)
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
                          by: str = "acc", pieces: bool = False, window: Optional[int] = None,
                          whole_first_pass: bool = False) -> RenderOutput:
    """The rays [H, W] rendered where a first pass of one ray per ``block`` × ``block`` pixels sees something (by opacity
    or by colour: see :func:`first_pass_seen`), and next to it (:func:`occupied_pixels`); elsewhere rgb is the renderer's
    background, acc and depth 0. The first pass's own pixels are not rendered twice. ``pieces``: for compiled or CUDA-graph
    renderers (see :func:`render_in_pieces`). ``window`` K: a pixel whose 3 × 3 blocks' rays need at most K consecutive
    sections (:func:`pixel_windows`) is rendered on those K only (K + 1 posts instead of N + 1). ``whole_first_pass``: see
    :func:`first_pass`'s ``whole``. Weights are not kept."""
    window = renderer.useful_window(window)
    coarse, mask = first_pass(renderer, rays, block, by, empty_below, pieces, keep_weights=window is not None,
                              whole=whole_first_pass)
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
            hit = render_rays(draw, rays.reshape(-1)[index], pieces, None if firsts is None else firsts[index])
            for image, name in zip(images, ("rgb", "acc", "depth")):
                image.view(-1, image.shape[-1]).index_copy_(0, index, getattr(hit, name).to(image.dtype))
    return RenderOutput(*images, weights=torch.empty(0))


@dataclass(frozen=True)
class Skipping:
    """How a frame skips empty space: the first pass's ``block`` (pixels a side), what counts as seen (``by``: "acc" or
    "rgb", :func:`first_pass_seen`), the section window K (``window``; None: every pixel on all N), and whether a
    renderer taking pieces draws the first pass as one piece of its own size (``whole_first_pass``: for frames of one
    size, as an evaluation's; a viewer whose frames change size would compile a new shape inside a frame)."""

    block: int = 4
    by: str = "acc"
    window: Optional[int] = 4
    whole_first_pass: bool = False


class SkippingRenderer:
    """A :class:`~autoint_cli.render.renderer.Renderer` whose ``render(rays [H, W])`` skips empty space
    (:func:`render_skipping_empty`), in pieces when the renderer's settings need them (:func:`takes_pieces`)."""

    def __init__(self, renderer: Renderer, skipping: Skipping):
        self.renderer, self.skipping, self.pieces = renderer, skipping, takes_pieces(renderer.settings)

    @property
    def device(self) -> torch.device:
        return self.renderer.device

    def render(self, rays: Rays) -> RenderOutput:
        s = self.skipping
        return render_skipping_empty(self.renderer, rays, s.block, by=s.by, pieces=self.pieces, window=s.window,
                                     whole_first_pass=s.whole_first_pass)

    def warm_up(self, rays: Rays) -> None:
        """Draws ``rays`` [H, W] once, then, when the renderer takes pieces, runs it and its section window on a piece of
        each size (:func:`call_pieces`): one view needs only some of those, and a later frame needing another would
        compile it while being timed."""
        self.render(rays)
        if self.pieces:
            call_pieces(self.renderer, filled_pieces(self.renderer, rays), self.renderer.useful_window(self.skipping.window))
