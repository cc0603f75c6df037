"""Skipping empty space and section windows (autoint_cli.render.skipping): exact where the scene is larger than a block,
against an analytic sphere; what it cannot see; pieces of two sizes for compiled renderers; windows that leave nothing out."""
import pytest
import torch
import torch.nn.functional as F

import autoint_cli.render.skipping as skipping_module
from autoint_cli.render.renderer import RenderSettings, useful_window
from autoint_cli.render.skipping import (
    EMPTY_BELOW,
    Skipping,
    SkippingRenderer,
    occupied_pixels,
    pixel_windows,
    render_in_pieces,
    render_skipping_empty,
    section_window,
)
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.poses import spherical_pose
from autoint_cli.volume.rays import Intrinsics, camera_rays
from autoint_cli.volume.rendering import RenderOutput

CPU = torch.device("cpu")


def test_occupied_pixels_are_the_seen_blocks_and_their_neighbours():
    seen = torch.zeros(4, 5, dtype=torch.bool)
    seen[1, 3] = True
    mask = occupied_pixels(seen, (15, 19), block=4)  # 15 x 19 pixels: the last row and column of blocks are partial
    expected = torch.zeros(15, 19, dtype=torch.bool)
    expected[0:12, 8:19] = True  # blocks rows 0-2, columns 2-4
    torch.testing.assert_close(mask, expected, rtol=0, atol=0)


class SphereRenderer:
    """An exact renderer of a sphere: where a ray hits it, opacity ``opacity`` and colour ``colour`` over the background
    (depth the first hit); elsewhere the background. Counts the rays of each call; ``chunk`` as a Renderer's."""

    def __init__(self, radius, colour=(0.2, 0.6, 0.9), opacity=1.0, chunk=None):
        self.radius, self.colour, self.opacity, self.chunk = radius, torch.tensor(colour, dtype=torch.float64), opacity, chunk
        self.background = torch.ones(3, dtype=torch.float64)
        self.calls = []

    @property
    def rendered(self):
        return sum(self.calls)

    def measure_chunk(self, rays):
        return self.chunk or 1 << 30

    def render(self, rays, keep_weights=False):  # weights are those of the output, kept or not
        self.calls.append(rays.shape.numel())
        d = rays.directions / rays.directions.norm(dim=-1, keepdim=True)
        b = (rays.origins * d).sum(-1, keepdim=True)
        disc = b ** 2 - (rays.origins ** 2).sum(-1, keepdim=True) + self.radius ** 2
        acc = (disc > 0).double() * self.opacity
        t = (-b - disc.clamp_min(0).sqrt()) / rays.directions.norm(dim=-1, keepdim=True)
        return RenderOutput(acc * self.colour + (1 - acc) * self.background, acc, acc * t, weights=torch.empty(0))

    __call__ = render  # one chunk, as a Renderer's call

    def useful_window(self, kept):
        return useful_window(kept, getattr(self, "n_sections", None))  # as a Renderer's: sections only where there are


def sphere_view(size):
    camera = Intrinsics.from_focal(size, size, size * 1.2)
    c2w = torch.from_numpy(spherical_pose(20.0, -30.0, 4.0))
    return camera_rays(c2w, camera, 2.0, 6.0)


@pytest.mark.parametrize("by", ["acc", "rgb"])
def test_skipping_empty_space_is_exact_where_the_scene_is_larger_than_a_block(by):
    rays = sphere_view(96)  # float64 rays; the sphere covers about a fifth of the view
    full = SphereRenderer(radius=0.8).render(rays)
    sphere = SphereRenderer(radius=0.8)
    skipped = render_skipping_empty(sphere, rays, block=4, by=by)
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(skipped, name), getattr(full, name), rtol=0, atol=0, msg=name)
    covered = float(full.acc.mean())
    assert 0.1 < covered < 0.4
    # The first pass (1/16 of the rays) and the blocks near the sphere: well under all 96 x 96 rays.
    assert sphere.rendered < (covered + 0.25) * 96 * 96


def test_haze_of_the_background_colour_is_skipped_in_the_colour_view_only():
    rays = sphere_view(32)
    haze = SphereRenderer(radius=10.0, colour=(1.0, 1.0, 1.0), opacity=0.3)  # every ray: opacity 0.3 of the background's white
    by_colour = render_skipping_empty(haze, rays, block=4, by="rgb")
    assert haze.calls == [64]  # the first pass only
    torch.testing.assert_close(by_colour.rgb, haze.render(rays).rgb, rtol=0, atol=0)  # and the colours are still right
    haze.calls.clear()
    by_opacity = render_skipping_empty(haze, rays, block=4, by="acc")
    # Every pixel, the first pass's 64 once only.
    assert haze.calls == [64, 32 * 32 - 64] and bool((by_opacity.acc == 0.3).all())


def test_pieces_come_in_two_sizes_and_join_back_in_order(monkeypatch):
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (100, 30))
    rays = sphere_view(21)  # 441 rays: 4 large pieces, then 41 in 2 small ones (the last padded)
    sphere = SphereRenderer(radius=0.8)
    out = render_in_pieces(sphere, rays)
    assert sphere.calls == [100] * 4 + [30] * 2
    full = SphereRenderer(radius=0.8).render(rays)
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(full, name), rtol=0, atol=0, msg=name)
    small_chunk = SphereRenderer(radius=0.8, chunk=20)  # a renderer's smaller chunk (little GPU memory) wins
    render_in_pieces(small_chunk, rays)
    assert set(small_chunk.calls) == {20}


def test_the_skipped_render_keeps_to_two_shapes(monkeypatch):
    """A compiled or CUDA-graph renderer must see few shapes: with ``pieces``, both passes come in pieces of the two sizes."""
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (1000, 100))
    rays = sphere_view(96)
    sphere = SphereRenderer(radius=0.8)
    skipped = render_skipping_empty(sphere, rays, block=4, pieces=True)
    assert set(sphere.calls) == {1000, 100}
    mask = occupied_pixels(SphereRenderer(radius=0.8).render(rays[2::4, 2::4]).acc[..., 0] >= EMPTY_BELOW, (96, 96), 4)
    needed = int(mask.sum()) - int(mask[2::4, 2::4].sum())  # the first pass's own pixels are not rendered again
    # The first pass's 576 rays in 6 small pieces, then the needed ones, padded by less than a small piece.
    assert sphere.calls[:6] == [100] * 6 and needed <= sum(sphere.calls[6:]) < needed + 100
    torch.testing.assert_close(skipped.rgb, SphereRenderer(radius=0.8).render(rays).rgb, rtol=0, atol=0)


def test_a_whole_first_pass_is_one_piece_of_its_own_size_and_changes_no_pixel(monkeypatch):
    """``whole_first_pass``: the first pass's h·w rays in one call of exactly that many (no padding to the small piece),
    the full pass in the two sizes as before, the frame the same to the last bit; a renderer whose chunk cannot hold the
    first pass, or one that takes no pieces, draws it as before."""
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (1000, 100))
    rays = sphere_view(96)  # a first pass of 24 x 24 = 576 rays: 6 small pieces (24 rays padded) without whole
    sphere, whole = SphereRenderer(radius=0.8), SphereRenderer(radius=0.8)
    before = render_skipping_empty(sphere, rays, block=4, pieces=True)
    after = render_skipping_empty(whole, rays, block=4, pieces=True, whole_first_pass=True)
    assert sphere.calls[:6] == [100] * 6 and whole.calls[0] == 576 and whole.calls[1:] == sphere.calls[6:]
    assert set(whole.calls[1:]) <= {1000, 100}
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=0, atol=0, msg=name)
    narrow = SphereRenderer(radius=0.8, chunk=500)  # 576 rays do not fit one chunk: pieces, at the chunk's sizes
    render_skipping_empty(narrow, rays, block=4, pieces=True, whole_first_pass=True)
    assert 576 not in narrow.calls and set(narrow.calls) <= {500, 100}
    eager = SphereRenderer(radius=0.8)  # no pieces: the first pass as the renderer's chunks draw it, as always
    render_skipping_empty(eager, rays, block=4, whole_first_pass=True)
    assert eager.calls[0] == 576


class SectionedSphere(SphereRenderer):
    """The sphere with N equal sections of each ray's [near, far]: its opacity is the weight of the section of the first
    hit. ``window(K)`` renders sections first … first + K − 1 only (a hit outside them is missed); rays drawn that way are
    counted in ``windowed``."""

    def __init__(self, radius, n_sections=8):
        super().__init__(radius)
        self.n_sections, self.windowed = n_sections, []

    def render(self, rays, first=None, kept=None, keep_weights=False):
        out = SphereRenderer.render(self, rays)
        t = out.depth / out.acc.clamp_min(1e-12)
        section = ((t - rays.near) / (rays.far - rays.near) * self.n_sections).floor().long().clamp(0, self.n_sections - 1)[..., 0]
        weights = torch.nn.functional.one_hot(section, self.n_sections).double() * out.acc
        if first is None:
            return RenderOutput(out.rgb, out.acc, out.depth, weights)
        self.windowed.append(kept)
        acc = out.acc * ((section >= first) & (section < first + kept))[..., None]
        window = first[:, None] + torch.arange(kept)
        return RenderOutput(acc * self.colour + (1 - acc) * self.background, acc, acc * t, weights.gather(-1, window))

    __call__ = render

    def window(self, kept):
        return SphereWindow(self, kept)


class SphereWindow:
    """A :class:`SectionedSphere` on ``kept`` sections, called as a Renderer's section window: (rays, first)."""

    def __init__(self, sphere, kept):
        self.sphere, self.kept = sphere, kept

    def measure_chunk(self, rays):
        return self.sphere.measure_chunk(rays)

    def __call__(self, rays, first):
        return self.sphere.render(rays, first, self.kept)

    render = __call__  # all the rays at once, as a SectionWindows' render


class PeekingPast(SectionedSphere):
    """A 32 x 32 view looking down −z, rows by ray: rows 14 on meet something near (section 1 of 8, red); rows 11 to 13, a
    thin band between the first pass's rows 10 and 14, see something far past its edge (section 6, green); above, nothing."""

    def render(self, rays, first=None, kept=None, keep_weights=False):
        self.calls.append(rays.shape.numel())
        row = (16 - 32 * rays.directions[..., 1] / -rays.directions[..., 2]).round()
        section = torch.where(row >= 14, 1, torch.where(row >= 11, 6, -1)).long()
        hit = section >= 0
        if first is not None:
            self.windowed.append(kept)
            hit = hit & (section >= first) & (section < first + kept)
        colour = torch.where((section == 1)[..., None], torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])).double()
        acc = hit.double()[..., None]
        weights = torch.nn.functional.one_hot(section.clamp_min(0), self.n_sections).double() * acc
        if first is not None:
            weights = weights.gather(-1, first[:, None] + torch.arange(kept))
        depth = acc * (rays.near + (section[..., None] + 0.5) / self.n_sections * (rays.far - rays.near))
        return RenderOutput(acc * colour + (1 - acc) * self.background, acc, depth, weights)

    __call__ = render


class ShapeRecorder(SectionedSphere):
    """The sectioned sphere as a renderer that takes pieces (CUDA graphs), noting each call's (function, rays): the whole
    ray ("all") or a window of its sections ("window")."""

    settings = RenderSettings(cuda_graphs=True)

    def __init__(self, radius):
        super().__init__(radius)
        self.shapes = set()

    def render(self, rays, first=None, kept=None, keep_weights=False):
        self.shapes.add(("all" if first is None else "window", rays.shape.numel()))
        return super().render(rays, first, kept, keep_weights)

    __call__ = render


def test_a_skipping_renderers_warm_up_meets_every_piece_a_frame_can(monkeypatch):
    """One small view needs small pieces of the whole ray only; the warm-up also runs the section window, and both on a
    large piece, so that a later, larger frame meets no (function, piece size) that a compiled renderer would have to
    compile while being timed."""
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (1000, 100))
    alone = ShapeRecorder(radius=0.8)
    SkippingRenderer(alone, Skipping(window=2)).render(sphere_view(24))
    assert alone.shapes == {("all", 100)}  # what the old warm-up (one view) compiled: no window fits in so small a view
    field = ShapeRecorder(radius=0.8)
    frames = SkippingRenderer(field, Skipping(window=2))
    frames.warm_up(sphere_view(24))
    warmed = set(field.shapes)
    assert warmed == {("all", 1000), ("all", 100), ("window", 1000), ("window", 100)}
    frames.render(sphere_view(96))
    assert field.shapes == warmed and ("window", 1000) in warmed
    eager = ShapeRecorder(radius=0.8)
    eager.settings = RenderSettings()  # an eager renderer takes no pieces: its warm-up is the one view
    SkippingRenderer(eager, Skipping(window=2)).warm_up(sphere_view(24))
    assert all(size != 1000 for _, size in eager.shapes)


def test_a_warm_up_with_a_whole_first_pass_meets_the_first_pass_shape_of_its_frame_size(monkeypatch):
    """Frames of the warm-up's size (an evaluation's) then meet no shape the warm-up did not: the first pass's own."""
    monkeypatch.setattr(skipping_module, "PIECE_RAYS", (1000, 100))
    field = ShapeRecorder(radius=0.8)
    frames = SkippingRenderer(field, Skipping(window=2, whole_first_pass=True))
    frames.warm_up(sphere_view(96))
    warmed = set(field.shapes)
    assert ("all", 24 * 24) in warmed and {("all", 1000), ("all", 100), ("window", 1000), ("window", 100)} <= warmed
    frames.render(sphere_view(96))
    assert field.shapes == warmed


def test_what_peeks_past_a_silhouette_is_not_left_out_by_a_window():
    """Pixels between an empty first-pass ray and one that stops near can see farther than either: no window there."""
    rays = camera_rays(torch.eye(4, dtype=torch.float64)[:3], Intrinsics.from_focal(32, 32, 32.0), 2.0, 6.0)
    full = PeekingPast(radius=1.0).render(rays)
    assert full.acc[11:14, :, 0].bool().all() and not full.acc[10, :, 0].bool().any()  # the band is there, between rows 10 and 14
    field = PeekingPast(radius=1.0)
    windowed = render_skipping_empty(field, rays, block=4, by="rgb", window=2)
    assert field.windowed == [2]  # pixels well below the edge still take a window of 2
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(windowed, name), getattr(full, name), rtol=0, atol=0)


def test_a_section_window_leaves_out_at_most_half_a_level_at_each_end():
    weights = torch.tensor([[0.0, 0.001, 0.6, 0.3, 0.001, 0.0],   # sections 2 and 3
                            [0.1] * 6,                              # all of them
                            [0.0] * 6,                              # none: first 6, last 0
                            [0.3, 0.0, 0.0, 0.0, 0.0, 0.4]])        # the ends: all of them
    first, last = section_window(weights, left_out=0.0015)
    assert first.tolist() == [2, 0, 6, 0] and last.tolist() == [3, 5, 0, 5]
    first, last = section_window(weights[:1], left_out=0.0005)
    assert (first.item(), last.item()) == (1, 4)


def test_a_pixels_window_spans_what_its_three_by_three_blocks_need():
    weights = torch.zeros(3, 3, 6)
    weights[..., 2] = 0.8  # every block's ray needs section 2
    weights[1, 1, 2:4] = 0.5  # the centre block's ray sections 2 and 3
    weights[2, 2, 2], weights[2, 2, 4] = 0.0, 0.9  # a corner's, section 4
    first, fits = pixel_windows(weights, (12, 12), 4, kept=2)
    assert first.shape == fits.shape == (12, 12)
    assert (first[0, 0].item(), fits[0, 0].item()) == (2, True)  # the top-left block sees the centre only
    assert (first[11, 11].item(), fits[11, 11].item()) == (2, False)  # the bottom-right one sees 2 … 4: three sections
    first, fits = pixel_windows(weights, (12, 12), 4, kept=3)
    assert fits.all() and first[11, 11].item() == 2
    first, fits = pixel_windows(torch.zeros(3, 3, 6), (12, 12), 4, kept=5)
    assert (first == 0).all() and not fits.any()  # rays that need nothing count as needing all 6 sections


def test_a_pixel_next_to_an_empty_ray_gets_no_window():
    """Between an empty ray and one that meets something near, a pixel can see something farther that neither ray sees
    (past the near thing's silhouette): such pixels are drawn on all N sections."""
    weights = torch.zeros(4, 4, 8)
    weights[2:, :, 1] = 0.9  # the lower half's rays meet something in section 1; the upper half's are empty
    _, fits = pixel_windows(weights, (16, 16), 4, kept=2)
    assert not fits[:12].any()  # blocks whose 3 x 3 neighbourhood holds an empty ray
    assert fits[12:].all()  # the bottom row's blocks see only section 1


def test_pixels_drawn_on_a_window_of_sections_are_those_of_all_of_them():
    """The sectioned sphere's hits lie in sections 2 and 3 of 8: with windows of 2 sections every rendered pixel is drawn on
    its window (3 posts instead of 9), and the frame is the full one."""
    rays = sphere_view(96)
    full = SectionedSphere(radius=0.8).render(rays)
    sphere = SectionedSphere(radius=0.8)
    windowed = render_skipping_empty(sphere, rays, block=4, by="rgb", window=2)
    for name in ("rgb", "acc", "depth"):
        torch.testing.assert_close(getattr(windowed, name), getattr(full, name), rtol=0, atol=0)
    assert sphere.windowed and set(sphere.windowed) == {2}
    # The first pass, the pixels whose 3 x 3 blocks' rays all hit (on their window), then the rest next to the silhouette.
    hit = full.acc[2::4, 2::4, 0] > 0
    inside = torch.kron(-F.max_pool2d(-hit.double()[None], 3, stride=1, padding=1)[0], torch.ones(4, 4, dtype=torch.float64)).bool()
    todo = occupied_pixels(hit, (96, 96), 4)
    todo[2::4, 2::4] = False
    assert sphere.calls == [24 * 24, int((todo & inside).sum()), int((todo & ~inside).sum())] and sphere.calls[1] > 0
    narrow = SectionedSphere(radius=0.8)
    one = render_skipping_empty(narrow, rays, block=4, by="rgb", window=1)
    # Where sections 2 and 3 meet, pixels that fit a window of 2 take all 8 sections with windows of 1.
    assert len(narrow.calls) == 3 and narrow.calls[1] < sphere.calls[1] and sum(narrow.calls[1:]) == sum(sphere.calls[1:])
    torch.testing.assert_close(one.rgb, full.rgb, rtol=0, atol=0)


def test_what_falls_between_the_first_pass_rays_is_not_seen():
    """A sphere smaller than a block, between the first pass's rays: the limit the module's docstring states."""
    rays = sphere_view(32)
    tiny = SphereRenderer(radius=0.012)
    full = tiny.render(rays)
    assert 0 < float(full.acc.sum()) <= 2  # a pixel or two see it
    assert float(tiny.render(rays[2::4, 2::4]).acc.sum()) == 0  # the first pass's rays pass it by
    skipped = render_skipping_empty(tiny, rays, block=4)
    assert float(skipped.acc.sum()) == 0


def test_a_quadrature_frame_skipping_empty_space_takes_no_window(tiny_run):
    """A window of sections means nothing to the quadrature renderer: asked for one, its frame is the plain skipped frame
    (before, render_skipping_empty asked the quadrature renderer for a window and failed)."""
    from autoint_cli.render.renderer import Renderer

    run = load_run(tiny_run[1], CPU)
    renderer = Renderer(run.model, torch.tensor(run.scene.background), RenderSettings(renderer="quadrature", n_samples=8))
    rays = camera_rays(run.scene.c2w[0], run.scene.intrinsics, run.scene.near, run.scene.far)
    with torch.no_grad():
        windowed, plain = render_skipping_empty(renderer, rays, window=2), render_skipping_empty(renderer, rays)
    torch.testing.assert_close(windowed.rgb, plain.rgb, rtol=0, atol=0)
