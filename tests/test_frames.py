"""The viewer's frames: viser's camera convention, a frame equal to autoint-render's, and skipping empty space (exact where
the scene is larger than a block, against an analytic sphere; what it cannot see; the same image on a tiny_run run)."""
import logging
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from autoint_cli.cli import render_main
from autoint_cli.data.camera_path import vertical_fov
from autoint_cli.data.poses import spherical_pose
import autoint_cli.frames as frames_module
from autoint_cli.frames import (EMPTY_BELOW, FrameRenderer, c2w_from_viewer, occupied_pixels, render_in_pieces, render_skipping_empty,
                                viewer_from_c2w, viewer_intrinsics)
from autoint_cli.rays import Intrinsics, camera_rays
from autoint_cli.render import RenderOutput
from autoint_cli.renderer import RenderSettings
from autoint_cli.run_loader import load_run

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
    caplog.set_level(logging.INFO, logger="autoint_cli.frames")
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

    def render(self, rays):
        self.calls.append(rays.shape.numel())
        d = rays.directions / rays.directions.norm(dim=-1, keepdim=True)
        b = (rays.origins * d).sum(-1, keepdim=True)
        disc = b ** 2 - (rays.origins ** 2).sum(-1, keepdim=True) + self.radius ** 2
        acc = (disc > 0).double() * self.opacity
        t = (-b - disc.clamp_min(0).sqrt()) / rays.directions.norm(dim=-1, keepdim=True)
        return RenderOutput(acc * self.colour + (1 - acc) * self.background, acc, acc * t, weights=torch.empty(0))

    __call__ = render  # one chunk, as a Renderer's call


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


def test_what_falls_between_the_first_pass_rays_is_not_seen():
    """A sphere smaller than a block, between the first pass's rays: the limit the module's docstring states."""
    rays = sphere_view(32)
    tiny = SphereRenderer(radius=0.012)
    full = tiny.render(rays)
    assert 0 < float(full.acc.sum()) <= 2  # a pixel or two see it
    assert float(tiny.render(rays[2::4, 2::4]).acc.sum()) == 0  # the first pass's rays pass it by
    skipped = render_skipping_empty(tiny, rays, block=4)
    assert float(skipped.acc.sum()) == 0
