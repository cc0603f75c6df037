"""autoint-view: the draw loop (previews, full size, redraws while training, frames sent on their own thread), keyframes as a
camera path, the page served, and one-line errors. The frames themselves: test_viewer_frames.py."""
import socket
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from autoint_cli.cli import train_main, view_main
from autoint_cli.render.renderer import RenderSettings
from autoint_cli.runs.loader import load_run
from autoint_cli.scene.camera_path import read_camera_path, vertical_fov
from autoint_cli.scene.synthetic import DemoSceneSpec, write_demo_scene
from autoint_cli.viewer.frames import FrameRenderer, viewer_from_c2w, viewer_intrinsics
from autoint_cli.viewer.server import FrameLog, Keyframe, ViewerOptions, _client_loop, save_camera_path

from helpers import free_port, wait_for, write_config

CPU = torch.device("cpu")


class FakeClient:
    """What the draw loop reads of a viser client: its camera; what it writes: background images, each flushed at once
    (``flushed`` counts the images shown before each flush)."""

    def __init__(self, pose):
        wxyz, position = viewer_from_c2w(pose)
        self.camera = SimpleNamespace(wxyz=wxyz, position=position, fov=np.radians(40.0), aspect=1.0, image_height=24)
        self.shown, self.flushed = [], []
        self.scene = SimpleNamespace(set_background_image=lambda image, **_: self.shown.append(image.shape))

    def flush(self):
        self.flushed.append(len(self.shown))


def fake_controls():
    return SimpleNamespace(version=0, output=SimpleNamespace(value="rgb"), n_sections=SimpleNamespace(value=8),
                           kind=SimpleNamespace(value="integral"), skip_empty=SimpleNamespace(value=True),
                           readout=SimpleNamespace(content=""))


def run_loop(client, frames, controls, options, log=None):
    gone = threading.Event()
    loop = threading.Thread(target=_client_loop, args=(client, frames, controls, options, gone, log))
    loop.start()
    return gone, loop


def test_the_loop_draws_small_while_moving_and_full_size_once_still(tiny_run):
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(), CPU)
    controls, client, log = fake_controls(), FakeClient(run.scene.c2w[0].double().numpy()), FrameLog()
    gone, loop = run_loop(client, frames, controls, ViewerOptions(max_height=24, preview_scale=4, settle_seconds=0.1), log)
    try:
        assert wait_for(lambda: len(client.shown) >= 2, 20)
        assert client.shown[:2] == [(16, 16, 3), (24, 24, 3)]  # the preview (at least 16 lines), then full size
        time.sleep(0.3)
        assert len(client.shown) == 2  # nothing changed: nothing drawn
        controls.version += 1  # a control changed
        assert wait_for(lambda: len(client.shown) >= 4, 20)
        assert client.shown[2:4] == [(16, 16, 3), (24, 24, 3)] and "ms per frame" in controls.readout.content
        sent = log.frames()
        assert [(f.height, f.width, 3) for f in sent] == client.shown and all(f.render_ms > 0 and f.encode_ms >= 0 for f in sent)
        assert [f.sent_at for f in sent] == sorted(f.sent_at for f in sent)
        # Each frame is flushed as soon as it is set: viser's 1/60 s windows would otherwise drop frames beyond 60 a second.
        assert client.flushed[:4] == [1, 2, 3, 4]
    finally:
        gone.set()
        loop.join(10)


def test_the_readout_says_when_an_eager_stand_in_draws_while_n_compiles(tiny_run, monkeypatch):
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(cuda_graphs=True), CPU, warm_in_background=True)
    release = threading.Event()
    monkeypatch.setattr(FrameRenderer, "_warm", lambda self, key: release.wait(30))  # a warm-up that takes its time
    controls, client = fake_controls(), FakeClient(run.scene.c2w[0].double().numpy())
    gone, loop = run_loop(client, frames, controls, ViewerOptions(max_height=24, preview_scale=1, settle_seconds=0.05))
    try:
        assert wait_for(lambda: "eager while this N compiles" in controls.readout.content, 20)
        release.set()
        controls.version += 1
        assert wait_for(lambda: "ms per frame" in controls.readout.content and "eager" not in controls.readout.content, 20)
    finally:
        release.set()
        gone.set()
        loop.join(10)


def test_while_training_a_still_view_is_drawn_again(tiny_run):
    """refresh_seconds: the full-size frame of a still camera is drawn again (the weights change while training)."""
    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    frames = FrameRenderer(run, RenderSettings(), CPU)
    client = FakeClient(run.scene.c2w[0].double().numpy())
    options = ViewerOptions(max_height=24, preview_scale=4, settle_seconds=0.05, refresh_seconds=0.2)
    gone, loop = run_loop(client, frames, fake_controls(), options)
    try:
        assert wait_for(lambda: len(client.shown) >= 4, 20)
        assert client.shown[:4] == [(16, 16, 3)] + [(24, 24, 3)] * 3
    finally:
        gone.set()
        loop.join(10)


def test_keyframes_are_saved_as_a_camera_path_autoint_render_reads(tmp_path):
    poses = [np.concatenate((Rotation.from_rotvec([0, a, 0]).as_matrix(), [[a], [0.0], [4.0]]), 1) for a in (0.0, 0.5, 1.0)]
    path = save_camera_path(tmp_path / "paths" / "p.json", [Keyframe(p, 40.0 + 5 * i) for i, p in enumerate(poses)], 10.0, 1.0, 16, 12)
    read = read_camera_path(path, viewer_intrinsics(np.radians(50.0), 1.0, 12))
    assert read.n_frames == 10 and (read.intrinsics[0].W, read.intrinsics[0].H) == (16, 12)
    torch.testing.assert_close(read.c2w[0], torch.from_numpy(poses[0]).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(read.c2w[-1], torch.from_numpy(poses[-1]).float(), rtol=0, atol=1e-5)
    assert vertical_fov(read.intrinsics[0]) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        save_camera_path(tmp_path / "one.json", [Keyframe(poses[0], 40.0)], 10.0, 1.0, 16, 12)


def test_the_page_is_served_on_localhost(tiny_run):
    pytest.importorskip("viser", reason="viser is the viewer extra (pip install -e '.[viewer]')")
    from autoint_cli.viewer.server import start_viewer

    _, run_dir = tiny_run
    run = load_run(run_dir, CPU)
    port = free_port()
    server = start_viewer(FrameRenderer(run, RenderSettings(), CPU), "127.0.0.1", port, ViewerOptions(), run_dir / "camera_paths")
    try:
        deadline = time.time() + 20
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert page.lstrip().lower().startswith("<!doctype html>")
    finally:
        server.stop()


def test_viewer_errors_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("viser", reason="viser is the viewer extra (pip install -e '.[viewer]')")
    _, run_dir = tiny_run
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert view_main(["--expdir", str(run_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"autoint-view: error: --port {port}: cannot listen on 127.0.0.1") and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert view_main(["--expdir", str(tmp_path / "empty"), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autoint-view: error: ") and "\n" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:  # argparse's own one line
        view_main(["--expdir", str(run_dir), "--compile", "true", "--compile_mode", "reduce-overhead", "--cuda_graphs", "true"])
    assert exit_.value.code == 2 and "--cuda_graphs: --compile_mode reduce-overhead replays CUDA graphs of its own" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        view_main(["--expdir", str(run_dir), "--window_sections", "-1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and "--window_sections" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "viser", None)
    assert view_main(["--expdir", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == "autoint-view: error: autoint-view needs viser: pip install -e '.[viewer]' (or pip install viser)"


def port_takes_a_listener(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


def test_training_with_the_viewer_serves_the_page_and_ends_cleanly(tmp_path, capsys):
    """viewer = true: the page is served on 127.0.0.1:viewer_port while the run trains, and the port is free again after."""
    pytest.importorskip("viser", reason="viser is the viewer extra (pip install -e '.[viewer]')")
    scene = write_demo_scene(tmp_path / "scene", DemoSceneSpec(size=12, n_train=4, n_val=1, n_test=1))
    port = free_port()
    pages = []

    def fetch():
        deadline = time.time() + 60
        while not pages and time.time() < deadline:
            try:
                pages.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode())
            except OSError:
                time.sleep(0.1)

    poller = threading.Thread(target=fetch)
    poller.start()
    extra = f"i_testset = 0\ni_video = 0\nn_iters = 400\ni_weights = 1000\nviewer = true\nviewer_port = {port}\n"
    assert train_main(["--config", str(write_config(tmp_path, scene, extra))]) == 0
    poller.join(60)
    assert pages and pages[0].lstrip().lower().startswith("<!doctype html>")
    # The server was stopped with the run: the port takes a listener again (as the next run's viewer would).
    assert wait_for(lambda: port_takes_a_listener(port), 10), f"port {port} is still held after the run"
    # A port in use is refused before the run folder is touched.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        extra = f"i_testset = 0\ni_video = 0\nviewer = true\nviewer_port = {busy.getsockname()[1]}\nexpname = other\n"
        capsys.readouterr()
        assert train_main(["--config", str(write_config(tmp_path, scene, extra))]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
        assert not (tmp_path / "logs" / "other").exists()


def test_autoint_view_hands_its_frames_the_window_and_the_background_warm_up(tiny_run, monkeypatch):
    import autoint_cli.viewer.server as viewer_module

    _, run_dir = tiny_run
    served = []

    def stop_at_start(frames, *args, **kwargs):
        served.append(frames)
        raise KeyboardInterrupt  # instead of serving forever

    monkeypatch.setattr(viewer_module, "start_viewer", stop_at_start)
    assert view_main(["--expdir", str(run_dir), "--port", str(free_port()), "--window_sections", "3"]) == 130
    assert served[0].window == 3 and served[0].warm_in_background is False  # nothing compiled on the CPU: nothing to warm
    assert view_main(["--expdir", str(run_dir), "--port", str(free_port()), "--compile", "true"]) == 130
    assert served[1].window == 4 and served[1].warm_in_background  # windows of 4 sections unless told otherwise
    assert view_main(["--expdir", str(run_dir), "--port", str(free_port()), "--window_sections", "0"]) == 130
    assert served[2].window is None
