"""The viewer's frames: viser's camera convention, a frame equal to autoint-render's, warm-ups, section windows and the
frame lock on a tiny_run run. Skipping empty space itself: test_render_skipping.py."""
import logging
import threading
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import autoint_cli.render.skipping as skipping_module
import autoint_cli.viewer.frames as frames_module
from autoint_cli.cli import render_main
from autoint_cli.render.renderer import RenderSettings
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import vertical_fov
from autoint_cli.viewer.frames import FrameRenderer, TurnLock, c2w_from_viewer, viewer_from_c2w, viewer_intrinsics

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
    assert probed == sorted({min(frames._renderers[(3, "integral")].chunk, size) for size in skipping_module.PIECE_RAYS}, reverse=True)
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
