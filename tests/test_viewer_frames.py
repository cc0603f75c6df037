"""The viewer's frames: viser's camera convention, a frame equal to autoint-render's, and skipping empty space (exact where
the scene is larger than a block, against an analytic sphere; what it cannot see; the same image on a tiny_run run)."""
import logging
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

import autoint_cli.viewer.frames as frames_module
from autoint_cli.cli import render_main
from autoint_cli.render.renderer import RenderSettings, useful_window
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import vertical_fov
from autoint_cli.scene.poses import spherical_pose
from autoint_cli.viewer.frames import (
    EMPTY_BELOW,
    FrameRenderer,
    TurnLock,
    c2w_from_viewer,
    occupied_pixels,
    pixel_windows,
    render_in_pieces,
    render_skipping_empty,
    section_window,
    viewer_from_c2w,
    viewer_intrinsics,
)
from autoint_cli.volume.rays import Intrinsics, camera_rays
from autoint_cli.volume.rendering import RenderOutput

CPU = torch.device("cpu")


def test_viser_cameras_are_opencv_axes_a_half_turn_about_x_from_ours():
    c2w = c2w_from_viewer([1.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(c2w, [[1, 0, 0, 1], [0, -1, 0, 2], [0, 0, -1, 3]], atol=1e-12)  # looks along +z: our −z column is +z
    rotation = Rotation.from_rotvec([0.4, -1.1, 0.7]).as_matrix()
    pose = np.concatenate((rotation, [[0.5], [-2.0], [1.5]]), 1)
    np.testing.assert_allclose(c2w_from_viewer(*viewer_from_c2w(pose)), pose, atol=1e-12)
    camera = viewer_intrinsics(np.radians(60.0), 1.5, 40)
    assert (camera.H, camera.W) == (40, 60) and camera.fy == pytest.approx(20 / np.tan(np.radians(30)))


def test_a_frame_is_what_autoint_render_makes_for_that_pose(tiny_run):
    tmp_path, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(), CPU)
    pose = run.scene.c2w[run.scene.i_test[1]].double().numpy()
    wxyz, position = viewer_from_c2w(pose)  # through the viewer's convention and back
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), run.scene.W / run.scene.H, run.scene.H)
    image, ms = frames.render(c2w_from_viewer(wxyz, position), camera)
    assert render_main(["--expdir", str(run_dir), "--out", str(tmp_path / "split")]) == 0
    np.testing.assert_array_equal(image, iio.imread(tmp_path / "split" / "rgb_001.png"))
    assert ms > 0
    depth, _ = frames.render(pose, camera, "depth")
    acc, _ = frames.render(pose, camera, "acc", n_sections=4, kind="quadrature")
    assert depth.shape == acc.shape == (12, 12, 3) and depth.dtype == acc.dtype == np.uint8
    # Where the demo scene is seen everywhere (its 3 x 3 first pass sees something in every block), skipping changes nothing
    # but the chunks the rays are rendered in: a level at most.
    skipped, _ = frames.render(pose, camera, skip_empty=True)
    assert np.abs(skipped.astype(int) - image.astype(int)).max() <= 1


def test_frames_and_the_warm_up_use_the_settings_n_not_the_trained_one(tiny_run):
    """autoint-view --n_sections 3: the first frames, and the renderer warmed up before serving, are at N = 3."""
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    assert run.config.model.n_sections != 3
    frames = FrameRenderer(run, RenderSettings(n_sections=3), CPU)
    assert frames.warm_up(8) > 0 and list(frames._renderers) == [(3, "integral")]
    pose = run.scene.c2w[0].double().numpy()
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, 8)
    np.testing.assert_array_equal(frames.render(pose, camera)[0], frames.render(pose, camera, n_sections=3)[0])
    assert FrameRenderer(run, RenderSettings(), CPU).n_sections == run.config.model.n_sections


def test_a_new_n_is_drawn_eagerly_while_its_renderer_warms_up_in_the_background(tiny_run, monkeypatch, caplog):
    """autoint-view: a first frame at an N not drawn before comes at once from an eager stand-in while the settings' renderer
    (here CUDA graphs, which the CPU ignores, so it is eager too but takes rays in pieces) warms up on a thread of its own;
    once it is ready, frames come from it, the same image."""
    _, run_dir = tiny_run
    caplog.set_level(logging.INFO, logger="autoint_cli.viewer.frames")
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(cuda_graphs=True), CPU, warm_in_background=True)
    assert frames.pieces and frames.warm_in_background
    release, probed = threading.Event(), []
    probe = frames_module.Renderer.probe

    def held_probe(self, rays):  # the warm-up's compile step waits until the test lets it go
        probed.append(rays.shape[0])
        assert release.wait(60)
        return probe(self, rays)

    monkeypatch.setattr(frames_module.Renderer, "probe", held_probe)
    pose = run.scene.c2w[0].double().numpy()
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, 12)
    eager, _ = frames.render(pose, camera, n_sections=3)  # returns although the warm-up is held
    assert frames.warming(3) and (3, "integral") not in frames._renderers and list(frames._stand_ins) == [(3, "integral")]
    stand_in = frames._stand_ins[(3, "integral")]
    assert stand_in.settings.compile_mode is None and not stand_in.settings.cuda_graphs
    release.set()
    frames._warming[(3, "integral")].join(60)
    assert not frames.warming(3) and frames._renderers[(3, "integral")].settings.cuda_graphs
    # Both piece sizes (each cut to the chunk) were compiled, from the first path view's rays repeated to fill them.
    assert probed == sorted({min(frames._renderers[(3, "integral")].chunk, size) for size in frames_module.PIECE_RAYS}, reverse=True)
    ready, _ = frames.render(pose, camera, n_sections=3)
    np.testing.assert_array_equal(ready, eager)
    assert "N=3 (integral): compiled renderer ready" in caplog.text


def test_torch_compile_on_the_warm_up_thread_while_frames_go_on(tiny_run):
    """The same with a real torch.compile (Inductor on the CPU, tens of seconds): dynamo compiles on the warm-up thread while
    the stand-in draws frames on this one; the compiled renderer then draws the same image to a level."""
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(compile_mode="default"), CPU, warm_in_background=True)
    pose = run.scene.c2w[0].double().numpy()
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, 12)
    eager, _ = frames.render(pose, camera, n_sections=3)
    drawn = 0
    while frames.warming(3):
        frames.render(pose, camera, n_sections=3)
        drawn += 1
    assert drawn > 0 and frames._renderers[(3, "integral")].settings.compile_mode == "default"
    compiled, _ = frames.render(pose, camera, n_sections=3)
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 1


def test_a_warm_up_that_fails_leaves_the_eager_stand_in(tiny_run, monkeypatch, caplog):
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(cuda_graphs=True), CPU, warm_in_background=True)

    def failing_probe(self, rays):
        raise RuntimeError("out of memory while compiling")

    monkeypatch.setattr(frames_module.Renderer, "probe", failing_probe)
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, 12)
    first, _ = frames.render(run.scene.c2w[0].double().numpy(), camera, n_sections=3)
    frames._warming[(3, "integral")].join(60)
    assert (3, "integral") not in frames._renderers and not frames.warming(3)
    assert "the compiled renderer failed to warm up; frames stay eager" in caplog.text
    again, _ = frames.render(run.scene.c2w[0].double().numpy(), camera, n_sections=3)
    np.testing.assert_array_equal(again, first)
    assert list(frames._warming) == [(3, "integral")]  # not started again


def test_without_compiling_there_is_nothing_to_warm_up(tiny_run):
    _, run_dir = tiny_run
    frames = FrameRenderer(load_run(run_dir, CPU), RenderSettings(), CPU, warm_in_background=True)
    assert not frames.warm_in_background
    frames.render(frames.run.scene.c2w[0].double().numpy(), viewer_intrinsics(1.0, 1.0, 6), n_sections=3)
    assert list(frames._renderers) == [(3, "integral")] and not frames._warming and not frames._stand_ins


def test_section_windows_in_a_trained_runs_frames_and_its_warm_up(tiny_run):
    """FrameRenderer(window=K): the warm-up also calls the section window at both piece sizes (so that a compiled or CUDA-
    graph one is ready), and a skipped frame with windows is the skipped frame without them, to a level."""
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(cuda_graphs=True, n_sections=8), CPU, window=3)
    frames.warm_up(12)
    assert list(frames._renderers[(8, "integral")]._windows) == [3]
    plain = FrameRenderer(run, RenderSettings(n_sections=8), CPU)
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), 1.0, 24)
    for view in (0, 1):
        pose = run.scene.c2w[view].double().numpy()
        windowed, _ = frames.render(pose, camera, skip_empty=True)
        skipped, _ = plain.render(pose, camera, skip_empty=True)
        assert np.abs(windowed.astype(int) - skipped.astype(int)).max() <= 1
    assert frames._window_of(frames.renderer(3, "integral")) is None  # a window of 3 of N = 3 saves nothing


def test_refined_frames_are_what_autoint_render_refine_makes_and_use_no_windows(tiny_run):
    """autoint-view --refine 3: a frame is autoint-render --refine 3's image; no section window is drawn (the refined renderer
    draws all its sections), and the quadrature reference of the same settings is not refined."""
    tmp_path, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(n_sections=4, refine=3), CPU, window=2)
    pose = run.scene.c2w[run.scene.i_test[0]].double().numpy()
    camera = viewer_intrinsics(np.radians(vertical_fov(run.scene.intrinsics)), run.scene.W / run.scene.H, run.scene.H)
    image, _ = frames.render(pose, camera)
    out = tmp_path / "refined_split"
    assert render_main(["--expdir", str(run_dir), "--n_sections", "4", "--refine", "3", "--out", str(out)]) == 0
    np.testing.assert_array_equal(image, iio.imread(out / "rgb_000.png"))
    skipped, _ = frames.render(pose, camera, skip_empty=True)
    assert np.abs(skipped.astype(int) - image.astype(int)).max() <= 1
    assert frames._window_of(frames.renderer(4, "integral")) is None and not frames.renderer(4, "integral")._windows
    frames.render(pose, camera, n_sections=4, kind="quadrature")
    assert frames.renderer(4, "quadrature").settings.refine == 1


def test_frames_are_drawn_one_at_a_time_whichever_thread_asks(tiny_run, monkeypatch):
    """Two browsers' draw loops call render at once; a CUDA-graph renderer shares its input buffers, so frames must not overlap."""
    _, run_dir = tiny_run
    frames = FrameRenderer(load_run(run_dir, CPU), RenderSettings(), CPU)
    inside, most = [0], [0]

    def slow_image(*args):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        inside[0] -= 1
        return np.zeros((2, 2, 3), np.uint8)

    monkeypatch.setattr(frames, "_image", slow_image)
    threads = [threading.Thread(target=frames.render, args=(None, None)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1


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
    monkeypatch.setattr(frames_module, "PIECE_RAYS", (100, 30))
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
    monkeypatch.setattr(frames_module, "PIECE_RAYS", (1000, 100))
    rays = sphere_view(96)
    sphere = SphereRenderer(radius=0.8)
    skipped = render_skipping_empty(sphere, rays, block=4, pieces=True)
    assert set(sphere.calls) == {1000, 100}
    mask = occupied_pixels(SphereRenderer(radius=0.8).render(rays[2::4, 2::4]).acc[..., 0] >= EMPTY_BELOW, (96, 96), 4)
    needed = int(mask.sum()) - int(mask[2::4, 2::4].sum())  # the first pass's own pixels are not rendered again
    # The first pass's 576 rays in 6 small pieces, then the needed ones, padded by less than a small piece.
    assert sphere.calls[:6] == [100] * 6 and needed <= sum(sphere.calls[6:]) < needed + 100
    torch.testing.assert_close(skipped.rgb, SphereRenderer(radius=0.8).render(rays).rgb, rtol=0, atol=0)


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


def test_the_frame_lock_gives_a_waiting_thread_its_turn_while_frames_keep_coming():
    """A draw loop that takes the lock again at once: a thread that asks for it meanwhile gets it within two frames, ten
    times out of ten (a plain threading.Lock often kept it waiting for over a hundred such frames on this machine)."""
    lock = TurnLock()
    for _ in range(10):
        asked, frames_before, count = threading.Event(), [], 0

        def warm_up():
            asked.set()
            with lock:
                frames_before.append(count)

        thread = threading.Thread(target=warm_up)
        start = time.perf_counter()
        while not frames_before and time.perf_counter() - start < 10:
            with lock:
                if count == 1:
                    thread.start()
                    asked.wait()
                time.sleep(0.002)  # a frame's wait for the GPU, the GIL released
                count += 1
        thread.join()
        assert frames_before and frames_before[0] - 2 <= 2, frames_before


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
